"""What a sweep keeps on disk, and the state of each run read from it.

A sweep directory holds `runs/<run dir>/` (one per run, written by the trainer), `spec.yaml` (the
spec as run), `jobs.json` (the jobs `sweep run` submitted: run id -> executor, job id, host),
`submitit/` (submitit's logs and pickles), and the gathered parquet files.

The state of a run, in this order:

1. `done` or `diverged`: its `summary.json` exists (the trainer writes it last, atomically) and
   says so. A summary that cannot be read counts as `failed`. A finished run whose user-given
   optimizer file (`path/to/file.py:Class`) no longer has the sha256 the run recorded (the file
   was edited or is gone) is `stale` instead: its results are not those of the code the sweep
   would run now. `sweep run` runs it again after moving its old directory to `stale/`.
2. `failed`: its `failed.json` exists (the run raised, or `sweep run` saw its job end without a
   summary), or a SLURM job recorded for it has ended (COMPLETED, FAILED, CANCELLED, TIMEOUT,
   OUT_OF_MEMORY, NODE_FAIL, ...) without a summary.
3. `running`: a job recorded for it is alive: a local job whose process still exists on this
   host, or a SLURM job that sacct reports RUNNING.
4. `pending` otherwise: never started, queued (SLURM PENDING or REQUEUED), or interrupted with
   its job gone (Ctrl-C, a killed `sweep run`, a reboot). A pending run resumes from its
   checkpoint when the sweep runs again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# `X as X`: re-exported for the sweep's modules from their one definition (the run-file names,
# and the writer `sweep run` writes spec.yaml with).
from gsam_repro.fsio import atomic_write_json, read_json
from gsam_repro.fsio import atomic_write_text as atomic_write_text
from gsam_repro.train.rundir import CONFIG as CONFIG
from gsam_repro.train.rundir import ENV as ENV
from gsam_repro.train.rundir import (
    FAILED,
    RUNS,
    SUMMARY,
    first_line,
    hold_lock,
    run_id_from_dir_name,
    stale_reason,
)
from gsam_repro.train.rundir import METRICS as METRICS
from gsam_repro.train.rundir import SPEC_FILE as SPEC_FILE

JOBS_FILE = "jobs.json"
LOCK_FILE = ".sweep.lock"
SUBMITIT = "submitit"
STALE_DIR = "stale"  # old directories of stale runs, kept when they run again

SLURM_QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
                          "SUSPENDED", "STOPPED", "CONFIGURING"})
SLURM_RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})


# ----------------------------------------------------------------------------------------------
# run directories and their states


@dataclass
class RunState:
    state: str  # done | diverged | stale | failed | running | pending
    run_dir: Path | None  # None: never started
    error: str | None = None
    live_job: bool = False  # a job for it is queued or running: do not submit another


def index_run_dirs(sweep_dir: Path) -> dict[str, str]:
    """Run id -> run directory name, from one listing of runs/. Names may differ from what the
    spec would name the run today (a new axis adds a key): the id suffix is what counts."""
    found: dict[str, str] = {}
    try:
        names = sorted(os.listdir(Path(sweep_dir) / RUNS))
    except FileNotFoundError:
        return found
    for name in names:
        rid = run_id_from_dir_name(name)
        if rid and rid not in found:
            found[rid] = name
    return found


def finished_state(run_dir: Path) -> RunState | None:
    """done / diverged / failed from the files of a run directory; None while unfinished."""
    summary = run_dir / SUMMARY
    try:
        data = read_json(summary)
    except FileNotFoundError:
        data = None
    except (OSError, ValueError) as err:
        return RunState("failed", run_dir, f"unreadable {SUMMARY}: {err}")
    if data is not None:
        status = data.get("status", "done") if isinstance(data, dict) else None
        if status in ("done", "diverged"):
            return RunState(status, run_dir)
        return RunState("failed", run_dir, f"{SUMMARY} has status {status!r}")
    try:
        failed = read_json(run_dir / FAILED)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return RunState("failed", run_dir, f"unreadable {FAILED}")
    error = failed.get("error") if isinstance(failed, dict) else None
    return RunState("failed", run_dir, first_line(error))


def run_states(
    sweep_dir: Path, run_ids: Iterable[str], *, live: bool = True
) -> dict[str, RunState]:
    """The state of each run (see the module docstring for the rule). `live=False` skips the
    job checks (pid, sacct): unfinished runs then read as pending."""
    sweep_dir = Path(sweep_dir)
    index = index_run_dirs(sweep_dir)
    states: dict[str, RunState] = {}
    unfinished: list[str] = []
    for rid in run_ids:
        name = index.get(rid)
        if name is None:
            states[rid] = RunState("pending", None)
            unfinished.append(rid)
            continue
        run_dir = sweep_dir / RUNS / name
        state = finished_state(run_dir)
        if state is None:
            state = RunState("pending", run_dir)
            unfinished.append(rid)
        elif state.state in ("done", "diverged"):
            why = stale_reason(run_dir)
            if why:
                state = RunState("stale", run_dir, why)
        states[rid] = state
    if live and unfinished:
        for rid, (state, error) in recorded_job_states(sweep_dir, unfinished).items():
            states[rid].state = "pending" if state == "queued" else state
            states[rid].error = error
            states[rid].live_job = state in ("running", "queued")
    return states


# ----------------------------------------------------------------------------------------------
# stale runs: a user-given optimizer file changed since the run


def set_aside(sweep_dir: Path, run_dir: Path) -> Path:
    """Move a stale run's directory to `stale/` in the sweep (never over an earlier one), so
    its rerun starts clean and the old outputs stay on disk. Returns where it went."""
    target_dir = Path(sweep_dir) / STALE_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / Path(run_dir).name
    n = 1
    while target.exists():
        n += 1
        target = target_dir / f"{Path(run_dir).name}.{n}"
    os.replace(run_dir, target)
    return target


# ----------------------------------------------------------------------------------------------
# jobs submitted by `sweep run`


def load_jobs(sweep_dir: Path) -> dict[str, dict]:
    try:
        data = read_json(Path(sweep_dir) / JOBS_FILE)
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_jobs(sweep_dir: Path, jobs: dict[str, dict]) -> None:
    atomic_write_json(Path(sweep_dir) / JOBS_FILE, jobs)


def job_record(cluster: str, job_id: str) -> dict:
    return {"executor": cluster, "job_id": str(job_id), "host": socket.gethostname(),
            "submitted": time.time()}


def pid_alive(pid: int) -> bool:
    """A process with this id runs here and is a submitit job or a warm sweep worker (ids are
    reused after exit)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.exists():
        try:
            command = cmdline.read_bytes()  # a submitit job, or a warm worker of sweep/pool.py
            return b"submitit" in command or b"gsam_repro.sweep.pool" in command
        except OSError:
            return False
    return True


def job_states(records: dict[str, dict]) -> dict[str, tuple[str, str | None]]:
    """Run id -> (state, error) for unfinished runs whose recorded job says something: running,
    queued (SLURM: waiting in the queue; the run reads as pending) or failed."""
    out: dict[str, tuple[str, str | None]] = {}
    host = socket.gethostname()
    slurm: dict[str, str] = {}
    for rid, record in records.items():
        cluster = record.get("executor")
        if cluster == "local" and record.get("host") == host:
            try:
                alive = pid_alive(int(record["job_id"]))
            except (KeyError, ValueError):
                alive = False
            if alive:
                out[rid] = ("running", None)
        elif cluster == "slurm":
            slurm[rid] = str(record.get("job_id"))
    if slurm:
        states = sacct_states(set(slurm.values()))
        for rid, job_id in slurm.items():
            state = states.get(job_id, "").split(" ")[0]
            if state in SLURM_RUNNING:
                out[rid] = ("running", None)
            elif state in SLURM_QUEUED:
                out[rid] = ("queued", None)
            elif state:
                out[rid] = ("failed", f"SLURM job {job_id} ended {state} without a summary")
    return out


def recorded_job_states(sweep_dir: Path,
                        run_ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """job_states() for the runs among `run_ids` that have a job in jobs.json (what gather
    asks to tell running runs from pending ones)."""
    jobs = load_jobs(sweep_dir)
    known = {rid: jobs[rid] for rid in run_ids if rid in jobs}
    return job_states(known) if known else {}


def sacct_states(job_ids: set[str]) -> dict[str, str]:
    """SLURM job id ("123" or "123_4") -> state, from one sacct call; empty when sacct is
    missing or fails (the runs then read as pending)."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    command = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"]
    for main_id in sorted({j.split("_")[0] for j in job_ids}):
        command += ["-j", main_id]
    try:
        output = subprocess.check_output(command, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    info = SlurmInfoWatcher().read_info(output)
    return {job_id: info[job_id].get("State", "") for job_id in job_ids if job_id in info}


# ----------------------------------------------------------------------------------------------
# one `sweep run` at a time


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the sweep directory (released when the process dies)."""
    path = Path(sweep_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with hold_lock(
        path, lambda holder: f"{sweep_dir}: another `sweep run` is running on this sweep "
        f"({holder})"):
        yield
