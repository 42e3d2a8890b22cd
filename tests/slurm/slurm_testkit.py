"""Helpers for the `slurm` tier: specs for tiny runs, the cluster's own view of jobs (squeue,
sacct, scontrol), and waiting with a deadline that reports what the cluster was doing."""

from __future__ import annotations

import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gsam_repro.cli import main
from gsam_repro.sweep import store

# Seconds-long runs: tiny synthetic images, one torch thread. The executor polls sacct every
# second (the default is 30 s) so that the tier stays short.
QUICK_BASE = """\
base:
  data: {name: synthetic, train_size: 64, test_size: 32, image_size: 8, batch_size: 16,
         eval_batch_size: 32}
  model: {name: small_cnn}
  optimizer: {lr: 0.05, momentum: 0.9}
  schedule: {epochs: 2}
  train: {threads: 1}
"""

# A run that trains for many short epochs (a checkpoint after each), so that a job can be
# cancelled or interrupted after its first epoch with most of its work still ahead: more than
# the seconds a cancelled job goes on running before SLURM kills it (KillWait).
LONG_BASE = """\
base:
  data: {name: synthetic, train_size: 1024, test_size: 128, image_size: 16, batch_size: 64,
         eval_batch_size: 128}
  model: {name: small_cnn}
  optimizer: {name: gsam, base: sgd, lr: 0.05, momentum: 0.9, rho_max: 0.05, rho_min: 0.01,
              alpha: 0.1}
  schedule: {epochs: 40}
  train: {threads: 1, deterministic: true}
"""

EXECUTOR = """\
executor:
  cluster: slurm
  timeout_min: 20
  cpus_per_task: 1
  poll_s: 1
"""

# summary.json and metrics.jsonl keys that describe the run's cost and provenance (timings,
# memory, host, the checkout's commit, which others may move meanwhile), not its result
NOT_RESULT_KEYS = frozenset({"wall_s", "images_per_s", "peak_mem_mb", "hostname", "git_sha",
                             "train_s", "data_s", "eval_s", "epoch_s"})


def write_spec(folder: Path, name: str, body: str = "", base: str = QUICK_BASE,
               executor: str = "") -> Path:
    """A spec file `<name>.yaml` (its name is also the SLURM job name): the base, the executor
    with `executor` lines added (e.g. "slurm_array_parallelism: 1"), then `body`."""
    extra = textwrap.indent(textwrap.dedent(executor).strip(), "  ")
    path = Path(folder) / f"{name}.yaml"
    path.write_text(base + EXECUTOR + (extra + "\n" if extra else "") + textwrap.dedent(body))
    return path


def cli(*args: Any) -> int:
    """`gsam-repro ARGS...` in this process; its exit code."""
    return main([str(a) for a in args])


def job_ids(sweep_dir: Path) -> dict[str, str]:
    """Run id -> SLURM job id, as `sweep run` recorded them."""
    return {rid: rec["job_id"] for rid, rec in store.load_jobs(sweep_dir).items()}


def slurm(*args: str, check: bool = True) -> str:
    """Run a SLURM client command; its stdout."""
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def squeue(job_id: str) -> tuple[str, str] | None:
    """(state, reason) of a job still in the queue (e.g. ("PENDING", "BeginTime")); None when
    it has left the queue. An array task is named `<array>_<index>`."""
    out = slurm("squeue", "-h", "-j", job_id, "-o", "%i|%T|%r", check=False)
    for line in out.splitlines():
        jid, state, reason = line.split("|")
        if jid == job_id:
            return state, reason
    return None


def sacct_rows(job_id: str, *, every_attempt: bool = False) -> list[dict[str, str]]:
    """sacct's allocation rows for a job (or array) id; every_attempt adds the runs a requeue
    ended (sacct -D)."""
    fields = ["JobID", "JobName", "State", "Start", "End"]
    command = ["sacct", "-X", "-n", "-P", "-o", ",".join(fields), "-j", job_id]
    if every_attempt:
        command.append("-D")
    out = slurm(*command)
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]


def ended_rows(job_id: str, count: int, *, every_attempt: bool = False,
               timeout_s: float = 60) -> list[dict[str, str]]:
    """sacct's rows for a job (array) once all `count` of them have ended. A run ends with its
    summary.json; its job's process exits a moment later."""
    live = ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED")

    def ended():
        rows = sacct_rows(job_id, every_attempt=every_attempt)
        latest = {r["JobID"]: r["State"] for r in rows}  # an earlier attempt reads REQUEUED
        return len(rows) == count and not any(s in live for s in latest.values()) and rows

    return wait_until(ended, timeout_s, f"the {count} tasks of job {job_id} to end")


def jobs_named(name: str) -> list[dict[str, str]]:
    """Every job (array tasks as one row each) the cluster's accounting has under a job name."""
    fields = ["JobID", "State"]
    out = slurm("sacct", "-X", "-n", "-P", "-o", ",".join(fields), "--name", name,
                "-S", "now-1days")
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]


def diagnostics(sweep_dirs: list[Path]) -> str:
    """What the queue and the jobs' logs say, for a failing wait."""
    parts = ["squeue:\n" + slurm("squeue", "-o", "%i %j %T %r %M", check=False)]
    for sweep_dir in sweep_dirs:
        for log in sorted(Path(sweep_dir).glob(f"{store.SUBMITIT}/*/*_log.err")):
            parts.append(f"{log}:\n" + "".join(log.read_text(errors="replace")[-2000:]))
    return "\n".join(parts)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str,
               sweep_dirs: list[Path] = (), every_s: float = 0.25) -> Any:
    """Poll `condition` until it returns something true; fail with the cluster's view of things
    when `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n"
                                 + diagnostics(list(sweep_dirs)))
        time.sleep(every_s)


def epochs_written(run_dir: Path) -> int:
    """Epochs the run has finished (and checkpointed): lines of its metrics.jsonl."""
    try:
        return sum(1 for line in (run_dir / store.METRICS).read_text().splitlines() if line)
    except FileNotFoundError:
        return 0


def only_run_dir(sweep_dir: Path) -> Path:
    (run_dir,) = (Path(sweep_dir) / store.RUNS).iterdir()
    return run_dir


def job_log(sweep_dir: Path, job_id: str) -> str:
    """The run's log (stderr of the job's task), every attempt of it."""
    return "".join(p.read_text(errors="replace") for p in
                   sorted(Path(sweep_dir).glob(f"{store.SUBMITIT}/{job_id}/*_log.err")))


class BackgroundSweep:
    """`gsam-repro sweep run ARGS...` waiting in a thread, as in a user's terminal, while the
    test plays the cluster's operator (scancel, preemption)."""

    def __init__(self, *args: Any):
        self.code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args: Any) -> None:
        try:
            self.code = cli("sweep", "run", *args)
        except BaseException as err:  # handed to the test by join()
            self.error = err

    def join(self, timeout_s: float, sweep_dirs: list[Path] = ()) -> int:
        """The exit code of `sweep run`; fails if it is still waiting after `timeout_s`."""
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise AssertionError(f"`sweep run` still waiting after {timeout_s:.0f} s\n"
                                 + diagnostics(list(sweep_dirs)))
        if self.error is not None:
            raise self.error
        assert self.code is not None
        return self.code
