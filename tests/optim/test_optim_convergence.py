"""Every registered optimizer: converges on a small regression, and a mid-run state_dict round
trip continues exactly as the uninterrupted run (base optimizer state included)."""

from __future__ import annotations

import copy

import pytest
import torch

from gsam_repro.optim import available_optimizers, create_optimizer

# Arguments per name beyond lr; a user's optimizer registered elsewhere gets lr alone.
EXTRA = {
    "sgd": {"momentum": 0.9},
    "sam": {"momentum": 0.9, "rho": 0.05},
    "gsam": {"momentum": 0.9, "rho_max": 0.05, "rho_min": 0.01, "alpha": 0.3, "lr_min": 0.001},
    "weighted": {"momentum": 0.9, "rho": 0.05, "lam": 0.3},
    "adamw": {"weight_decay": 0.0},
}
LR = {"adamw": 0.03}


def regression(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 10, generator=generator)
    w_star = torch.randn(10, 1, generator=generator)
    y = x @ w_star + 0.5
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return model, x, y


def make(name, model):
    return create_optimizer(name, model.parameters(), lr=LR.get(name, 0.02), model=model,
                            **EXTRA.get(name, {}))


def train(model, opt, x, y, steps):
    def closure():
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.zero_grad()
        opt.step(closure)
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(x), y))


@pytest.mark.parametrize("name", available_optimizers())
def test_converges_on_a_small_regression(name):
    model, x, y = regression()
    with torch.no_grad():
        initial = float(torch.nn.functional.mse_loss(model(x), y))
    final = train(model, make(name, model), x, y, steps=100)
    assert final < 0.02 * initial, (initial, final)


@pytest.mark.parametrize("name", available_optimizers())
def test_state_dict_round_trip_continues_identically(name):
    model, x, y = regression()
    opt = make(name, model)
    train(model, opt, x, y, steps=5)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    train(model, opt, x, y, steps=5)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    resumed_model, _, _ = regression(seed=1)  # different starting weights, overwritten below
    resumed_model.load_state_dict(saved_model)
    resumed_opt = make(name, resumed_model)
    resumed_opt.load_state_dict(saved_opt)
    if hasattr(resumed_opt, "base_optimizer"):
        assert resumed_opt.param_groups is resumed_opt.base_optimizer.param_groups
    train(resumed_model, resumed_opt, x, y, steps=5)
    for got, want in zip(resumed_model.parameters(), uninterrupted, strict=True):
        assert torch.equal(got.detach(), want)


def test_round_trip_really_carries_the_momentum():
    # Without the base optimizer's momentum the continuation differs: the check above can fail.
    model, x, y = regression()
    opt = make("gsam", model)
    train(model, opt, x, y, steps=5)
    saved_model = copy.deepcopy(model.state_dict())
    train(model, opt, x, y, steps=5)
    fresh_model, _, _ = regression()
    fresh_model.load_state_dict(saved_model)
    train(fresh_model, make("gsam", fresh_model), x, y, steps=5)
    differences = [(a - b).abs().max() for a, b in zip(fresh_model.parameters(),
                                                        model.parameters(), strict=True)]
    assert max(differences) > 1e-6
