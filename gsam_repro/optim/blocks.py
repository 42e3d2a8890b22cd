"""Cache-sized blocks of parameter-sized work, so that the ops of one phase reuse what is cached.

On a CPU a step is bound by memory traffic: each `torch._foreach_*` op streams every tensor of
its lists through memory, and a parameter list is far larger than the caches, so two ops over
the same lists read them twice from memory. Run over blocks instead (a block = a few MiB of
consecutive pieces of the same tensors), the ops of one phase - two dot products, or restoring
w and building d - read each block from memory once and find it in cache for the next op.
Pieces are 1-D views in memory order (contiguous or any dense permuted layout, channels_last
included) when every list's tensor has the same layout; otherwise the whole tensor is one piece.
On CUDA the lists stay whole: multi-tensor kernels already do one launch per op.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

# Elements per block: three float32 blocks (w, g, g_p) take 6 MiB, well inside a server CPU's
# last-level cache, while a 12.6 M-parameter model still needs only about 25 blocks (one Python
# call per op and block).
BLOCK_ELEMENTS = 2**19


def flat_views(tensors: Sequence[Tensor]) -> list[Tensor] | None:
    """1-D views of same-shaped tensors in one common element order (their memory order), or
    None when they have no such views (different or non-dense layouts)."""
    first = tensors[0]
    if all(t.is_contiguous() for t in tensors):
        return [t.view(-1) for t in tensors]
    if any(t.stride() != first.stride() for t in tensors[1:]):
        return None
    order = sorted(range(first.dim()), key=lambda dim: -first.stride(dim))
    permuted = [t.permute(order) for t in tensors]
    if all(t.is_contiguous() for t in permuted):
        return [t.view(-1) for t in permuted]
    return None


def cache_blocks(
    *lists: Sequence[Tensor], elements: int | None = None
) -> list[tuple[list[Tensor], ...]]:
    """The lists cut into blocks: each block holds, per list, the same pieces of its tensors,
    with about `elements` (default BLOCK_ELEMENTS) elements each (a small tensor is one piece,
    several share a block)."""
    elements = BLOCK_ELEMENTS if elements is None else elements
    if not lists or not lists[0]:
        return []
    if lists[0][0].device.type != "cpu":
        return [tuple(list(tensors) for tensors in lists)]
    blocks: list[tuple[list[Tensor], ...]] = []
    current: tuple[list[Tensor], ...] = tuple([] for _ in lists)
    size = 0
    for row in zip(*lists, strict=True):
        flat = flat_views(row) if row[0].numel() > elements else None
        if flat is None:
            pieces = [tuple(row)]
        else:
            pieces = list(zip(*(view.split(elements) for view in flat), strict=True))
        for piece in pieces:
            for target, tensor in zip(current, piece, strict=True):
                target.append(tensor)
            size += piece[0].numel()
            if size >= elements:
                blocks.append(current)
                current, size = tuple([] for _ in lists), 0
    if current[0]:
        blocks.append(current)
    return blocks
