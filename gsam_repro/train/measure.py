"""Measurements beyond the training step: test metrics and the Hessian's dominant eigenvalue.

The eigenvalue lets every run check the paper's argument that the surrogate gap h tracks
sharpness (near a minimum, h ~ rho^2 * lambda_max / 2).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


@torch.no_grad()
def evaluate(model: Callable, loader: Iterable,
             autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing) and top-1 / top-5 accuracy in percent.

    Sums stay on the device until the end: one host sync per evaluation."""
    was_training = model.training
    model.eval()
    loss_sum = correct1 = correct5 = None
    count = 0
    for x, y in loader:
        with autocast():
            logits = model(x)
        logits = logits.float()
        loss = nn.functional.cross_entropy(logits, y, reduction="sum")
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == y[:, None]
        batch_correct1 = hits[:, 0].sum()
        batch_correct5 = hits.any(dim=1).sum()
        if loss_sum is None:
            loss_sum, correct1, correct5 = loss, batch_correct1, batch_correct5
        else:
            loss_sum, correct1, correct5 = (loss_sum + loss, correct1 + batch_correct1,
                                            correct5 + batch_correct5)
        count += len(y)
    model.train(was_training)
    if not count:
        return {"loss": math.nan, "acc": math.nan, "top5": math.nan}
    totals = torch.stack([loss_sum.float(), correct1.float(), correct5.float()]).tolist()
    return {"loss": totals[0] / count, "acc": 100.0 * totals[1] / count,
            "top5": 100.0 * totals[2] / count}


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))


def hessian_vector_product(model: nn.Module, loss_fn: Callable, batches: list,
                           vector: list[torch.Tensor]) -> list[torch.Tensor]:
    """H v for the mean of loss_fn(model(x), y) over `batches` (double backward, fp32)."""
    params = [p for p in model.parameters() if p.requires_grad]
    product = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = loss_fn(model(x).float(), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        grad_dot_v = _dot(list(grads), vector)
        for total, part in zip(product, torch.autograd.grad(grad_dot_v, params), strict=True):
            total.add_(part, alpha=1.0 / len(batches))
    return product


def _math_attention():
    """Double backward through attention needs the plain (math) kernel."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    except ImportError:
        return contextlib.nullcontext()


def hessian_max_eig(model: nn.Module, loss_fn: Callable, batches: list, iters: int = 20,
                    tol: float = 1e-3, seed: int = 0) -> float:
    """Dominant (largest-magnitude) eigenvalue of the training loss's Hessian at the current
    weights, by power iteration on Hessian-vector products over a fixed set of batches.

    The model is evaluated in eval mode (BatchNorm uses its running statistics, no dropout), so
    the loss is one fixed function of the weights and measuring moves no buffers. Iteration
    stops after `iters` steps or when the Rayleigh quotient changes by less than tol
    (relative)."""
    if not batches:
        return math.nan
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    vector = [torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p) for p in params]
    norm = torch.sqrt(_dot(vector, vector))
    vector = [v / norm for v in vector]
    eigenvalue = math.nan
    try:
        with _math_attention():
            for _ in range(iters):
                product = hessian_vector_product(model, loss_fn, batches, vector)
                estimate = float(_dot(vector, product))
                norm = float(torch.sqrt(_dot(product, product)))
                converged = abs(estimate - eigenvalue) <= tol * abs(estimate)
                eigenvalue = estimate
                if converged or norm == 0.0 or not math.isfinite(norm):
                    break
                vector = [p / norm for p in product]
    finally:
        model.train(was_training)
    return eigenvalue
