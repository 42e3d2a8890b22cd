"""One run over two CPU processes (gloo), launched as torchrun would: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT in the environment, `gsam_repro.train.run` in every process.

The model is small_cnn, with BatchNorm: each process normalises with the statistics of its own
part of the batch (no SyncBatchNorm), so a two-process run is not a one-process run with the same
global batch. The reference below is therefore written by hand, without DDP or the trainer: for
every global batch of the one-process data order, each half gets its own direction (its own
BatchNorm statistics; only rank 0's running statistics are kept, as the run keeps rank 0's), and
the mean of the halves' directions is the step. With one "half" the same reference reproduces a
one-process run of the trainer, which checks the reference itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn import functional as F
from train_testkit import read_json, read_metrics, smoke_tree

from gsam_repro.data import build_data
from gsam_repro.models import create_model
from gsam_repro.results.run_reader import read_run
from gsam_repro.train import config_from_dict, distributed, run
from gsam_repro.train.measure import evaluate

WORLD = 2
TIMEOUT_S = 120
# Plain SGD (no momentum, no weight decay) at a constant learning rate, so a step is w -= lr * d.
SGD = {"name": "sgd", "lr": 0.1}
GSAM = {"name": "gsam", "base": "sgd", "lr": 0.1, "rho_max": 0.1, "rho_min": 0.1, "alpha": 0.3}
# Measurements of the machine, not of the training.
TIMING = {"train_s", "data_s", "eval_s", "epoch_s", "images_per_s", "wall_s", "peak_mem_mb",
          "git_sha"}
EPOCHS = 2


def tree_for(optimizer: dict) -> dict:
    return smoke_tree(data={"train_size": 512, "batch_size": 64}, optimizer=optimizer,
                      schedule={"epochs": EPOCHS, "decay": "constant"},
                      eval={"hessian_batches": 2, "hessian_iters": 5})


# --------------------------------------------------------------------------------- launching
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher_environment(rank: int, port: int) -> dict[str, str]:
    """What torchrun sets for each process it starts."""
    return {"RANK": str(rank), "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def forbid_writes_under(folder: Path) -> None:
    """Make any file or folder this process creates under `folder` an error (the run directory
    is rank 0's alone; every write there goes through mkstemp + os.replace, or mkdir)."""
    inside = str(folder)
    real_mkstemp, real_replace, real_mkdir = tempfile.mkstemp, os.replace, os.mkdir

    def check(path) -> None:
        if path is not None and os.path.abspath(path).startswith(inside):
            raise AssertionError(f"rank {os.environ['RANK']} wrote {path}")

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own keyword
        check(dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    def replace(source, target, **kwargs):
        check(target)
        return real_replace(source, target, **kwargs)

    def mkdir(path, *args, **kwargs):
        check(path)
        return real_mkdir(path, *args, **kwargs)

    tempfile.mkstemp, os.replace, os.mkdir = mkstemp, replace, mkdir


def process(rank: int, port: int, tree: dict, out_dir: str) -> None:
    """One process of the run (forked, so it reuses this interpreter's imports)."""
    os.environ.update(launcher_environment(rank, port))
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
    if rank != 0:
        forbid_writes_under(Path(out_dir))
    run(config_from_dict(tree), out_dir)


def import_before_forking() -> None:
    """Pay once, here, for what every forked process would otherwise import on its own: the
    first torch.use_deterministic_algorithms call (train.deterministic) takes ~4 s. The call
    leaves the setting as it is."""
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled(),
                                       warn_only=torch.is_deterministic_algorithms_warn_only_enabled())


def start(tree: dict, out_dir: Path) -> list:
    import_before_forking()
    context = multiprocessing.get_context("fork")
    port = free_port()
    processes = [context.Process(target=process, args=(rank, port, tree, str(out_dir)))
                 for rank in range(WORLD)]
    for each in processes:
        each.start()
    return processes


def finish(processes: list) -> None:
    for each in processes:
        each.join(timeout=TIMEOUT_S)
        if each.is_alive():
            each.kill()
    assert [each.exitcode for each in processes] == [0] * WORLD


def run_two_processes(tree: dict, out_dir: Path) -> dict:
    finish(start(tree, out_dir))
    return read_json(out_dir / "summary.json")


# --------------------------------------------------------------------------------- reference
def gradient(model, params, x, y, keep_running_stats: bool) -> list[torch.Tensor]:
    """The loss gradient on (x, y) in training mode; BatchNorm's running statistics are put back
    unless `keep_running_stats`."""
    saved = [b.clone() for b in model.buffers()]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    if not keep_running_stats:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), saved, strict=True):
                buffer.copy_(value)
    return list(grads)


def part_direction(model, params, x, y, optimizer: dict, first_part: bool) -> list[torch.Tensor]:
    """SGD: g. GSAM: g_p - alpha * (g - <g, g_p> / |g_p|^2 * g_p), with g_p the gradient at
    w + rho * g / |g|, all on this part of the batch alone."""
    g = gradient(model, params, x, y, keep_running_stats=first_part)
    if optimizer["name"] == "sgd":
        return g
    norm = torch.sqrt(sum((gi * gi).sum() for gi in g))
    eps = [optimizer["rho_max"] * gi / (norm + 1e-12) for gi in g]
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p.add_(e)
    g_p = gradient(model, params, x, y, keep_running_stats=False)
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p.sub_(e)
    dot = sum((a * b).sum() for a, b in zip(g, g_p, strict=True))
    g_p_sq = sum((b * b).sum() for b in g_p)
    return [b - optimizer["alpha"] * (a - dot / (g_p_sq + 1e-12) * b)
            for a, b in zip(g, g_p, strict=True)]


def reference_run(tree: dict, parts: int):
    """Train by hand: each global batch split into `parts`, the mean of their directions
    applied with plain SGD. Returns the model and its test metrics."""
    config = config_from_dict(tree)
    data = build_data(config.data, seed=config.seed, device="cpu")
    torch.manual_seed(config.seed)
    model = create_model(config.model.name, num_classes=data.num_classes, in_chans=data.channels)
    params = list(model.parameters())
    lr = tree["optimizer"]["lr"]
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runs: other kernels round differently, and many steps
    try:  # at a high learning rate can grow a last-bit difference to ~1e-3
        train_by_hand(model, params, data, config.schedule.epochs, parts, tree["optimizer"], lr)
    finally:
        torch.set_num_threads(threads)
    test = evaluate(model, data.test, contextlib.nullcontext)
    return model, test


def train_by_hand(model, params, data, epochs: int, parts: int, optimizer: dict,
                  lr: float) -> None:
    for epoch in range(1, epochs + 1):
        data.train.set_epoch(epoch)
        for x, y in data.train:
            directions = [
                part_direction(model, params, xs, ys, optimizer, first_part=index == 0)
                for index, (xs, ys) in enumerate(zip(x.chunk(parts), y.chunk(parts),
                                                     strict=True))
            ]
            # The step as torch.optim.SGD takes it: p + (-lr) * d in one kernel, which rounds
            # once where `p - lr * d` rounds twice (CPUs with fused multiply-add kernels differ
            # in the last bit each step, and 16 steps at lr 0.1 grow that to ~1e-3). The mean
            # of the halves is exact here: two halves, a sum and a division by two.
            with torch.no_grad():
                for p, *ds in zip(params, *directions, strict=True):
                    p.add_(sum(ds) / parts, alpha=-lr)


def assert_weights_close(state: dict, model, rtol=1e-4, atol=1e-5) -> None:
    """With the step's arithmetic as the trainer's, plain SGD matches bitwise; GSAM's direction
    is written here in other algebra (g_p - alpha (g - c g_p) vs (1 + alpha c) g_p - alpha g)
    with other reduction orders for its two dot products, which after 16 steps leaves ~4e-7:
    the tolerance is 25 times that."""
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(state[name], tensor, rtol=rtol, atol=atol,
                                   msg=lambda text, name=name: f"{name}: {text}")


# ----------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def gsam_run(tmp_path_factory) -> Path:
    """An uninterrupted two-process GSAM run."""
    out_dir = tmp_path_factory.mktemp("gsam") / "run"
    run_two_processes(tree_for(GSAM), out_dir)
    return out_dir


@pytest.mark.parametrize("name", ["sgd", "gsam"])
def test_two_processes_average_the_directions_of_their_halves(tmp_path, gsam_run, name):
    tree = tree_for({"sgd": SGD, "gsam": GSAM}[name])
    out_dir = gsam_run if name == "gsam" else tmp_path / "sgd"
    if name == "sgd":
        run_two_processes(tree, out_dir)
    summary = read_json(out_dir / "summary.json")
    weights = torch.load(out_dir / "checkpoint.pt", weights_only=True)["model"]

    model, test = reference_run(tree, parts=WORLD)
    assert_weights_close(weights, model)
    assert summary["test_loss"] == pytest.approx(test["loss"], rel=1e-4)
    assert summary["test_acc"] == pytest.approx(test["acc"], abs=100 / 128 + 1e-9)

    # The reference with one part is the trainer's one-process run, and the halves matter.
    single = run(config_from_dict(tree), tmp_path / "single")
    whole_model, _ = reference_run(tree, parts=1)
    assert_weights_close(torch.load(tmp_path / "single" / "checkpoint.pt",
                                    weights_only=True)["model"], whole_model)
    gap = max((a - b).abs().max() for a, b in zip(model.parameters(), whole_model.parameters(),
                                                     strict=True))
    assert gap > 1e-3
    assert single["per_device_batch"] == 64 and summary["per_device_batch"] == 32
    assert summary["world_size"] == WORLD and single["world_size"] == 1
    assert summary["fwd_bwd_passes"] == single["fwd_bwd_passes"]  # a step is one global batch


def test_rank_zero_writes_a_complete_run_directory(gsam_run):
    # Rank 1 ran with every write under the run directory turned into an error (see process).
    files = sorted(p.name for p in gsam_run.iterdir())
    assert files == [".run.lock", "checkpoint.pt", "config.yaml", "env.json", "metrics.jsonl",
                     "summary.json"]
    env = read_json(gsam_run / "env.json")
    assert env["world_size"] == WORLD and env["per_device_batch"] == 64 // WORLD
    row, history = read_run(gsam_run, "ddp")
    assert row["status"] == "done" and row["epochs_completed"] == EPOCHS
    assert [entry["epoch"] for entry in history] == list(range(1, EPOCHS + 1))
    summary = read_json(gsam_run / "summary.json")
    assert summary["steps"] == EPOCHS * 512 // 64
    # The epoch means of h are means over both processes: still mean(f_p) - mean(f).
    for entry in history:
        assert entry["surrogate_gap"] == pytest.approx(entry["f_p"] - entry["f"], abs=1e-5)
    assert summary["hessian_max_eig"] > 0


def test_hessian_of_rank_zero_uses_the_images_of_the_global_batches(tmp_path, gsam_run):
    # Rank 0 measures over 2 * WORLD half batches: the images of the first 2 global batches. A
    # one-process measurement at the same weights over 2 global batches gives the same number.
    from gsam_repro.train.measure import hessian_max_eig

    config = config_from_dict(tree_for(GSAM))
    data = build_data(config.data, seed=config.seed, device="cpu")
    model = create_model("small_cnn", num_classes=data.num_classes, in_chans=data.channels)
    model.load_state_dict(torch.load(gsam_run / "checkpoint.pt", weights_only=True)["model"])
    batches = [batch for batch, _ in zip(data.hessian, range(2), strict=False)]
    expected = hessian_max_eig(model, torch.nn.CrossEntropyLoss(), batches, iters=5,
                               seed=config.seed)
    assert read_json(gsam_run / "summary.json")["hessian_max_eig"] == pytest.approx(
        expected, rel=1e-4)


@pytest.mark.slow
def test_killed_run_resumes_under_torchrun_variables_and_ends_bitwise_equal(tmp_path, gsam_run):
    tree = tree_for(GSAM)
    killed = tmp_path / "killed"
    processes = start(tree, killed)
    deadline = time.monotonic() + TIMEOUT_S
    while not (killed / "metrics.jsonl").exists() or not read_metrics(killed):
        assert all(each.is_alive() for each in processes) and time.monotonic() < deadline
        time.sleep(0.005)
    for each in processes:
        os.kill(each.pid, signal.SIGKILL)
        each.join()
    assert not (killed / "summary.json").exists(), "the kill came too late to test resume"
    assert len(read_metrics(killed)) < EPOCHS

    # The resumed run: `gsam-repro train` in two fresh processes, as torchrun would start it.
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    port = free_port()
    command = [sys.executable, "-m", "gsam_repro", "train", str(config_path), "--out",
               str(killed)]
    launched = [subprocess.Popen(command, env={**os.environ, **launcher_environment(rank, port)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for rank in range(WORLD)]
    outputs = [each.communicate(timeout=TIMEOUT_S) for each in launched]
    assert [each.returncode for each in launched] == [0] * WORLD, outputs
    assert "resuming after epoch" in outputs[0][1]
    assert outputs[1][1] == ""  # rank 1 logs nothing

    def without_timing(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in TIMING}

    assert ([without_timing(row) for row in read_metrics(killed)]
            == [without_timing(row) for row in read_metrics(gsam_run)])
    assert (without_timing(read_json(killed / "summary.json"))
            == without_timing(read_json(gsam_run / "summary.json")))
    final = torch.load(killed / "checkpoint.pt", weights_only=True)
    uninterrupted = torch.load(gsam_run / "checkpoint.pt", weights_only=True)
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(final["model"][name], tensor), name


def test_a_loss_that_breaks_ends_both_processes_with_status_diverged(tmp_path):
    tree = tree_for({"name": "sgd", "lr": 1e30})
    summary = run_two_processes(tree, tmp_path / "run")
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 0
    assert not (tmp_path / "run" / "failed.json").exists()


def flag_process(rank: int, port: int, output: str) -> None:
    import torch.distributed as dist

    os.environ.update(launcher_environment(rank, port))
    torch.set_num_threads(1)
    world = distributed.from_environment()
    device = torch.device("cpu")
    with distributed.process_group(world, device):
        # Only rank 1 sees a broken loss; both must stop.
        seen = distributed.any_rank(world, rank == 1, device)
        nobody = distributed.any_rank(world, False, device)
        assert dist.is_initialized()
    torch.save({"seen": seen, "nobody": nobody, "world": world}, output)


def test_a_flag_raised_on_one_process_reaches_every_process(tmp_path):
    context = multiprocessing.get_context("fork")
    port = free_port()
    outputs = [tmp_path / f"rank{rank}.pt" for rank in range(WORLD)]
    processes = [context.Process(target=flag_process, args=(rank, port, str(outputs[rank])))
                 for rank in range(WORLD)]
    for each in processes:
        each.start()
    finish(processes)
    results = [torch.load(path, weights_only=False) for path in outputs]
    assert [r["seen"] for r in results] == [True, True]
    assert [r["nobody"] for r in results] == [False, False]
    assert [r["world"].rank for r in results] == [0, 1]
    assert all(r["world"].launcher == "torchrun" for r in results)


def test_a_global_batch_that_does_not_split_evenly_is_refused(tmp_path, monkeypatch):
    from gsam_repro.errors import UsageError

    for key, value in launcher_environment(0, free_port()).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UsageError, match="does not split evenly over 3 processes"):
        run(config_from_dict(tree_for(SGD)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_submitit_job_with_two_tasks_is_one_data_parallel_run(tmp_path):
    # What `executor: {tasks_per_node: 2}` does on SLURM, with submitit's local executor: the
    # job's call runs in both tasks, and each joins the run as the rank submitit gives it.
    import submitit

    from gsam_repro.sweep.dispatch import RunJob

    tree = tree_for(SGD)
    tree["schedule"]["epochs"] = 1
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="local")
    executor.update_parameters(tasks_per_node=WORLD, timeout_min=5)
    job = executor.submit(RunJob(config_from_dict(tree), str(tmp_path / "run"), threads=1))
    summaries = job.results()
    assert summaries == [read_json(tmp_path / "run" / "summary.json")] * WORLD
    assert summaries[0]["world_size"] == WORLD and summaries[0]["per_device_batch"] == 32
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        ".run.lock", "checkpoint.pt", "config.yaml", "env.json", "metrics.jsonl", "summary.json"]
