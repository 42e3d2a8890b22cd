"""Mixed precision: bf16 autocast unchanged, and the GradScaler recipe (scaled gradients, the
final direction unscaled before clipping, the step skipped on inf/nan)."""

from __future__ import annotations

import pytest
import torch
from optim_testkit import classification_batch, flat, small_mlp

from gsam_repro.optim import create_optimizer, scaled_step

SCALE = 2.0**12


def float_model():
    return small_mlp(dtype=torch.float32)


def float_batch():
    return classification_batch(dtype=torch.float32)


def scaled_closure(model, x, y, scaler, poison=()):
    """Backpropagates scaler.scale(loss); `poison` lists the calls whose gradients become inf."""
    calls = {"n": 0}

    def closure():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        factor = float("inf") if calls["n"] in poison else 1.0
        calls["n"] += 1
        scaler.scale(loss * factor).backward()
        return loss

    return closure


@pytest.mark.parametrize("name", ["sgd", "sam", "gsam", "weighted"])
def test_scaled_steps_equal_unscaled_steps(name):
    extra = {"alpha": 0.4} if name == "gsam" else {}
    x, y = float_batch()
    runs = []
    for enabled in (False, True):
        model = float_model()
        opt = create_optimizer(name, model.parameters(), lr=0.1, momentum=0.9, grad_clip=None,
                               **extra)
        scaler = torch.amp.GradScaler("cpu", init_scale=SCALE, enabled=enabled)
        for _ in range(3):
            scaled_step(opt, scaled_closure(model, x, y, scaler), scaler)
        runs.append((flat(model), getattr(opt, "stats", {})))
    (plain, plain_stats), (scaled, scaled_stats) = runs
    torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=1e-6)
    for key, value in plain_stats.items():
        torch.testing.assert_close(scaled_stats[key], value, rtol=1e-5, atol=1e-6)


def test_clipping_sees_the_unscaled_direction():
    x, y = float_batch()
    results = []
    for enabled in (False, True):
        model = float_model()
        opt = create_optimizer("gsam", model.parameters(), lr=0.1, alpha=0.4, grad_clip=0.05)
        scaler = torch.amp.GradScaler("cpu", init_scale=SCALE, enabled=enabled)
        scaled_step(opt, scaled_closure(model, x, y, scaler), scaler)
        results.append(flat(model))
    torch.testing.assert_close(results[1], results[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("poisoned_pass", [0, 1])  # inf gradient at w, or only at w + eps
def test_inf_gradient_skips_the_step_and_lowers_the_scale(poisoned_pass):
    x, y = float_batch()
    model = float_model()
    before = flat(model)
    opt = create_optimizer("gsam", model.parameters(), lr=0.1, momentum=0.9, alpha=0.4,
                           model=model)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    scaled_step(opt, scaled_closure(model, x, y, scaler, poison=(poisoned_pass,)), scaler)
    after = flat(model)
    assert torch.isfinite(after).all()
    torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-7)  # w + eps - eps at most
    assert scaler.get_scale() == SCALE * 0.5
    assert opt.base_optimizer.state == {} or all(
        "momentum_buffer" not in s for s in opt.base_optimizer.state.values()
    )
    # Training goes on normally afterwards.
    scaled_step(opt, scaled_closure(model, x, y, scaler), scaler)
    assert (flat(model) - before).abs().max() > 1e-6


def test_bf16_autocast_works_unchanged():
    x, y = float_batch()
    model = float_model()
    opt = create_optimizer("gsam", model.parameters(), lr=0.5, alpha=0.4, model=model)
    losses = []
    for _ in range(20):
        def closure():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses.append(float(opt.step(closure).detach()))
        assert all(torch.isfinite(v) for v in opt.stats.values())
    assert losses[-1] < 0.8 * losses[0]
