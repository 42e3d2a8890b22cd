"""The second forward pass (at w + eps) must not move BatchNorm's running statistics."""

from __future__ import annotations

import copy

import pytest
import torch

from gsam_repro.optim import GSAM


def net(momentum):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, momentum=momentum), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 8),
        torch.nn.BatchNorm1d(8, momentum=momentum), torch.nn.Linear(8, 2),
    )


def bn_state(model):
    buffers = model.state_dict().items()
    return {k: v.clone() for k, v in buffers if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("momentum", [0.1, None])  # None: cumulative average over batches
def test_batchnorm_buffers_equal_one_plain_forward(momentum):
    model = net(momentum)
    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 2, (16,))
    # Warm the statistics so num_batches_tracked > 0 and the averages are not at their init.
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 8, 8))
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference(x)  # one plain forward at w
    expected = bn_state(reference)

    opt = GSAM(model.parameters(), torch.optim.SGD, lr=0.1, rho_max=0.5, alpha=0.2, model=model)

    def closure():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    got = bn_state(model)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert int(got["1.num_batches_tracked"]) == 4


def test_without_model_the_second_pass_moves_the_statistics():
    # What the docs warn about: the check above can fail.
    model = net(0.1)
    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 2, (16,))
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference(x)
    opt = GSAM(model.parameters(), torch.optim.SGD, lr=0.1, rho_max=0.5, alpha=0.2)

    def closure():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    assert int(bn_state(model)["1.num_batches_tracked"]) == 2
    assert not torch.equal(bn_state(model)["1.running_mean"], bn_state(reference)["1.running_mean"])
