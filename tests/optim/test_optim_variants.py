"""The cheap variants (every, looksam, switch_prob, start_fraction) against a flat-vector
re-derivation written from their definitions, their pass counts, resume and bad options."""

from __future__ import annotations

import pytest
import torch
from optim_testkit import EPS, FlatProblem, ReferenceSGD, classification_batch, flat, small_mlp

from gsam_repro.optim import create_optimizer

LR, RHO, ALPHA, LAM = 0.1, 0.2, 0.4, 0.7
KINDS = {"sam": {"rho": RHO}, "gsam": {"rho_max": RHO, "alpha": ALPHA},
         "weighted": {"rho": RHO, "lam": LAM}}


def method_direction(kind: str, g: torch.Tensor, g_p: torch.Tensor) -> torch.Tensor:
    if kind == "sam":
        return g_p
    if kind == "gsam":
        return g_p - ALPHA * (g - (g @ g_p) / (g_p @ g_p + EPS) * g_p)
    return (1 + LAM) * g_p - LAM * g


def reference(kind: str, kinds: list[str], looksam_alpha: float = 0.7) -> torch.Tensor:
    """Flat parameters after the steps `kinds` ("full" | "plain" | "reuse"), from the papers'
    definitions: plain steps use g; LookSAM keeps g_v = g_p - cos * ||g_p|| * g/||g|| and
    its reuse steps use g_p ~ g + alpha * ||g|| / ||g_v|| * g_v."""
    model = small_mlp()
    problem = FlatProblem(model, *classification_batch())
    w = problem.flat_params()
    sgd = ReferenceSGD(LR, momentum=0.9, weight_decay=5e-3)
    g_v = None
    for step_kind in kinds:
        _, g = problem.value_and_grad(w)
        if step_kind == "plain":
            d = g
        elif step_kind == "full":
            _, g_p = problem.value_and_grad(w + RHO * g / (g.norm() + EPS))
            cos = (g @ g_p) / (g.norm() * g_p.norm())
            g_v = g_p - cos * g_p.norm() * g / g.norm()
            d = method_direction(kind, g, g_p)
        else:
            d = method_direction(kind, g, g + looksam_alpha * g.norm() / g_v.norm() * g_v)
        w = sgd.step(w, d)
    return w


def package(kind: str, steps: int, **options):
    model = small_mlp()
    x, y = classification_batch()
    opt = create_optimizer(kind, model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-3,
                           model=model, **KINDS[kind], **options)
    calls = []

    def closure():
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return model, opt, len(calls)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_k_takes_plain_steps_between(kind):
    model, opt, calls = package(kind, 7, every=3, total_steps=7)
    expected = reference(kind, ["full", "plain", "plain"] * 2 + ["full"])
    torch.testing.assert_close(flat(model), expected, rtol=1e-8, atol=1e-10)
    assert opt.passes_per_step == pytest.approx(1 + 3 / 7) and calls == 10
    assert float(opt.stats["rho"]) == RHO  # the last step was a full one


@pytest.mark.parametrize("kind", list(KINDS))
def test_looksam_reuses_the_orthogonal_part(kind):
    model, opt, calls = package(kind, 5, looksam=2, looksam_alpha=0.5, total_steps=5)
    expected = reference(kind, ["full", "reuse"] * 2 + ["full"], looksam_alpha=0.5)
    torch.testing.assert_close(flat(model), expected, rtol=1e-8, atol=1e-10)
    assert opt.passes_per_step == pytest.approx(8 / 5) and calls == 8
    assert len(list(opt.extra_buffers())) == 2 * 4  # g and g_v, for each of the 4 tensors


def test_looksam_at_radius_zero_is_the_base_optimizer():
    """At rho = 0, g_p == g up to rounding: the kept g_v is zero, not rounding noise that the
    reuse step would blow up to alpha * ||g||."""
    model = small_mlp()
    x, y = classification_batch()
    opt = create_optimizer("sam", model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-3,
                           rho=0.0, looksam=3)

    def closure():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    torch.testing.assert_close(flat(model), reference("sam", ["plain"] * 5), rtol=1e-8,
                               atol=1e-10)


def test_start_fraction_runs_plain_steps_first():
    model, opt, calls = package("gsam", 10, start_fraction=0.3, total_steps=10)
    expected = reference("gsam", ["plain"] * 3 + ["full"] * 7)
    torch.testing.assert_close(flat(model), expected, rtol=1e-8, atol=1e-10)
    assert opt.passes_per_step == pytest.approx(1.7) and calls == 17


def test_start_fraction_combines_with_every():
    model, opt, calls = package("sam", 8, start_fraction=0.25, every=4, total_steps=8)
    expected = reference("sam", ["plain"] * 2 + ["full", "plain", "plain", "plain", "full",
                                                 "plain"])
    torch.testing.assert_close(flat(model), expected, rtol=1e-8, atol=1e-10)
    assert opt.passes_per_step == pytest.approx(10 / 8) and calls == 10


def test_switch_prob_is_seeded_and_counts_its_passes():
    model, opt, calls = package("sam", 12, switch_prob=0.5, switch_seed=3)
    # an independent draw sequence from the documented generator: seed, one float64 a step
    generator = torch.Generator().manual_seed(3)
    kinds = ["full" if torch.rand((), generator=generator, dtype=torch.float64) < 0.5
             else "plain" for _ in range(12)]
    assert 0 < kinds.count("full") < 12
    torch.testing.assert_close(flat(model), reference("sam", kinds), rtol=1e-8, atol=1e-10)
    assert calls == 12 + kinds.count("full")
    assert opt.passes_per_step == 1.5  # the expectation


def test_plain_steps_report_no_perturbation():
    _, opt, _ = package("sam", 2, every=2)
    assert float(opt.stats["rho"]) == 0 and float(opt.stats["h"]) == 0
    assert float(opt.stats["f_p"]) == float(opt.stats["f"])


@pytest.mark.parametrize("options", [
    {"switch_prob": 0.4, "switch_seed": 1},
    {"looksam": 3},
    {"start_fraction": 0.5, "total_steps": 8, "every": 2},
])
def test_resume_mid_run_is_bitwise_identical(options):
    straight, _, _ = package("gsam", 8, **options)
    model, opt, _ = package("gsam", 4, **options)
    saved = opt.state_dict()
    x, y = classification_batch()
    resumed = small_mlp(seed=5)
    resumed.load_state_dict(model.state_dict())
    opt2 = create_optimizer("gsam", resumed.parameters(), lr=LR, momentum=0.9,
                            weight_decay=5e-3, model=resumed, **KINDS["gsam"], **options)
    opt2.load_state_dict(saved)

    def closure():
        loss = torch.nn.functional.cross_entropy(resumed(x), y)
        loss.backward()
        return loss

    for _ in range(4):
        opt2.step(closure)
    assert torch.equal(flat(resumed), flat(straight))


@pytest.mark.parametrize(("options", "message"), [
    ({"every": 0}, "every must be an integer >= 1"),
    ({"every": 2, "looksam": 3}, "looksam: choose one of"),
    ({"switch_prob": 1.5}, "switch_prob must be a number in [0, 1]"),
    ({"start_fraction": 0.5}, "start_fraction needs total_steps"),
    ({"looksam_alpha": 0.5}, "looksam_alpha applies only together with looksam"),
    ({"looksam": 2, "adaptive": "asam"}, "looksam applies to the plain perturbation only"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        create_optimizer("sam", small_mlp().parameters(), lr=0.1, **options)


def test_options_on_a_plain_optimizer_are_refused():
    with pytest.raises(ValueError, match="every applies only to sharpness-aware"):
        create_optimizer("sgd", small_mlp().parameters(), lr=0.1, every=2)
    # the run's length is a context fact: a plain optimizer simply does not receive it
    assert create_optimizer("sgd", small_mlp().parameters(), lr=0.1,
                            total_steps=5).passes_per_step == 1


def test_a_user_subclass_gets_the_options():
    from gsam_repro.optim import SharpnessAware

    class Ascent(SharpnessAware):
        def __init__(self, params, base_optimizer=torch.optim.SGD, *, rho=0.05, **kwargs):
            super().__init__(params, base_optimizer, rho_max=rho, **kwargs)

    opt = Ascent(small_mlp().parameters(), lr=0.1, every=4)
    assert opt.passes_per_step == 1.25


def chunked_reference(kind: str, m: int, steps: int = 2) -> torch.Tensor:
    """m-sharpness from its definition: per chunk of m rows its own eps, g_p and direction; the
    step follows their average weighted by chunk size."""
    model = small_mlp()
    x, y = classification_batch()
    w = FlatProblem(model, x, y).flat_params()
    sgd = ReferenceSGD(LR, momentum=0.9, weight_decay=5e-3)
    for _ in range(steps):
        d = torch.zeros_like(w)
        for start in range(0, len(x), m):
            problem = FlatProblem(model, x[start:start + m], y[start:start + m])
            _, g = problem.value_and_grad(w)
            _, g_p = problem.value_and_grad(w + RHO * g / (g.norm() + EPS))
            d += len(problem.x) / len(x) * method_direction(kind, g, g_p)
        w = sgd.step(w, d)
    return w


def chunked_package(kind: str, m: int, steps: int = 2, **options):
    model = small_mlp()
    x, y = classification_batch()
    opt = create_optimizer(kind, model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-3,
                           model=model, m=m, **KINDS[kind], **options)
    calls = []

    def closure(chunk=None):
        xb, yb = (x, y) if chunk is None else (chunk(x), chunk(y))
        calls.append(len(xb))
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        return loss

    losses = [opt.step(closure) for _ in range(steps)]
    return model, opt, calls, losses


@pytest.mark.parametrize(("kind", "m"), [("sam", 8), ("gsam", 12), ("weighted", 32)])
def test_m_sharpness_averages_per_chunk_directions(kind, m):
    model, opt, calls, losses = chunked_package(kind, m)
    torch.testing.assert_close(flat(model), chunked_reference(kind, m), rtol=1e-8, atol=1e-10)
    chunks = -(-32 // m)
    assert len(calls) == 2 * 2 * chunks and sum(calls) == 2 * 2 * 32  # two whole passes a step
    assert opt.passes_per_step == 2
    x, y = classification_batch()
    whole = torch.nn.functional.cross_entropy(small_mlp()(x), y)  # the loss at the first w
    torch.testing.assert_close(losses[0], whole.detach())


def test_m_sharpness_plain_steps_take_the_whole_batch():
    _, opt, calls, _ = chunked_package("sam", 8, steps=2, every=2)
    assert calls == [8] * 8 + [32]  # the method's step in 4 chunks, then one plain pass


def test_m_sharpness_skips_an_overflowing_step_after_a_whole_pass_at_w():
    model = small_mlp()
    x, y = classification_batch()
    opt = create_optimizer("sam", model.parameters(), lr=LR, rho=RHO, m=8)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    at_w = []

    def closure(chunk):
        loss = torch.nn.functional.cross_entropy(model(chunk(x)), chunk(y))
        if chunk.at_w:
            at_w.append(chunk.size)
        poison = float("inf") if chunk.index == 1 else 1.0  # the second chunk overflows at w
        scaler.scale(loss * poison).backward()
        return loss

    before = flat(model)
    opt.step(closure, grad_scaler=scaler)
    scaler.update()
    # undoing the first chunk's w + eps leaves at most a rounding; a step would move w by ~1e-2
    torch.testing.assert_close(flat(model), before, rtol=0, atol=1e-14)
    assert scaler.get_scale() == 512.0
    assert at_w == [8, 8, 8, 8]  # the pass at w still covers the whole batch


def test_m_needs_whole_numbers_and_no_looksam():
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        create_optimizer("sam", small_mlp().parameters(), lr=0.1, m=0)
    with pytest.raises(ValueError, match="m: LookSAM's reuse steps"):
        create_optimizer("sam", small_mlp().parameters(), lr=0.1, m=4, looksam=2)


@pytest.mark.parametrize(("options", "passes"), [
    ({"start_fraction": 0.5}, 4 + 2 * 4),  # 8 steps: 4 plain, then 4 of the method
    ({"m": 16}, 2 * 8),  # 4 chunks of the 64-image batch: still two whole passes a step
])
def test_the_trainer_passes_the_run_length_and_counts_chunked_passes(tmp_path, options, passes):
    from gsam_repro.train import config_from_dict, run

    config = config_from_dict({
        "data": {"name": "synthetic", "train_size": 256, "test_size": 64, "image_size": 8,
                 "batch_size": 64},
        "model": {"name": "small_cnn"},
        "optimizer": {"name": "sam", "lr": 0.05, "momentum": 0.9, "rho": 0.05, **options},
        "schedule": {"epochs": 2},
        "train": {"threads": 1},
    })
    summary = run(config, tmp_path / "run")
    assert summary["steps"] == 8 and summary["fwd_bwd_passes"] == passes
    assert 0 <= summary["test_acc"] <= 100


@pytest.mark.parametrize(("key", "value", "message"), [
    ("every", 0, "optimizer.every: must be >= 1, got 0"),
    ("m", 0, "optimizer.m: must be >= 1, got 0"),
    ("switch_prob", 1.5, "optimizer.switch_prob: must be <= 1, got 1.5"),
    ("start_fraction", -0.1, "optimizer.start_fraction: must be >= 0.0, got -0.1"),
    ("looksam", 2.5, "optimizer.looksam"),
])
def test_a_run_config_names_a_bad_option(key, value, message):
    from gsam_repro.errors import ConfigError
    from gsam_repro.train import config_from_dict

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config_from_dict({"optimizer": {"name": "sam", "rho": 0.05, key: value}})
