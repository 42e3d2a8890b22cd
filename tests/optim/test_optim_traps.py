"""Two ways a user could silently get a different optimizer than asked for: a rho_min that is
never reached, and a first_step on gradients still holding the previous step's direction."""

import copy

import pytest
import torch
from optim_testkit import classification_batch, make_closure, small_mlp

from gsam_repro.optim import GSAM, SAM, create_optimizer


def test_rho_min_without_lr_min_is_an_error_naming_lr_min():
    model = small_mlp()
    with pytest.raises(ValueError, match=r"^lr_min: rho_min \(0.02\) differs from rho_max"):
        create_optimizer("gsam", model.parameters(), lr=0.1, rho_max=0.04, rho_min=0.02)
    with pytest.raises(ValueError, match="^lr_min: .* differs from rho "):
        SAM(model.parameters(), torch.optim.SGD, lr=0.1, rho=0.05, rho_min=0.01)


def test_constant_rho_needs_no_lr_min():
    model = small_mlp()
    for kwargs in ({}, {"rho_min": 0.04}):
        opt = create_optimizer("gsam", model.parameters(), lr=0.1, rho_max=0.04, **kwargs)
        assert (opt.rho_now(), opt.lr_max, opt.lr_min) == (0.04, 0.1, 0.1)


def test_with_lr_min_rho_follows_the_initial_lr_down_to_lr_min():
    model = small_mlp()
    opt = create_optimizer("gsam", model.parameters(), lr=0.1, momentum=0.9, rho_max=0.04,
                           rho_min=0.02, lr_min=0.001, model=model)
    assert opt.lr_max == 0.1  # from the base optimizer's initial lr
    for lr in (0.1, 0.001, 0.0505):
        opt.param_groups[0]["lr"] = lr
        # by hand: the straight line through (0.001, 0.02) and (0.1, 0.04)
        assert opt.rho_now() == pytest.approx(0.02 + 0.02 * (lr - 0.001) / 0.099, rel=1e-12)


def two_halves(opt, model, x, y, clear):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.first_step(loss)
    loss_p = torch.nn.functional.cross_entropy(model(x), y)
    loss_p.backward()
    opt.second_step(loss_p)
    clear()


def test_first_step_refuses_gradients_that_still_hold_the_last_direction():
    model = small_mlp()
    x, y = classification_batch()
    opt = GSAM(model.parameters(), torch.optim.SGD, lr=0.1, rho_max=0.1, alpha=0.3)
    two_halves(opt, model, x, y, clear=lambda: None)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()  # adds g into the d left in p.grad
    with pytest.raises(RuntimeError, match=r"call opt\.zero_grad\(\) before the backward"):
        opt.first_step(loss)
    for p, w in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, w)  # nothing moved
    # cleared, the same step goes through
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.first_step(loss)


@pytest.mark.parametrize("clear", ["optimizer", "model", "optimizer_in_place"])
def test_cleared_two_halves_equal_step(clear):
    model_a = small_mlp()
    model_b = copy.deepcopy(model_a)
    x, y = classification_batch()
    opt_a = GSAM(model_a.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, rho_max=0.1,
                 alpha=0.3, model=model_a)
    opt_b = GSAM(model_b.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, rho_max=0.1,
                 alpha=0.3, model=model_b)
    clearing = {
        "optimizer": lambda: opt_b.zero_grad(),
        "model": lambda: model_b.zero_grad(),
        "optimizer_in_place": lambda: opt_b.zero_grad(set_to_none=False),
    }[clear]
    for _ in range(3):
        opt_a.step(make_closure(model_a, x, y))
        two_halves(opt_b, model_b, x, y, clear=clearing)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
