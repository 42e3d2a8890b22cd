"""The learning-rate schedule against its formulas, and across a state_dict round trip."""

from __future__ import annotations

import math

import pytest
import torch

from gsam_repro.train.schedule import make_scheduler

LR_MAX, LR_MIN, TOTAL, WARMUP = 0.4, 0.004, 50, 10


def _lrs(decay: str, warmup: int = WARMUP, steps: int = TOTAL) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR_MAX)
    scheduler = make_scheduler(optimizer, TOTAL, warmup, decay, LR_MAX, LR_MIN)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
def test_warmup_ramps_linearly_to_lr_max(decay):
    lrs = _lrs(decay)
    for step in range(WARMUP):
        assert lrs[step] == pytest.approx(LR_MAX * (step + 1) / WARMUP)
    assert lrs[WARMUP] == pytest.approx(LR_MAX)


def test_linear_decay_reaches_lr_min_at_the_end():
    lrs = _lrs("linear")
    span = TOTAL - WARMUP
    for step in range(WARMUP, TOTAL):
        expected = LR_MAX - (LR_MAX - LR_MIN) * (step - WARMUP) / span
        assert lrs[step] == pytest.approx(expected)
    assert lrs[WARMUP + span // 2] == pytest.approx((LR_MAX + LR_MIN) / 2)


def test_cosine_decay_follows_half_a_cosine():
    lrs = _lrs("cosine", warmup=0)
    for step in range(TOTAL):
        expected = LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * step / TOTAL))
        assert lrs[step] == pytest.approx(expected)


def test_constant_stays_at_lr_max():
    assert _lrs("constant", warmup=0) == pytest.approx([LR_MAX] * TOTAL)


def test_a_restored_scheduler_continues_the_same_schedule():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR_MAX)
    scheduler = make_scheduler(optimizer, TOTAL, WARMUP, "cosine", LR_MAX, LR_MIN)
    for _ in range(17):
        optimizer.step()
        scheduler.step()
    saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()

    fresh = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR_MAX)
    restored = make_scheduler(fresh, TOTAL, WARMUP, "cosine", LR_MAX, LR_MIN)
    fresh.load_state_dict(saved_optimizer)
    restored.load_state_dict(saved_scheduler)
    assert fresh.param_groups[0]["lr"] == pytest.approx(_lrs("cosine")[17])
