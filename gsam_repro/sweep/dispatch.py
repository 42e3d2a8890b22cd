"""Running a sweep's runs through submitit: local processes (default), in-process (debug), or
SLURM job arrays.

Each run is one job that calls `gsam_repro.train.run(config, run_dir)`. The job is submitit
`Checkpointable`: when SLURM preempts it or its time runs out (and locally when submitit's
timeout comes), submitit requeues the same call, and the trainer resumes from the run
directory's checkpoint. A failing run writes `failed.json` and never stops the others.

submitit's LocalExecutor starts every job at once, so local jobs are throttled here: at most
`max_parallel` run at a time (default: cores / threads per job, each job using `train.threads`
or 1 torch thread). Ctrl-C cancels the jobs this process started; they resume next time. Local
sweeps of short runs go instead to warm workers that import torch once (gsam_repro.sweep.pool),
with the same guarantees.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable

from gsam_repro.errors import UsageError
from gsam_repro.sweep import pool, store
from gsam_repro.sweep.executor import ExecutorSpec
from gsam_repro.train import rundir
from gsam_repro.train.config import RunConfig

SLURM_ARRAY_MAX = 1000  # tasks per job array (SLURM's default MaxArraySize is 1001)
POLL_S = {"local": 0.5, "debug": 0.0, "slurm": 30.0}
LOCAL_MODES = ("auto", "pool", "process")


class RunJob(Checkpointable):
    """One submitit job: train one config into its run directory (resuming when it can).

    A job with several tasks (`tasks_per_node` > 1, or several nodes) is one data-parallel run:
    submitit calls this on every task, each task joins the run as one process (the trainer reads
    its rank from submitit's job environment), and only rank 0 writes the run directory."""

    def __init__(self, config: RunConfig, run_dir: str, threads: int | None = None):
        self.config = config
        self.run_dir = str(run_dir)
        self.threads = threads

    def __call__(self) -> dict:
        threads = (self.threads or self.config.train.threads
                   or int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or 1)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
        from gsam_repro.train import run
        from gsam_repro.train.distributed import from_environment

        try:
            return run(self.config, self.run_dir)
        except Exception as err:
            run_dir = Path(self.run_dir)
            if from_environment().is_main and not (run_dir / store.FAILED).exists():
                rundir.write_failed(run_dir, err)
            raise


@dataclass
class Task:
    """A run to dispatch: its id, directory and validated config."""

    run_id: str
    run_dir: Path
    config: RunConfig


@dataclass
class _Inflight:
    task_id: str
    run_dir: Path
    is_alive: Callable[[], bool]
    job: Any = None  # the submitit job, None for a job an earlier `sweep run` started
    log: Path | None = None


@dataclass
class Outcome:
    """How the runs this call dispatched or waited for ended."""

    done: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # still queued or running (--no-wait)


class Progress:
    """A tqdm bar counting runs done / failed / left; plain lines when stderr is no terminal."""

    def __init__(self, total: int, name: str, enabled: bool = True):
        self.total = total
        self.name = name
        self.done = self.failed = 0
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit="run", file=sys.stderr)
            self._postfix()

    def _postfix(self) -> None:
        left = self.total - self.done - self.failed
        text = f"done {self.done}, failed {self.failed}, left {left}"
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.enabled:
            print(f"{self.name}: {text}", file=sys.stderr, flush=True)

    def finished(self, state: str) -> None:
        if state == "failed":
            self.failed += 1
        else:
            self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_max_parallel(threads: int) -> int:
    """Local jobs at once: cores / torch threads per job, at least 1."""
    return max(1, cpu_count() // max(1, threads))


def make_executor(cluster: str, sweep_dir: Path, spec: ExecutorSpec, job_name: str):
    """A submitit AutoExecutor for `cluster`, its logs in the sweep's own submitit/ folder.

    The cluster is always named: AutoExecutor would pick SLURM whenever `srun` is on PATH."""
    folder = Path(sweep_dir).resolve() / store.SUBMITIT / "%j"
    kwargs: dict[str, Any] = {}
    if cluster in ("local", "slurm"):
        kwargs[f"{cluster}_max_num_timeout"] = spec.max_num_timeout
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **kwargs)
    if cluster != "debug":
        executor.update_parameters(timeout_min=int(math.ceil(spec.timeout_min)), name=job_name,
                                   **spec.params)
    return executor


def _write_failed(run_dir: Path, error: str, detail: str = "") -> None:
    if (run_dir / store.SUMMARY).exists() or (run_dir / store.FAILED).exists():
        return
    rundir.write_failed(run_dir, error, detail)


def _tail(path: Path | None, chars: int = 4000) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - chars))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _settle(item: _Inflight, outcome: Outcome, progress: Progress, why: str) -> None:
    """A job has ended: read how its run ended, marking it failed if it left no summary."""
    state = store.finished_state(item.run_dir)
    if state is None:
        _write_failed(item.run_dir, f"job ended without writing {store.SUMMARY} ({why})",
                      _tail(item.log))
        state = store.finished_state(item.run_dir) or store.RunState("failed", item.run_dir)
    getattr(outcome, state.state).append(item.task_id)
    progress.finished(state.state)


def run_tasks(
    tasks: list[Task],
    *,
    sweep_dir: Path,
    executor: ExecutorSpec,
    job_name: str,
    max_parallel: int | None = None,
    adopted: dict[str, Path] | None = None,
    wait: bool = True,
    progress: Progress | None = None,
    local_mode: str = "auto",
) -> Outcome:
    """Dispatch `tasks` and (unless `wait` is False) wait for them and for `adopted` runs
    (run id -> run dir of jobs an earlier `sweep run` started that are still alive).

    Local runs go to warm workers (`local_mode` "pool", see gsam_repro.sweep.pool) or one
    submitit process each ("process"); "auto" picks the pool when every run is short."""
    sweep_dir = Path(sweep_dir)
    adopted = adopted or {}
    progress = progress or Progress(len(tasks) + len(adopted), job_name, enabled=False)
    _set_aside_stale(tasks, sweep_dir)
    for task in tasks:  # a retried run starts clean: its old failure is kept aside
        for name in (store.FAILED, store.SUMMARY):
            path = task.run_dir / name
            if path.exists() and store.finished_state(task.run_dir) is not None:
                os.replace(path, task.run_dir / f"{name}.prev")
    cluster = executor.cluster
    if cluster == "debug":
        return _run_debug(tasks, sweep_dir, executor, job_name, progress)
    if cluster == "slurm":
        return _run_slurm(tasks, sweep_dir, executor, job_name, adopted, wait, progress)
    if local_mode not in LOCAL_MODES:
        raise UsageError(f"local mode must be one of {', '.join(LOCAL_MODES)}, got {local_mode!r}")
    if local_mode == "pool" or (local_mode == "auto" and tasks
                                and all(pool.is_short(t.config) for t in tasks)):
        return _run_pool(tasks, sweep_dir, executor, max_parallel, adopted, progress)
    return _run_local(tasks, sweep_dir, executor, job_name, max_parallel, adopted, progress)


def _set_aside_stale(tasks: list[Task], sweep_dir: Path) -> None:
    """Runs finished with an optimizer file that has changed since (rundir.stale_reason) run
    again from scratch: their old directories move to the sweep's stale/ folder first, so no
    result is overwritten or lost. (A file that is gone never gets here: planning the sweep
    refuses it, before anything moves.)"""
    stale = []
    for task in tasks:
        state = store.finished_state(task.run_dir) if task.run_dir.is_dir() else None
        why = store.stale_reason(task.run_dir) if state and state.state != "failed" else None
        if why:
            stale.append((task, why))
    for task, why in stale:
        moved = store.set_aside(sweep_dir, task.run_dir)
        print(f"{task.run_dir.name}: {why}: running it again; the old run is now in {moved}",
              file=sys.stderr)


def _max_parallel(tasks: list[Task], executor: ExecutorSpec, max_parallel: int | None) -> int:
    if max_parallel is not None:
        return max_parallel
    return executor.max_parallel or default_max_parallel(
        max((_threads(t) for t in tasks), default=1))


def _run_pool(tasks, sweep_dir, executor, max_parallel, adopted, progress) -> Outcome:
    outcome = Outcome()
    records = store.load_jobs(sweep_dir)
    pool.run_pool(tasks, sweep_dir=sweep_dir, executor=executor,
                  max_parallel=_max_parallel(tasks, executor, max_parallel), adopted=adopted,
                  records=records, progress=progress, outcome=outcome, settle=_settle,
                  threads_of=_threads)
    return outcome


def _threads(task: Task) -> int:
    return task.config.train.threads or 1


def _run_debug(tasks, sweep_dir, executor, job_name, progress) -> Outcome:
    outcome = Outcome()
    ex = make_executor("debug", sweep_dir, executor, job_name)
    for task in tasks:
        job = ex.submit(RunJob(task.config, str(task.run_dir), _threads(task)))
        try:
            job.result()
        except Exception:  # noqa: S110 - the run's failed.json says what happened
            pass
        _settle(_Inflight(task.run_id, task.run_dir, lambda: False), outcome, progress,
                "in-process run raised")
    return outcome


def _run_local(tasks, sweep_dir, executor, job_name, max_parallel, adopted, progress) -> Outcome:
    outcome = Outcome()
    max_parallel = _max_parallel(tasks, executor, max_parallel)
    ex = make_executor("local", sweep_dir, executor, job_name)
    poll = executor.poll_s or POLL_S["local"]
    jobs = store.load_jobs(sweep_dir)
    records = dict(jobs)
    inflight: list[_Inflight] = []
    for rid, run_dir in adopted.items():
        pid = int(records[rid]["job_id"])
        inflight.append(_Inflight(rid, run_dir, lambda pid=pid: store.pid_alive(pid)))
    queue = deque(tasks)
    started: list[_Inflight] = []
    try:
        while queue or inflight:
            submitted = False
            while queue and len(inflight) < max_parallel:
                task = queue.popleft()
                job = ex.submit(RunJob(task.config, str(task.run_dir), _threads(task)))
                records[task.run_id] = store.job_record("local", job.job_id)
                item = _Inflight(task.run_id, task.run_dir,
                                 lambda job=job: not job.done(), job, job.paths.stderr)
                inflight.append(item)
                started.append(item)
                submitted = True
            if submitted:
                store.save_jobs(sweep_dir, records)
            time.sleep(poll)
            for item in list(inflight):
                if not item.is_alive():
                    inflight.remove(item)
                    _settle(item, outcome, progress, _exit_reason(item.job))
    except (KeyboardInterrupt, OSError):  # Ctrl-C, or records that cannot be written
        _cancel_local([i for i in started if i in inflight], sweep_dir, records)
        raise
    return outcome


def _exit_reason(job) -> str:
    if job is None:
        return "its process is gone"
    process = getattr(job, "_process", None)
    code = process.poll() if process is not None else None
    if code is None:
        return "its process is gone"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _cancel_local(items: list[_Inflight], sweep_dir: Path, records: dict) -> None:
    """Stop the jobs this process started and forget them: their runs read as pending and
    resume from their checkpoints next time."""
    for item in items:
        item.job.cancel(check=False)
    deadline = time.time() + 10
    while time.time() < deadline and any(not i.job.done() for i in items):
        time.sleep(0.1)
    for item in items:
        if not item.job.done():
            item.job._process.send_signal(signal.SIGKILL)
        records.pop(item.task_id, None)
    with contextlib.suppress(OSError):  # a full disk: the jobs are stopped all the same
        store.save_jobs(sweep_dir, records)


def _run_slurm(tasks, sweep_dir, executor, job_name, adopted, wait, progress) -> Outcome:
    outcome = Outcome()
    records = store.load_jobs(sweep_dir)
    submitted_ids: list[str] = []
    waiting: dict[str, Path] = dict(adopted)
    if tasks:
        ex = make_executor("slurm", sweep_dir, executor, job_name)
        try:
            for start in range(0, len(tasks), SLURM_ARRAY_MAX):
                chunk = tasks[start:start + SLURM_ARRAY_MAX]
                with ex.batch():
                    jobs = [ex.submit(RunJob(t.config, str(t.run_dir), t.config.train.threads))
                            for t in chunk]
                for task, job in zip(chunk, jobs, strict=True):
                    records[task.run_id] = store.job_record("slurm", job.job_id)
                    submitted_ids.append(job.job_id)
                    waiting[task.run_id] = task.run_dir
                store.save_jobs(sweep_dir, records)
        except KeyboardInterrupt:
            _cancel_slurm(submitted_ids, tasks, sweep_dir, records)
            raise
        except Exception as err:  # sbatch refused: a bad partition, account, time limit ...
            detail = str(err).strip().splitlines()
            raise UsageError(f"submitting to SLURM failed after {len(submitted_ids)} of "
                             f"{len(tasks)} runs: {' '.join(detail[:3])}") from err
    if not wait:
        outcome.left = list(waiting)
        progress.close()
        return outcome
    poll = executor.poll_s or POLL_S["slurm"]
    try:
        while waiting:
            time.sleep(poll)
            unfinished = {}
            for rid, run_dir in list(waiting.items()):
                state = store.finished_state(run_dir)
                if state is not None:
                    getattr(outcome, state.state).append(rid)
                    progress.finished(state.state)
                    del waiting[rid]
                else:
                    unfinished[rid] = records.get(rid, {})
            for rid, (state, error) in store.job_states(unfinished).items():  # one sacct call
                if state == "failed" and rid in waiting:
                    _settle(_Inflight(rid, waiting.pop(rid), lambda: False), outcome, progress,
                            error or "SLURM job ended")
    except KeyboardInterrupt:
        _cancel_slurm(submitted_ids, tasks, sweep_dir, records)
        raise
    return outcome


def _cancel_slurm(job_ids: list[str], tasks: list[Task], sweep_dir: Path, records: dict) -> None:
    main_ids = sorted({j.split("_")[0] for j in job_ids})
    if main_ids:
        subprocess.call(["scancel", *main_ids])
    for task in tasks:
        records.pop(task.run_id, None)
    store.save_jobs(sweep_dir, records)
