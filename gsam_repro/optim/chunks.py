"""m-sharpness on one device: the rows of the batch one chunk of the closure's work covers.

With `m` set, a sharpness-aware step splits each batch into chunks of m examples and, per chunk,
computes g, eps and g_p and the method's direction, then averages the directions (weighted by
chunk size) - the arithmetic of the data-parallel path, where m is the per-device batch. The
optimizer never sees the batch, so it hands the closure a `Chunk`: the closure applies it to each
batch tensor (`x, y = chunk(x), chunk(y)`) and the chunk learns the batch size from the first.
"""

from __future__ import annotations

from torch import Tensor


class Chunk:
    """Rows [index*m, (index+1)*m) of a batch; `at_w` is False for the pass at w + eps."""

    def __init__(self, index: int, m: int, batch_size: int | None, *, at_w: bool = True):
        self.index, self.m, self.batch_size, self.at_w = index, m, batch_size, at_w

    @property
    def start(self) -> int:
        return self.index * self.m

    @property
    def size(self) -> int:
        """Examples in this chunk (the last one may be short)."""
        if self.batch_size is None:
            raise RuntimeError("m: the closure did not apply its chunk to the batch")
        return min(self.m, self.batch_size - self.start)

    @property
    def last(self) -> bool:
        """Whether this chunk ends the batch (a full pass over it is then complete)."""
        return self.start + self.size >= self.batch_size

    def __call__(self, tensor: Tensor) -> Tensor:
        """This chunk's rows of `tensor` (whose first dimension is the batch)."""
        rows = tensor.shape[0]
        if self.batch_size is None:
            self.batch_size = rows
        elif rows != self.batch_size:
            raise ValueError(
                f"m: the closure's tensors disagree on the batch size ({rows} rows, "
                f"expected {self.batch_size})"
            )
        return tensor[self.start : self.start + self.m]
