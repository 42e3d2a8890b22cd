"""Global reductions over a list of tensors (norms and dot products), as 0-dim tensors so a step
never waits on the device, without parameter-sized temporaries where the layouts allow."""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-12  # guards every division by a norm
_BLAS_DTYPES = (torch.float32, torch.float64)


def _accumulate_dtype(tensors: list[Tensor]) -> torch.dtype:
    """float64 if any tensor is float64, else float32 (half-precision sums would overflow)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def global_norm(tensors: list[Tensor]) -> Tensor:
    """L2 norm over all tensors together, as a 0-dim tensor (no host sync)."""
    dtype = _accumulate_dtype(tensors)
    norms = [norm if norm.dtype == dtype else norm.to(dtype)
             for norm in torch._foreach_norm(tensors)]
    return torch.linalg.vector_norm(torch.stack(norms))


def _flat_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor] | None:
    """1-D views of a and b in the same element order, or None when no such views exist.

    Covers contiguous and channels_last (any dense permuted layout) gradients."""
    if a.is_contiguous() and b.is_contiguous():
        return a.view(-1), b.view(-1)
    if a.stride() != b.stride():
        return None
    order = sorted(range(a.dim()), key=lambda dim: -a.stride(dim))
    a_perm, b_perm = a.permute(order), b.permute(order)
    if a_perm.is_contiguous() and b_perm.is_contiguous():
        return a_perm.view(-1), b_perm.view(-1)
    return None


def _dot(a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """<a, b> for one pair of tensors as a 0-dim `dtype` tensor, without temporaries when the
    layouts allow a BLAS dot product."""
    flat = _flat_pair(a, b) if a.dtype == b.dtype and a.dtype in _BLAS_DTYPES else None
    if flat is None:
        return torch.sum(a.to(dtype) * b.to(dtype))
    part = torch.dot(*flat)
    return part if part.dtype == dtype else part.to(dtype)


def global_dot(first: list[Tensor], second: list[Tensor]) -> Tensor:
    """<first, second> over all tensors, as a 0-dim tensor (no temporaries, no sync)."""
    dtype = _accumulate_dtype(first)
    return torch.stack([_dot(a, b, dtype) for a, b in zip(first, second, strict=True)]).sum()


def global_dot_and_norm(first: list[Tensor], second: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(<first, second>, ||second||) together: on CPU one loop that reads each tensor of
    `second` twice in a row, while it is still in cache."""
    if second[0].device.type != "cpu":
        return global_dot(first, second), global_norm(second)
    dtype = _accumulate_dtype(first)
    dots, squares = [], []
    for a, b in zip(first, second, strict=True):
        flat = _flat_pair(a, b) if a.dtype == b.dtype == dtype else None
        if flat is None:
            dots.append(_dot(a, b, dtype))
            squares.append(_dot(b, b, dtype))
        else:
            dots.append(torch.dot(flat[0], flat[1]))
            squares.append(torch.dot(flat[1], flat[1]))
    return torch.stack(dots).sum(), torch.stack(squares).sum().sqrt()
