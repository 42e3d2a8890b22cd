"""`sweep plan` / `sweep status` and the state rule, from run directories written by hand."""

from __future__ import annotations

import json
import re
import socket

from sweep_testkit import cli, fake_local_job, write_spec

from gsam_repro.sweep import store
from gsam_repro.sweep.plan import expand
from gsam_repro.sweep.spec import load_spec

ROW = re.compile(r"^\d+\s+[0-9a-f]{10}\s")  # a run's line in the table: number, id, ...
SPEC = """
grid:
  optimizer:
    - {name: sgd}
    - {name: sam, rho: 0.05}
  optimizer.lr: [0.1, 0.05]
"""


def make_dirs(out, sweep):
    """runs[0] done, runs[1] diverged, runs[2] failed, runs[3] with a cut-off summary."""
    dirs = []
    for run in sweep.runs:
        path = out / "runs" / run.name
        path.mkdir(parents=True)
        dirs.append(path)
    (dirs[0] / "summary.json").write_text(json.dumps({"status": "done"}))
    (dirs[1] / "summary.json").write_text(json.dumps({"status": "diverged"}))
    (dirs[2] / "failed.json").write_text(json.dumps({"error": "ValueError: bad\nline 2"}))
    (dirs[3] / "summary.json").write_text('{"stat')
    return dirs


def test_state_rule_from_files_and_jobs(tmp_path):
    sweep = expand(load_spec(write_spec(tmp_path, SPEC)))
    out = tmp_path / "out"
    make_dirs(out, sweep)
    ids = [r.run_id for r in sweep.runs]
    found = store.run_states(out, ids)
    assert [found[i].state for i in ids] == ["done", "diverged", "failed", "failed"]
    assert found[ids[2]].error == "ValueError: bad"
    assert "unreadable summary.json" in found[ids[3]].error

    (out / "runs" / sweep.runs[3].name / "summary.json").unlink()  # interrupted: no summary
    assert store.run_states(out, ids)[ids[3]].state == "pending"
    job = fake_local_job()
    try:
        store.save_jobs(out, {ids[3]: store.job_record("local", str(job.pid))})
        state = store.run_states(out, ids)[ids[3]]
        assert state.state == "running" and state.live_job
        assert store.run_states(out, ids, live=False)[ids[3]].state == "pending"
    finally:
        job.kill()
        job.wait()
    assert store.run_states(out, ids)[ids[3]].state == "pending"  # the job is gone: resumable
    other_host = store.job_record("local", str(job.pid)) | {"host": socket.gethostname() + "x"}
    store.save_jobs(out, {ids[3]: other_host})
    assert store.run_states(out, ids)[ids[3]].state == "pending"


def test_status_lists_every_run_with_its_state_and_what_varies(tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    sweep = expand(load_spec(spec))
    make_dirs(out, sweep)
    (out / "runs" / "lr=9-0123456789").mkdir()  # from an older version of the spec
    assert cli("sweep", "status", spec, "--out", out) == 0
    text = capsys.readouterr().out
    assert "sweep spec: 4 runs" in text
    assert "optimizer.name: sgd, sam" in text and "optimizer.lr: 0.1, 0.05" in text
    assert "1 done, 1 diverged, 2 failed" in text
    rows = [line.split() for line in text.splitlines() if ROW.match(line)]
    assert [(r[1], r[2]) for r in rows] == [
        (run.run_id, state) for run, state in zip(
            sweep.runs, ["done", "diverged", "failed", "failed"], strict=True)]
    assert [r[3:] for r in rows] == [["sgd", "-", "0.1"], ["sgd", "-", "0.05"],
                                    ["sam", "0.05", "0.1"], ["sam", "0.05", "0.05"]]
    assert f"{sweep.runs[2].name}: ValueError: bad" in text
    assert "1 other run directory" in text


def test_plan_writes_nothing_and_lists_the_first_runs_unless_all(tmp_path, capsys):
    spec = write_spec(tmp_path, "grid:\n  optimizer.lr: [0.1, 0.05]\nseeds: 60\n")
    out = tmp_path / "out"
    assert cli("sweep", "plan", spec, "--out", out) == 0
    text = capsys.readouterr().out
    assert "120 runs" in text and "120 pending" in text
    assert "... 20 more (--all lists every run)" in text
    assert not out.exists()
    assert cli("sweep", "plan", spec, "--out", out, "--all") == 0
    assert len([x for x in capsys.readouterr().out.splitlines() if ROW.match(x)]) == 120


def test_spec_yaml_written_by_run_replays_the_same_runs(tmp_path):
    spec = write_spec(tmp_path, """
        executor: debug
        grid:
          optimizer.lr: [0.1, 0.05]
        profiles:
          smoke: {optimizer.momentum: 0.5, seeds: 2}
    """)
    out = tmp_path / "out"
    planned = expand(load_spec(spec, ["schedule.epochs=1"], "smoke", out=out))
    assert cli("sweep", "run", spec, "--profile", "smoke", "-o", "schedule.epochs=1",
               "--out", out) == 0
    replayed = expand(load_spec(out / "spec.yaml"))
    assert [r.run_id for r in replayed.runs] == [r.run_id for r in planned.runs]
    assert replayed.spec.out_dir == out
