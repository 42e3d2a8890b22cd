"""Data-parallel runs: one process per device, all training one run (see docs/training.md).

A run is data-parallel when its launcher says so: torchrun (or anything that sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT) with WORLD_SIZE > 1, or a submitit job with
several tasks (SLURM `tasks_per_node` > 1 or several nodes). Every process then runs the same
`gsam_repro.train.run(config, out_dir)`; this module says which process it is and carries the
few values the processes have to agree on. Rank 0 alone writes the run directory.

Everything here is a no-op for a single process, so one-process runs do exactly what they did.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from gsam_repro.errors import UsageError

# How long a process waits for the others in a collective. Rank 0 alone evaluates, measures the
# Hessian and writes checkpoints while the others wait, so this is well above torch's default.
TIMEOUT = datetime.timedelta(minutes=30)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launcher: str = "single"  # single | torchrun | submitit

    @property
    def active(self) -> bool:
        """Several processes: collectives needed."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes the run directory."""
        return self.rank == 0


SINGLE = World()


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer "
                         "(set by a data-parallel launcher such as torchrun)") from None


def from_environment() -> World:
    """The World the launcher describes: torchrun-style variables first, then submitit's job
    environment; one process when neither names several."""
    if all(name in os.environ for name in TORCHRUN_VARIABLES):
        size, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
        local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
        if size < 1 or not 0 <= rank < size:
            raise UsageError(f"environment: RANK={rank} does not fit WORLD_SIZE={size}")
        return World(rank, size, local_rank, "torchrun") if size > 1 else SINGLE
    if os.environ.get("SUBMITIT_EXECUTOR"):
        import submitit

        job = submitit.JobEnvironment()
        if job.num_tasks > 1:
            return World(job.global_rank, job.num_tasks, job.local_rank, "submitit")
    return SINGLE


def per_device_batch(batch_size: int, world: World) -> int:
    """data.batch_size is the global batch; each process trains on an equal part of it."""
    if batch_size % world.size:
        raise UsageError(f"data.batch_size = {batch_size} does not split evenly over "
                         f"{world.size} processes; make it a multiple of {world.size}")
    return batch_size // world.size


def device_for(world: World, device: torch.device) -> torch.device:
    """A data-parallel run on CUDA gives each process its own GPU: LOCAL_RANK among those it
    sees (or the one it sees, when the launcher binds one GPU to each task)."""
    if not world.active or device.type != "cuda":
        return device
    if device.index is not None:
        raise UsageError(f"train.device: {device} pins one GPU, but this is a data-parallel run "
                         f"of {world.size} processes, each on its own GPU; use auto or cuda")
    device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """torch.distributed for the run's processes (NCCL on CUDA, gloo on the CPU), torn down
    afterwards. Nothing for one process, or when the caller has initialised it already."""
    import torch.distributed as dist

    if not world.active or dist.is_initialized():
        yield
        return
    if world.launcher == "submitit":  # MASTER_ADDR, MASTER_PORT, RANK ... for env:// below
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size,
                                timeout=TIMEOUT)
    except ValueError as err:  # e.g. MASTER_ADDR not set
        raise UsageError(f"starting torch.distributed ({world.size} processes): {err}") from None
    try:
        yield
    finally:
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, world: World,
               device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` (it starts every process from rank 0's weights)."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def any_rank(world: World, flag: bool, device: torch.device) -> bool:
    """True on every process when `flag` is true on any (e.g. a non-finite loss)."""
    if not world.active:
        return flag
    import torch.distributed as dist

    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def sum_across(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over all processes (a copy; `tensor` itself for one)."""
    if not world.active:
        return tensor
    import torch.distributed as dist

    total = tensor.clone()
    dist.all_reduce(total)
    return total


def from_main(world: World, value: Any) -> Any:
    """Rank 0's `value` on every process (a picklable object, e.g. the evaluation row)."""
    if not world.active:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World, value: Any) -> list:
    """Every process's `value`, in rank order, on every process."""
    if not world.active:
        return [value]
    import torch.distributed as dist

    values: list = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def derived_rank_seed(seed: int, rank: int) -> int:
    """The torch seed of process `rank` after the model is built (dropout masks of its own)."""
    from gsam_repro.data.loaders import derived_seed

    return derived_seed(seed, rank, 5)


def sync_from_main(world: World, module: torch.nn.Module) -> None:
    """Give every process rank 0's parameters and buffers (what the checkpoint holds).

    The SAM family moves w to w + eps and back by subtraction, which leaves last-bit
    differences that depend on each process's own gradient; doing this after every epoch keeps
    the processes' copies of the model from drifting apart, and makes a run resumed from the
    checkpoint continue exactly as an uninterrupted one."""
    if not world.active:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)
