"""The `slurm` tier runs against a live SLURM cluster, or not at all.

It runs when `SLURM_CONF` names a cluster whose `sinfo` answers within a few seconds (start one
with `tests/slurm/cluster.sh up DIR`). Otherwise every test here is skipped with the reason, except
under `GSAM_REPRO_REQUIRE_SLURM=1` (CI), where a missing cluster is a failure.
`GSAM_REPRO_START_SLURM=1` instead brings a cluster up in a temporary folder for this session and
takes it down at the end (needs root and the Debian packages cluster.sh names)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from slurm_testkit import job_ids, slurm, squeue

from gsam_repro.sweep import store

CLUSTER_SH = Path(__file__).with_name("cluster.sh")
SINFO_TIMEOUT_S = 5


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0", "false", "no")


def _no_cluster(reason: str) -> None:
    if _flag("GSAM_REPRO_REQUIRE_SLURM"):
        pytest.fail(f"GSAM_REPRO_REQUIRE_SLURM=1 but {reason}", pytrace=False)
    pytest.skip(f"no SLURM cluster: {reason} (start one: tests/slurm/cluster.sh up DIR, then "
                "export SLURM_CONF=DIR/etc/slurm.conf; or set GSAM_REPRO_START_SLURM=1)")


def cluster_answers() -> str | None:
    """None when the cluster of $SLURM_CONF has a node ready for jobs, else why not."""
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set"
    if not Path(os.environ["SLURM_CONF"]).is_file():
        return f"SLURM_CONF names no file ({os.environ['SLURM_CONF']})"
    for command in ("sinfo", "sbatch", "sacct", "squeue", "scancel", "scontrol"):
        if shutil.which(command) is None:
            return f"the SLURM client `{command}` is not on PATH"
    try:
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                              timeout=SINFO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return (f"sinfo did not answer within {SINFO_TIMEOUT_S} s "
                f"(SLURM_CONF={os.environ['SLURM_CONF']})")
    if done.returncode != 0:
        return f"sinfo failed: {done.stderr.strip()}"
    states = done.stdout.split()
    if not any(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states):
        return f"no node is up (sinfo says: {', '.join(states) or 'no nodes'})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """The SLURM_CONF of a cluster that answers (started here under GSAM_REPRO_START_SLURM=1)."""
    started = None
    if _flag("GSAM_REPRO_START_SLURM") and not os.environ.get("SLURM_CONF"):
        if os.geteuid() != 0:
            _no_cluster("GSAM_REPRO_START_SLURM=1 needs root to start the daemons")
        started = tempfile.mkdtemp(prefix="gsam-repro-slurm.")
        up = subprocess.run([str(CLUSTER_SH), "up", started], capture_output=True, text=True)
        if up.returncode != 0:
            subprocess.run([str(CLUSTER_SH), "down", started], capture_output=True)
            _no_cluster(f"cluster.sh up failed: {up.stderr.strip()}")
        os.environ["SLURM_CONF"] = f"{started}/etc/slurm.conf"
    try:
        reason = cluster_answers()
        if reason:
            _no_cluster(reason)
        yield os.environ["SLURM_CONF"]
    finally:
        if started:
            subprocess.run([str(CLUSTER_SH), "down", started], capture_output=True)
            os.environ.pop("SLURM_CONF", None)
            shutil.rmtree(started, ignore_errors=True)


@pytest.fixture(autouse=True)
def cancel_leftover_jobs(slurm_cluster, tmp_path):
    """Every test needs the cluster. When a test ends, the jobs it left behind for unfinished
    runs (as recorded in the jobs.json of its sweep directories) are cancelled, so a failing test
    never blocks the next; a finished run's job is left to exit by itself."""
    yield
    leftover = set()
    for jobs_file in tmp_path.rglob(store.JOBS_FILE):
        jobs = job_ids(jobs_file.parent)
        states = store.run_states(jobs_file.parent, list(jobs), live=False)
        for run_id, job_id in jobs.items():
            if states[run_id].state == "pending" and squeue(job_id) is not None:
                leftover.add(job_id)
    if leftover:
        slurm("scancel", *sorted(leftover), check=False)
