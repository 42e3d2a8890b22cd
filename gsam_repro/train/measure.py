"""Measurements beyond the training step: test metrics, the Hessian's dominant eigenvalue,
sharpness probes at fixed radii and, under label noise, how much of the noise was memorised;
`end_of_training` takes them all at the final weights of a run.

The eigenvalue lets every run check the paper's argument that the surrogate gap h tracks
sharpness (near a minimum, h ~ rho^2 * lambda_max / 2).
"""

from __future__ import annotations

import contextlib
import math
import resource
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from gsam_repro.train import distributed
from gsam_repro.train.config import probe_key

if TYPE_CHECKING:  # the loop builds the parts these measurements read
    from gsam_repro.train.config import RunConfig
    from gsam_repro.train.loop import Parts


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


def _probe_direction(params: list[torch.Tensor], grads: list[torch.Tensor],
                     adaptive: bool) -> list[torch.Tensor]:
    """The unit ascent direction of the probe: g/||g||, or (adaptive) |w|^2 g / || |w| g ||, so
    that w + r * direction is SAM's (or ASAM's) first-order perturbation of radius r."""
    if adaptive:
        scaled = [p.detach().abs() * g for p, g in zip(params, grads, strict=True)]
        norm = torch.sqrt(_dot(scaled, scaled))
        return [p.detach().abs() * s / norm for p, s in zip(params, scaled, strict=True)]
    norm = torch.sqrt(_dot(grads, grads))
    return [g / norm for g in grads]


def sharpness_probes(model: nn.Module, loss_fn: Callable, batches: list,
                     rhos: Iterable[float], adaptive: bool = False) -> dict:
    """The surrogate gap at fixed radii: for each r, the mean over `batches` of
    f_b(w + r d_b) - f_b(w), with d_b the unit ascent direction of batch b alone (so the
    perturbation is per batch of the run's batch size, the m of m-sharpness).

    Same function of the weights as hessian_max_eig (eval mode: BatchNorm's running statistics,
    no dropout), so h(r) ~ r ||g|| + r^2 g^T H g / (2 ||g||^2) can be checked against it. The
    weights are put back exactly. Returns {"f": mean f(w), "h": {r: mean h(r)}}."""
    rhos = [float(r) for r in rhos]
    if not batches or not rhos:
        return {"f": math.nan, "h": {r: math.nan for r in rhos}}
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    f_total = 0.0
    h_total = [0.0] * len(rhos)
    try:
        for x, y in batches:
            loss = loss_fn(model(x).float(), y)
            grads = torch.autograd.grad(loss, params)
            f_value = float(loss.detach())
            f_total += f_value
            if float(torch.sqrt(_dot(list(grads), list(grads)))) == 0.0:
                continue  # a zero gradient: no ascent direction, h = 0 at every radius
            direction = _probe_direction(params, list(grads), adaptive)
            with torch.no_grad():
                for index, r in enumerate(rhos):
                    for p, w, d in zip(params, saved, direction, strict=True):
                        torch.add(w, d, alpha=r, out=p)
                    h_total[index] += float(loss_fn(model(x).float(), y)) - f_value
                for p, w in zip(params, saved, strict=True):
                    p.copy_(w)
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved, strict=True):
                p.copy_(w)
        model.train(was_training)
    count = len(batches)
    return {"f": f_total / count, "h": {r: total / count for r, total in zip(rhos, h_total,
                                                                             strict=True)}}


@torch.no_grad()
def label_memorization(model: Callable, loader: Iterable, flipped, clean_labels,
                       autocast: Callable[[], contextlib.AbstractContextManager]
                       ) -> dict[str, float]:
    """On the training images whose label was flipped (label noise), the share the model
    predicts as their noisy label (memorised) and as their clean label, in percent. `loader`
    yields the un-augmented training set in its fixed order, with the noisy labels."""
    was_training = getattr(model, "training", False)
    model.eval()
    noisy_hits, clean_hits = [], []
    start = 0
    for x, y in loader:
        with autocast():
            predicted = model(x).argmax(dim=1).cpu().numpy()
        end = start + len(predicted)
        mask = flipped[start:end]
        noisy_hits.append(predicted[mask] == y.cpu().numpy()[mask])
        clean_hits.append(predicted[mask] == clean_labels[start:end][mask])
        start = end
    model.train(was_training)
    noisy, clean = np.concatenate(noisy_hits), np.concatenate(clean_hits)
    if not len(noisy):
        return {"memorized_pct": math.nan, "flipped_clean_pct": math.nan}
    return {"memorized_pct": 100.0 * float(noisy.mean()),
            "flipped_clean_pct": 100.0 * float(clean.mean())}


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory on CUDA; peak resident memory of the process elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def fixed_training_batches(parts: Parts, count: int) -> list:
    """The first `count` un-augmented training batches, in the fixed order that does not depend
    on the seed (several processes: rank 0 alone, over count * world per-process batches)."""
    count *= parts.world.size
    batches = []
    for x, y in parts.data.hessian:
        if len(batches) == count:
            break
        batches.append((x, y))
    return batches


def end_of_training(parts: Parts, cfg: RunConfig) -> dict:
    """Measurements of the final weights: the Hessian's dominant eigenvalue, the sharpness
    probes at the fixed radii eval.probe_rhos (every optimizer alike) and, under label noise,
    how many flipped labels the model memorised."""
    out: dict = {"hessian_max_eig": measure_hessian(parts, cfg)}
    e = cfg.eval
    if e.probe_batches > 0:
        probes = sharpness_probes(parts.model, parts.criterion,
                                  fixed_training_batches(parts, e.probe_batches), e.probe_rhos,
                                  adaptive=e.probe_adaptive)
        out["probe_f"] = probes["f"]
        out.update({probe_key(r): h for r, h in probes["h"].items()})
    data = parts.data
    if data.flipped is not None:
        out.update(label_memorization(parts.eval_forward or parts.model, data.hessian,
                                      data.flipped, data.clean_labels, parts.autocast))
    return out


def measure_hessian(parts: Parts, cfg: RunConfig) -> float | None:
    """eval.hessian_batches > 0: the dominant Hessian eigenvalue of the training loss over the
    first N un-augmented training batches (fixed for the run). Several processes: rank 0 alone,
    over N * world per-process batches (the same images, in one device's memory)."""
    if cfg.eval.hessian_batches <= 0:
        return None
    batches = fixed_training_batches(parts, cfg.eval.hessian_batches)
    return hessian_max_eig(parts.model, parts.criterion, batches, iters=cfg.eval.hessian_iters,
                           seed=cfg.seed)


def evaluate_epoch(parts: Parts) -> dict:
    """Test (and held-out validation) metrics at the current weights. Several processes: rank 0
    evaluates the whole sets, as one process would, and the others receive its numbers."""
    row = None
    if parts.world.is_main:
        forward = parts.eval_forward or parts.forward
        test = evaluate(forward, parts.data.test, parts.autocast)
        row = {"test_loss": test["loss"], "test_acc": test["acc"], "test_top5": test["top5"],
               "val_loss": None, "val_acc": None}
        if parts.data.val is not None:
            val = evaluate(forward, parts.data.val, parts.autocast)
            row.update(val_loss=val["loss"], val_acc=val["acc"])
    return distributed.from_main(parts.world, row)
