"""rho_t follows the learning rate: the schedule alone, and driven by a torch LR scheduler."""

from __future__ import annotations

import pytest
import torch
from optim_testkit import classification_batch, make_closure, small_mlp

from gsam_repro.optim import GSAM, SAM, rho_at

SCHEDULE = dict(rho_max=0.04, rho_min=0.02, lr_max=1.6, lr_min=0.016)


@pytest.mark.parametrize(
    ("lr", "expected"),
    [
        (1.6, 0.04),  # lr_max -> rho_max
        (0.016, 0.02),  # lr_min -> rho_min
        ((1.6 + 0.016) / 2, 0.03),  # midway -> midway
        (0.008, 0.02 - 0.02 * 0.008 / 1.584),  # warmup below lr_min: below rho_min, still > 0
    ],
)
def test_rho_is_linear_in_the_learning_rate(lr, expected):
    assert rho_at(lr, **SCHEDULE) == pytest.approx(expected, rel=1e-12)


def test_rho_is_clamped_at_zero_early_in_warmup():
    # The paper's ViT schedule has rho_min = 0: any lr under lr_min would give a negative rho.
    schedule = dict(rho_max=0.6, rho_min=0.0, lr_max=3e-3, lr_min=3e-5)
    assert rho_at(1e-5, **schedule) == 0.0
    assert rho_at(0.0, **schedule) == 0.0
    assert float(rho_at(torch.tensor(1e-5), **schedule)) == 0.0


def test_rho_is_constant_when_lr_max_equals_lr_min():
    for lr in (0.0, 0.05, 0.1, 7.0):
        assert rho_at(lr, rho_max=0.05, rho_min=0.05, lr_max=0.1, lr_min=0.1) == 0.05


def test_rho_follows_an_lr_scheduler_attached_to_the_wrapper():
    model = small_mlp()
    x, y = classification_batch()
    opt = GSAM(model.parameters(), torch.optim.SGD, lr=1.0, rho_max=0.4, rho_min=0.1,
               lr_min=0.1, alpha=0.1)
    steps = 6
    warmup = 2
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / (warmup + 1) if t < warmup else 1 - 0.9 * (t - warmup) / 3
    )
    seen = []
    for _ in range(steps):
        lr = opt.param_groups[0]["lr"]
        assert opt.base_optimizer.param_groups[0]["lr"] == lr  # one set of param_groups
        opt.step(make_closure(model, x, y))
        seen.append((lr, float(opt.stats["rho"])))
        scheduler.step()
    for lr, rho in seen:
        expected = max(0.0, 0.1 + 0.3 * (lr - 0.1) / 0.9)
        assert rho == pytest.approx(expected, rel=1e-9)
    assert len({round(rho, 9) for _, rho in seen}) >= 4  # the schedule really moved


def test_defaults_give_a_constant_rho():
    model = small_mlp()
    x, y = classification_batch()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.5, rho=0.07)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        opt.step(make_closure(model, x, y))
        assert float(opt.stats["rho"]) == pytest.approx(0.07)
        scheduler.step()
