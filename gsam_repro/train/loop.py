"""One training run: a RunConfig in, one run directory out (see docs/training.md).

`run(config, out_dir)` builds data, model, optimizer and schedule, trains epoch by epoch with a
checkpoint after each, and ends with `summary.json`. Everything a user can fix (missing data,
unknown model, a batch larger than the data, a directory holding another run) raises UsageError
before anything is written.

Under a data-parallel launcher (torchrun, or a submitit job with several tasks) every process
runs this same function: the model is wrapped in DistributedDataParallel and handed to the
optimizer, each process trains on its part of every global batch, and rank 0 alone evaluates,
measures the Hessian and writes the run directory (see gsam_repro.train.distributed).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from gsam_repro.errors import UsageError
from gsam_repro.optim.facts import optimizer_facts
from gsam_repro.train import distributed, outputs, rundir
from gsam_repro.train.checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from gsam_repro.train.config import RunConfig, run_id
from gsam_repro.train.distributed import SINGLE, World
from gsam_repro.train.measure import end_of_training, evaluate_epoch, peak_memory_mb
from gsam_repro.train.schedule import make_scheduler
from gsam_repro.train.tracking import Trackers, open_trackers

# Divergence rule (docs/training.md): a run is `diverged` when its training loss is not finite,
# or when an epoch's mean training loss exceeds DIVERGENCE_FACTOR x ln(C) for C classes. ln(C)
# is the cross-entropy of a uniform guess, which a fresh network starts near; ten times that
# means confidently wrong predictions on average, which no healthy run reaches, while
# a loss spike in the first epochs of a high learning rate stays well below it.
DIVERGENCE_FACTOR = 10.0


def divergence_limit(num_classes: int) -> float:
    """The epoch training loss above which a run is marked diverged (see DIVERGENCE_FACTOR)."""
    return DIVERGENCE_FACTOR * math.log(max(num_classes, 2))


def resolve_device(name: str) -> torch.device:
    """train.device: auto picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"train.device: {name} asked for, but torch sees no CUDA device "
                         "(use train.device=auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("train.device: mps asked for, but it is not available here")
    return torch.device(name)


@contextlib.contextmanager
def torch_settings(cfg: RunConfig, device: torch.device):
    """Process-wide torch settings for the run (threads, determinism), restored afterwards."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        if cfg.train.deterministic:  # the call is slow (it imports the compiler): only if changed
            torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3:]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Parts:
    """Everything a run trains with, built before anything is written."""

    data: object
    model: nn.Module  # the plain module (what checkpoints hold and rank 0 evaluates)
    forward: Callable  # for training: the model, compiled and/or DistributedDataParallel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    criterion: nn.Module
    autocast: Callable[[], contextlib.AbstractContextManager]
    device: torch.device
    eval_forward: Callable | None = None  # the model (compiled) without DDP; None: forward
    world: World = SINGLE


@dataclass
class Counters:
    """Cumulative over the whole run, across interruptions (stored in the checkpoint)."""

    steps: int = 0
    fwd_bwd_passes: int = 0
    wall_s: float = 0.0
    train_s: float = 0.0
    train_images: int = 0
    history: list = field(default_factory=list)


def optimizer_kwargs(cfg: RunConfig) -> dict:
    """The optimizer section as create_optimizer keywords: unset (None) fields left out."""
    section = cfg.optimizer
    kwargs = {
        key: value
        for key, value in vars(section).items()
        if key not in ("name", "kwargs") and value is not None
    }
    kwargs.update(section.kwargs)
    return kwargs


def build(cfg: RunConfig, device: torch.device, world: World = SINGLE) -> Parts:
    """Data, model, optimizer, schedule and precision for `cfg` (raises UsageError early)."""
    from gsam_repro.data import build_data
    from gsam_repro.data.loaders import shard_bundle
    from gsam_repro.models import create_model
    from gsam_repro.optim import create_optimizer

    channels_last = cfg.train.channels_last
    distributed.per_device_batch(cfg.data.batch_size, world)  # a UsageError before any work
    data = build_data(cfg.data, seed=cfg.seed, device=device, num_classes=cfg.model.num_classes,
                      channels_last=channels_last)
    data = shard_bundle(data, world.rank, world.size)
    num_classes = cfg.model.num_classes or data.num_classes
    if num_classes < data.num_classes:
        raise UsageError(f"model.num_classes: {num_classes} is fewer than the "
                         f"{data.num_classes} classes of the data")
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model.name, num_classes=num_classes, in_chans=data.channels,
                         **cfg.model.kwargs).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = eval_forward = torch.compile(model) if cfg.train.compile else model
    trained = model
    if world.active:  # the optimizer gets the DDP module: both SAM passes under no_sync
        forward = trained = distributed.wrap_model(eval_forward, world, device)
        torch.manual_seed(distributed.derived_rank_seed(cfg.seed, world.rank))  # own dropout
    total_steps = cfg.schedule.epochs * len(data.train)
    try:
        optimizer = create_optimizer(cfg.optimizer.name, model.parameters(),
                                     **optimizer_kwargs(cfg), lr_max=cfg.optimizer.lr,
                                     lr_min=cfg.lr_min, model=trained, total_steps=total_steps)
    except (ValueError, TypeError) as err:
        raise UsageError(f"optimizer: {err}") from None
    scheduler = make_scheduler(optimizer, total_steps, cfg.schedule.warmup_steps,
                               cfg.schedule.decay, cfg.optimizer.lr, cfg.lr_min)
    precision = cfg.train.precision
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def autocast() -> contextlib.AbstractContextManager:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    return Parts(data, model, forward, optimizer, scheduler, scaler, criterion, autocast, device,
                 eval_forward, world)


def train_step(parts: Parts, x: torch.Tensor, y: torch.Tensor,
               counters: Counters) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step; returns the loss at w and the logits of the first forward pass.

    The closure is what the SAM family calls twice (at w, then at w + eps); counting its calls
    counts forward+backward passes for any optimizer, a user's own included."""
    first_logits: list[torch.Tensor] = []
    scaler = parts.scaler

    def closure(chunk=None) -> torch.Tensor:
        # optimizer.m: the SAM family hands a chunk of the batch; a pass is whole at its last
        xb, yb = (x, y) if chunk is None else (chunk(x), chunk(y))
        counters.fwd_bwd_passes += 1 if chunk is None or chunk.last else 0
        with parts.autocast():
            logits = parts.forward(xb)
            loss = parts.criterion(logits, yb)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if (not first_logits) if chunk is None else chunk.at_w:
            first_logits.append(logits.detach())
        return loss.detach()

    optimizer = parts.optimizer
    if scaler is None:
        optimizer.zero_grad(set_to_none=True)
        loss = optimizer.step(closure)
    else:  # fp16: unscale before use, skip the step on inf/nan, adapt the scale
        from gsam_repro.optim import scaled_step

        loss = scaled_step(optimizer, closure, scaler)
    return loss, first_logits[0] if len(first_logits) == 1 else torch.cat(first_logits)


def train_epoch(parts: Parts, cfg: RunConfig, epoch: int, counters: Counters,
                trackers: Trackers | None = None) -> dict:
    """One pass over the training set; returns its metrics (or {"diverged": True, ...}).
    `trackers` (TensorBoard, the user's loggers) get every step's loss, lr and stats."""
    loader = parts.data.train
    loader.set_epoch(epoch)
    parts.model.train()
    device = parts.device
    zero = torch.zeros((), device=device)
    loss_sum, correct = zero.clone(), zero.clone()
    stat_sums: dict[str, torch.Tensor] = {}
    stat_columns = outputs.stat_columns()  # kept as epoch means (plain optimizers: none)
    lr_sum, seen, steps = 0.0, 0, len(loader)
    data_s = 0.0
    every = cfg.train.log_every
    world = parts.world
    progress = None
    if sys.stderr.isatty() and world.is_main:
        from tqdm import tqdm

        progress = tqdm(total=steps, desc=f"epoch {epoch}/{cfg.schedule.epochs}", leave=False,
                        unit="step", dynamic_ncols=True)
    start = time.perf_counter()
    batches = iter(loader)
    for step in range(1, steps + 1):
        fetch = time.perf_counter()
        x, y = next(batches)
        data_s += time.perf_counter() - fetch
        step_lr = parts.optimizer.param_groups[0]["lr"]
        lr_sum += step_lr
        loss, logits = train_step(parts, x, y, counters)
        loss_sum += loss.float()
        correct += (logits.argmax(dim=1) == y).sum()
        seen += len(y)
        stats = getattr(parts.optimizer, "stats", None) or {}
        for key in stat_columns:
            if key in stats:
                value = stats[key].detach().float()
                stat_sums[key] = stat_sums[key] + value if key in stat_sums else value
        parts.scheduler.step()
        counters.steps += 1
        if trackers:
            trackers.step(counters.steps, loss, step_lr, stats)
        if progress is not None:
            progress.update(1)
        if step % every == 0 or step == steps:
            mean_loss = loss_sum.item() / step
            if distributed.any_rank(world, not math.isfinite(mean_loss), device):
                if progress is not None:
                    progress.close()
                return {"diverged": True, "step": step}
            lr = parts.optimizer.param_groups[0]["lr"]
            if progress is not None:
                progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.4g}")
            elif step != steps and world.is_main:
                rate = world.size * seen / (time.perf_counter() - start)
                log(f"epoch {epoch}/{cfg.schedule.epochs} step {step}/{steps} "
                    f"loss {mean_loss:.4f} lr {lr:.4g} {rate:.0f} img/s")
    if progress is not None:
        progress.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - start
    keys = list(stat_sums)
    # Several processes: the means over processes of their losses and statistics (equal parts
    # of each global batch), and the correct predictions of them all.
    totals = distributed.sum_across(
        world, torch.stack([loss_sum, correct, *(stat_sums[k] for k in keys)])).tolist()
    seen *= world.size
    means = {key: total / steps / world.size for key, total in zip(keys, totals[2:], strict=True)}
    train_loss = totals[0] / steps / world.size
    if not math.isfinite(train_loss):
        return {"diverged": True, "step": steps}
    limit = divergence_limit(logits.shape[-1])
    if train_loss > limit:
        return {"diverged": True, "step": steps,
                "why": f"the epoch's training loss {train_loss:.4g} is above {limit:.4g} "
                f"({DIVERGENCE_FACTOR:g} x ln {logits.shape[-1]}, the loss of a uniform guess)"}
    counters.train_s += train_s
    counters.train_images += seen
    stats = {column: means.get(key) for key, column in stat_columns.items()}
    stats[stat_columns["f"]] = means.get("f", train_loss)  # plain optimizers: f is the loss
    return {
        "lr": lr_sum / steps,
        "train_loss": train_loss,
        "train_acc": 100.0 * totals[1] / seen,
        **stats,
        "train_s": train_s,
        "data_s": data_s,
        "images_per_s": seen / train_s,
    }


def summarize(cfg: RunConfig, rid: str, status: str, counters: Counters, parts: Parts,
              final: dict, env: dict) -> dict:
    """summary.json (its columns: gsam_repro.train.outputs): final metrics (last evaluated
    epoch), best epoch (chosen on validation when there is a validation set, else on test), the
    end-of-training measurements `final`, the optimizer's facts, cost and environment."""
    history = counters.history
    evaluated = [row for row in history if row.get("test_acc") is not None]
    use_val = any(row.get("val_acc") is not None for row in evaluated)
    key = "val_acc" if use_val else "test_acc"
    best = max(evaluated, key=lambda row: row[key], default=None)
    best_val = [row["val_acc"] for row in evaluated if row.get("val_acc") is not None]
    run = {
        "run_id": rid, "status": status, "epochs_completed": len(history),
        "best_epoch": best["epoch"] if best else None,
        "best_test_acc": max((row["test_acc"] for row in evaluated), default=None),
        "best_val_acc": max(best_val, default=None),
        "test_acc_at_best_val": best["test_acc"] if best and use_val else None,
        "wall_s": counters.wall_s, "fwd_bwd_passes": counters.fwd_bwd_passes,
        "steps": counters.steps,
        "images_per_s": counters.train_images / counters.train_s if counters.train_s else None,
        "peak_mem_mb": peak_memory_mb(parts.device), "torch_version": torch.__version__,
    }
    return outputs.summary_record({
        "run": run, "last": history[-1] if history else {},
        "last_eval": evaluated[-1] if evaluated else {}, "final": final,
        "optimizer": optimizer_facts(parts.optimizer), "env": env})


def checkpoint_state(parts: Parts, rid: str, epoch: int, counters: Counters) -> dict:
    """What checkpoint.pt holds: rank 0's states, plus every process's RNG states (each draws
    its own dropout), gathered from all processes."""
    rank_rng = distributed.gather(parts.world, rng_states())
    return {
        "run_id": rid,
        "epoch": epoch,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "rng": rank_rng[0],
        "rank_rng": rank_rng,
        "world_size": parts.world.size,
        "counters": vars(counters).copy(),
    }


def resume(parts: Parts, out_dir: Path, rid: str) -> tuple[int, Counters]:
    """Load checkpoint.pt if there is one: the epoch it ended and the counters so far. Every
    process of a data-parallel run loads it (the run directory is on a shared filesystem)."""
    path = out_dir / rundir.CHECKPOINT
    world = parts.world
    state = load_checkpoint(path) if path.is_file() else None
    epochs = distributed.gather(world, state["epoch"] if state else 0)
    if len(set(epochs)) > 1:
        raise UsageError(f"{path}: the processes of this run found checkpoints of epochs "
                         f"{epochs}; the run directory must be on a filesystem all nodes see")
    if state is None:
        return 0, Counters()
    if state["run_id"] != rid:
        raise UsageError(f"{path} belongs to run {state['run_id']}, not {rid}")
    saved_world = state.get("world_size", 1)
    if saved_world != world.size:
        raise UsageError(f"{path} was written by {saved_world} process(es), and this run has "
                         f"{world.size}: the per-device batch (the m of m-sharpness) would "
                         "change mid-run; resume with the same number of processes")
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    if parts.scaler is not None and state["scaler"] is not None:
        parts.scaler.load_state_dict(state["scaler"])
    set_rng_states(state["rank_rng"][world.rank] if "rank_rng" in state else state["rng"])
    return state["epoch"], Counters(**state["counters"])


def run(config: RunConfig, out_dir: str | os.PathLike) -> dict:
    """Train `config` into `out_dir` and return the summary (see the module docstring).

    A finished directory returns its summary untouched; one with a checkpoint resumes; one
    holding a different run raises UsageError. On an error, failed.json records it and the
    error is raised again.

    Every process of a data-parallel run reads the directory before they meet (so all see it
    as it was) and returns rank 0's summary."""
    out_dir = Path(out_dir)
    rid = run_id(config)
    rundir.check_owner(out_dir, rid)
    finished = rundir.read_summary(out_dir)
    if finished is not None:
        return finished
    world = distributed.from_environment()
    distributed.per_device_batch(config.data.batch_size, world)
    device = distributed.device_for(world, resolve_device(config.train.device))
    # rank 0 writes the directory, so it alone holds the lock; created: nothing was here before
    lock = rundir.run_lock(out_dir) if world.is_main else contextlib.nullcontext(False)
    with lock as created, torch_settings(config, device), \
            distributed.process_group(world, device):
        try:
            return _run(config, out_dir, rid, device, world)
        except Exception as err:
            started = not created or (out_dir / rundir.CONFIG).exists()
            if out_dir.is_dir() and world.is_main and started:
                rundir.write_failed(out_dir, err)
            raise


def _run(cfg: RunConfig, out_dir: Path, rid: str, device: torch.device, world: World) -> dict:
    parts = build(cfg, device, world)
    main = world.is_main
    trackers = open_trackers(cfg, out_dir, main)  # before any write: a missing package stops it
    env = rundir.environment(device, cfg.optimizer.name)
    env.update(world_size=world.size,
               per_device_batch=distributed.per_device_batch(cfg.data.batch_size, world))
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / rundir.FAILED).unlink(missing_ok=True)
        config_dict = cfg.to_dict()
        config_dict["schedule"]["lr_min"] = cfg.lr_min
        rundir.atomic_write_text(out_dir / rundir.CONFIG, rundir.config_text(config_dict, rid))
        rundir.atomic_write_json(out_dir / rundir.ENV, env)

    done_epochs, counters = resume(parts, out_dir, rid)
    if main:
        rundir.write_metrics(out_dir, counters.history)
    epochs = cfg.schedule.epochs
    if main and done_epochs:
        log(f"run {rid}: resuming after epoch {done_epochs}/{epochs} in {out_dir}")
    elif main:
        processes = (f" in {world.size} processes ({world.launcher}, "
                     f"{env['per_device_batch']} images each a step)" if world.active else "")
        log(f"run {rid}: {cfg.model.name} on {cfg.data.name} ({parts.data.train_examples} "
            f"images, {len(parts.data.train)} steps an epoch) with {cfg.optimizer.name} on "
            f"{device}{processes}, into {out_dir}")
    status = "done"
    mark = time.perf_counter()
    for epoch in range(done_epochs + 1, epochs + 1):
        row = train_epoch(parts, cfg, epoch, counters, trackers)
        if row.get("diverged"):
            if main:
                why = row.get("why", "the training loss is not finite")
                log(f"run {rid}: diverged at epoch {epoch} step {row['step']}: {why}")
            status = "diverged"
            counters.wall_s += time.perf_counter() - mark
            break
        distributed.sync_from_main(world, parts.model)
        eval_start = time.perf_counter()
        if epoch % cfg.eval.every == 0 or epoch == epochs:
            row.update(evaluate_epoch(parts))
            if not math.isfinite(row["test_loss"]):  # the epoch's last steps broke the weights
                if main:
                    log(f"run {rid}: diverged at epoch {epoch}: the test loss is not finite")
                status = "diverged"
                counters.wall_s += time.perf_counter() - mark
                break
        row["eval_s"] = time.perf_counter() - eval_start
        now = time.perf_counter()
        counters.wall_s += now - mark
        mark = now
        row = outputs.history_row({**row, "epoch": epoch,  # unevaluated epochs: test_* null
                                   "epoch_s": row["train_s"] + row["eval_s"],
                                   "fwd_bwd_passes": counters.fwd_bwd_passes,
                                   "wall_s": counters.wall_s})
        counters.history.append(row)
        state = checkpoint_state(parts, rid, epoch, counters)
        if not main:
            continue
        save_checkpoint(out_dir / rundir.CHECKPOINT, state)
        rundir.write_metrics(out_dir, counters.history)
        trackers.epoch(epoch, row)
        test = "" if row["test_acc"] is None else (
            f" test_loss {row['test_loss']:.4f} test_acc {row['test_acc']:.2f}")
        log(f"epoch {epoch}/{epochs} train_loss {row['train_loss']:.4f} train_acc "
            f"{row['train_acc']:.2f}{test} ({row['epoch_s']:.1f} s, "
            f"{row['images_per_s']:.0f} img/s)")

    summary = None
    if main:
        final: dict = {}
        if status == "done":
            start = time.perf_counter()
            final = end_of_training(parts, cfg)
            counters.wall_s += time.perf_counter() - start
        summary = summarize(cfg, rid, status, counters, parts, final, env)
        rundir.atomic_write_json(out_dir / rundir.SUMMARY, summary)
    trackers.close(summary)
    return distributed.from_main(world, summary)
