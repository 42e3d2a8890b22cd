"""Measurements checked against independent computations."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from gsam_repro.models import create_model
from gsam_repro.train.measure import evaluate, hessian_max_eig


def _tiny_batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, generator=generator), torch.randint(0, 3, (8,), generator=generator))
            for _ in range(2)]


def _reference_dominant_eigenvalue(model: nn.Module, batches) -> float:
    """Build the full Hessian with torch.autograd.functional.hessian (float64), then eigvalsh."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().double().reshape(-1) for p in model.parameters()])
    double_model = model.double()

    def loss(vector: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = vector[start:start + shape.numel()].reshape(shape)
            start += shape.numel()
        losses = [nn.functional.cross_entropy(functional_call(double_model, params, (x.double(),)),
                                              y) for x, y in batches]
        return sum(losses) / len(losses)

    hessian = torch.autograd.functional.hessian(loss, flat)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    model.float()
    return float(eigenvalues[eigenvalues.abs().argmax()])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_iteration_matches_the_full_hessian_within_2_percent(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    batches = _tiny_batches(seed)
    expected = _reference_dominant_eigenvalue(model, batches)
    measured = hessian_max_eig(model, nn.CrossEntropyLoss(), batches, iters=300, seed=seed)
    assert measured == pytest.approx(expected, rel=0.02)


def test_measuring_leaves_batchnorm_buffers_and_training_mode_alone():
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))]
    value = hessian_max_eig(model, nn.CrossEntropyLoss(), batches, iters=3)
    assert np.isfinite(value) and model.training
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key]), key


def test_evaluate_matches_a_numpy_computation_of_loss_and_top_k():
    torch.manual_seed(0)
    model = nn.Linear(5, 7)
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 5, generator=generator), torch.randint(0, 7, (n,),
                                                                      generator=generator))
               for n in (16, 16, 5)]
    result = evaluate(model, batches, contextlib.nullcontext)

    with torch.no_grad():
        logits = np.concatenate([model(x).numpy() for x, _ in batches]).astype(np.float64)
    labels = np.concatenate([y.numpy() for _, y in batches])
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    ranks = (logits > logits[np.arange(len(labels)), labels][:, None]).sum(axis=1)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["acc"] == pytest.approx(100 * np.mean(ranks == 0))
    assert result["top5"] == pytest.approx(100 * np.mean(ranks < 5))
