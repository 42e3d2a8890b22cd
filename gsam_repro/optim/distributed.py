"""What a sharpness-aware step needs from the model it trains: its BatchNorm statistics (saved
before the pass at w + eps and restored after) and, under DistributedDataParallel, whether to
skip gradient sync and how to average the final direction across workers."""

from __future__ import annotations

import torch
from torch import Tensor


def batchnorm_buffers(model: torch.nn.Module | None) -> list[Tensor]:
    """running_mean, running_var and num_batches_tracked of every BatchNorm in `model`."""
    if model is None:
        return []
    buffers = []
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                buffer = getattr(module, name, None)
                if isinstance(buffer, Tensor):
                    buffers.append(buffer)
    return buffers


def is_ddp(model: torch.nn.Module | None) -> bool:
    return (
        isinstance(model, torch.nn.parallel.DistributedDataParallel)
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    )


def average_across_workers(tensors: list[Tensor], bucket_bytes: int = 25 * 2**20) -> None:
    """All-reduce `tensors` in place to their mean over the process group, in flat buckets."""
    world = torch.distributed.get_world_size()
    if world == 1 or not tensors:
        return
    buckets: list[list[Tensor]] = []
    size = 0
    for tensor in tensors:
        same_kind = buckets and buckets[-1][0].dtype == tensor.dtype and (
            buckets[-1][0].device == tensor.device
        )
        if not same_kind or size + tensor.numel() * tensor.element_size() > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append(tensor)
        size += tensor.numel() * tensor.element_size()
    for bucket in buckets:
        flat = torch.cat([t.reshape(-1) for t in bucket])
        torch.distributed.all_reduce(flat)
        flat.div_(world)
        for tensor, chunk in zip(bucket, flat.split([t.numel() for t in bucket]), strict=True):
            tensor.copy_(chunk.view(tensor.shape))
