"""Sweeps dispatched to a live SLURM cluster as job arrays: the array-parallelism limit holds,
`sweep status` follows queued and running jobs, every run finishes and is gathered, a rerun
submits nothing, and a run that raises is failed while the others finish."""

from __future__ import annotations

import re
from datetime import datetime

import pandas as pd
import pytest
from slurm_testkit import cli, ended_rows, job_ids, jobs_named, squeue, wait_until, write_spec

from gsam_repro.sweep import store

pytestmark = pytest.mark.slurm


def status_counts(spec, out, capsys) -> dict[str, int]:
    """The per-state counts `gsam-repro sweep status` prints ("1 running, 2 pending")."""
    capsys.readouterr()
    assert cli("sweep", "status", spec, "--out", out) == 0
    text = capsys.readouterr().out
    counts = re.search(r"^  ((?:\d+ \w+(?:, )?)+)$", text, re.MULTILINE)
    assert counts, text
    return {state: int(n) for n, state in re.findall(r"(\d+) (\w+)", counts.group(1))}


def test_a_sweep_runs_as_one_throttled_job_array_and_a_rerun_submits_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    spec = write_spec(tmp_path, "slurm-array", """
        grid:
          optimizer.lr: [0.1, 0.05, 0.02]
        """, executor=f"""
        slurm_array_parallelism: 1
        slurm_setup: ["touch {out}/setup-ran-$SLURM_ARRAY_TASK_ID",
                      "while [ ! -e {out}/go ]; do sleep 0.2; done"]
        """)
    assert cli("sweep", "run", spec, "--out", out, "--no-wait") == 0
    jobs = job_ids(out)
    assert len(jobs) == 3
    array_ids = {j.split("_")[0] for j in jobs.values()}
    assert len(array_ids) == 1, f"one job array, got {jobs}"
    assert sorted(j.split("_")[1] for j in jobs.values()) == ["0", "1", "2"]

    # Two CPUs are free, but the array may run one task at a time: while the first runs (held
    # in its setup until the test lets it go, so the check does not race a short run),
    # `sweep status` shows it running and the others pending, as the queue does.
    seen = wait_until(lambda: (c := status_counts(spec, out, capsys)).get("running") and
                      c.get("pending") and c, 120, "one run running while two wait", [out])
    assert seen == {"running": 1, "pending": 2}
    queue = {j: squeue(j) for j in jobs.values()}
    assert sorted(s for s, _ in filter(None, queue.values())) == ["PENDING", "PENDING",
                                                                   "RUNNING"], queue
    assert {r for s, r in filter(None, queue.values()) if s == "PENDING"} == {"JobArrayTaskLimit"}
    (out / "go").touch()

    # A waiting `sweep run` takes over the jobs already queued instead of submitting them again.
    assert cli("sweep", "run", spec, "--out", out) == 0
    assert "0 to run on slurm, 3 already queued or running" in capsys.readouterr().err
    assert job_ids(out) == jobs
    rows = ended_rows(array_ids.pop(), 3)
    assert [r["State"] for r in rows] == ["COMPLETED"] * 3
    spans = sorted((datetime.fromisoformat(r["Start"]), datetime.fromisoformat(r["End"]))
                   for r in rows)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"array tasks overlapped despite a parallelism of 1: {rows}"
    assert sorted(p.name for p in out.glob("setup-ran-*")) == [
        "setup-ran-0", "setup-ran-1", "setup-ran-2"]

    assert cli("gather", out) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs["optimizer.lr"]) == [0.02, 0.05, 0.1]
    assert list(runs["status"]) == ["done"] * 3
    assert runs["test_acc"].notna().all() and (runs["epochs_completed"] == 2).all()
    history = pd.read_parquet(out / "history.parquet")
    assert len(history) == 3 * 2

    capsys.readouterr()
    submitted = jobs_named("slurm-array")
    assert cli("sweep", "run", spec, "--out", out) == 0
    assert "nothing to run: 3 of 3 runs finished" in capsys.readouterr().out
    assert jobs_named("slurm-array") == submitted  # the cluster got no new job


def test_a_run_that_raises_is_failed_and_the_others_finish(tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "not-on-this-node"
    spec = write_spec(tmp_path, "slurm-raises", f"""
        grid:
          data:
            - {{name: synthetic}}
            - {{name: imagefolder, root: {missing}}}
            - {{name: synthetic, train_size: 48}}
        """, executor="slurm_array_parallelism: 2")
    assert cli("sweep", "run", spec, "--out", out) == 1
    assert "2 done, 0 diverged, 1 failed" in capsys.readouterr().out

    jobs = job_ids(out)
    states = store.run_states(out, list(jobs))
    failed = [rid for rid, s in states.items() if s.state == "failed"]
    assert sorted(s.state for s in states.values()) == ["done", "done", "failed"]
    assert str(missing) in states[failed[0]].error
    # the job itself failed (non-zero exit), the others completed
    array_id = jobs[failed[0]].split("_")[0]
    slurm_states = {r["JobID"]: r["State"] for r in ended_rows(array_id, 3)}
    assert slurm_states[jobs[failed[0]]] == "FAILED"
    assert sorted(slurm_states.values()) == ["COMPLETED", "COMPLETED", "FAILED"]

    assert cli("sweep", "status", spec, "--out", out) == 0
    status = capsys.readouterr().out
    assert "2 done, 1 failed" in status and str(missing) in status
