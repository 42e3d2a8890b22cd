"""Gather: run directories in, two parquet files out, with a fixed schema, incrementally."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
from results_testkit import make_run

from gsam_repro.cli import main
from gsam_repro.results.gather import (
    GatherWarning,
    config_columns,
    gather,
    run_columns,
)
from gsam_repro.results.schema import HISTORY_COLUMNS, RUN_COLUMNS
from gsam_repro.sweep.store import pid_alive, recorded_job_states
from gsam_repro.train.config import valid_keys


@pytest.fixture
def mixed_sweep(tmp_path):
    """Done, diverged, failed and pending runs, a run whose summary.json is cut off and one with
    a cut-off metrics line (both kept), and a directory gather cannot read."""
    sweep = tmp_path / "sweep"
    runs = {
        "done": make_run(sweep, 0.1),
        "diverged": make_run(sweep, 0.2, status="diverged", epochs=1),
        "failed": make_run(sweep, 0.3, status=None, epochs=1,
                           failed="RuntimeError: out of memory\nmore detail"),
        "pending": make_run(sweep, 0.4, status=None, epochs=1),
    }
    corrupt = make_run(sweep, 0.5)
    (corrupt["dir"] / "summary.json").write_text('{"run_id": "x", "sta')  # cut off
    partial = sweep / "runs" / "lr=0.6-0123456789"
    partial.mkdir()  # created, nothing written yet
    bad_line = make_run(sweep, 0.7, status=None)
    with open(bad_line["dir"] / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "lr"\n')
    runs["pending"]["bad_line"] = bad_line
    runs["failed"]["corrupt"] = corrupt
    return sweep, runs, [partial.name]


def test_gather_a_mix_of_states_skipping_unreadable_dirs_with_one_warning(mixed_sweep):
    sweep, runs, unreadable = mixed_sweep
    corrupt, bad_line = runs["failed"].pop("corrupt"), runs["pending"].pop("bad_line")
    with pytest.warns(GatherWarning) as caught:
        result = gather(sweep)
    assert len(caught) == 2  # one for the runs left out, one for the runs kept with problems
    assert all(name in str(caught[0].message) for name in unreadable)
    assert sorted(result.skipped) == sorted(f"runs/{n}" for n in unreadable)
    assert f"runs/{bad_line['name']} (metrics.jsonl line 3 is not JSON" in str(caught[1].message)
    assert list(result.notes) == [f"runs/{bad_line['name']}"]

    table = pd.read_parquet(sweep / "runs.parquet").set_index("run_id")
    assert len(table) == 6
    # a cut-off summary.json: the run is failed, and says why (store.finished_state agrees)
    assert table.loc[corrupt["run_id"], "status"] == "failed"
    assert table.loc[corrupt["run_id"], "error"].startswith("unreadable summary.json: ")
    # a cut-off metrics line: the run and its two good epochs are kept
    assert table.loc[bad_line["run_id"], "status"] == "pending"
    for state, written in runs.items():
        row = table.loc[written["run_id"]]
        assert row["status"] == state
        assert row["run_dir"] == f"runs/{written['name']}"
        assert row["sweep"] == "sweep"
        assert row["optimizer.lr"] == written["config"].optimizer.lr
        assert row["schedule.lr_min"] == written["config"].lr_min
        if written["summary"]:
            assert row["test_acc"] == written["summary"]["test_acc"]
            assert row["wall_s"] == written["summary"]["wall_s"]
    assert table.loc[runs["failed"]["run_id"], "error"] == "RuntimeError: out of memory"
    assert pd.isna(table.loc[runs["pending"]["run_id"], "test_acc"])
    assert table.loc[runs["pending"]["run_id"], "epochs_completed"] == 1

    history = pd.read_parquet(sweep / "history.parquet")
    assert len(history) == sum(len(r["history"]) for r in (*runs.values(), corrupt, bad_line))
    done = history[history["run_id"] == runs["done"]["run_id"]].sort_values("epoch")
    assert done["test_acc"].tolist() == [h["test_acc"] for h in runs["done"]["history"]]
    assert "extra_key" not in history.columns


def test_columns_and_dtypes_are_fixed_so_an_empty_sweep_matches_a_full_one(mixed_sweep, tmp_path):
    sweep, _, _ = mixed_sweep
    with pytest.warns(GatherWarning):
        gather(sweep)
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    result = gather(empty)
    assert result.runs == 0 and result.epochs == 0
    for name in ("runs.parquet", "history.parquet"):
        full, none = pd.read_parquet(sweep / name), pd.read_parquet(empty / name)
        assert list(full.columns) == list(none.columns)
        assert full.dtypes.to_dict() == none.dtypes.to_dict()
        assert pq.read_schema(sweep / name).equals(pq.read_schema(empty / name))
    runs = pd.read_parquet(empty / "runs.parquet")
    assert {str(t) for t in runs.dtypes} <= {"string", "Int64", "Float64", "boolean"}
    assert set(RUN_COLUMNS) <= set(runs.columns)
    assert set(valid_keys()) <= set(runs.columns)  # every config key, flattened with dots
    assert list(pd.read_parquet(empty / "history.parquet").columns) == list(HISTORY_COLUMNS)
    assert config_columns()["optimizer.lr"] == "Float64"
    assert config_columns()["schedule.epochs"] == "Int64"
    assert config_columns()["train.deterministic"] == "boolean"
    assert list(runs.columns) == list(run_columns())


def test_unchanged_runs_are_not_read_again_and_changes_are_picked_up(tmp_path):
    sweep = tmp_path / "sweep"
    runs = [make_run(sweep, lr) for lr in (0.1, 0.2, 0.3)]
    first = gather(sweep)
    assert (first.read, first.reused, first.written) == (3, 0, True)
    stamp = os.stat(sweep / "runs.parquet").st_mtime_ns

    again = gather(sweep)
    assert (again.read, again.reused, again.written) == (0, 3, False)
    assert os.stat(sweep / "runs.parquet").st_mtime_ns == stamp

    # one run gains an epoch, one is deleted, one is new
    with open(runs[0]["dir"] / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": 3, "test_acc": 99.0}) + "\n")
    import shutil

    shutil.rmtree(runs[1]["dir"])
    make_run(sweep, 0.9)
    step = gather(sweep)
    assert (step.read, step.reused, step.written) == (2, 1, True)
    incremental = {n: pd.read_parquet(sweep / n) for n in ("runs.parquet", "history.parquet")}
    full = gather(sweep, full=True)
    assert full.read == 3
    for name, frame in incremental.items():
        pd.testing.assert_frame_equal(frame, pd.read_parquet(sweep / name))
    assert 99.0 in incremental["history.parquet"]["test_acc"].tolist()
    assert runs[1]["run_id"] not in set(incremental["runs.parquet"]["run_id"])


def test_running_comes_from_a_live_recorded_job_even_when_no_file_changed(tmp_path):
    sweep = tmp_path / "sweep"
    run = make_run(sweep, 0.1, status=None)
    # a process whose command line names submitit, as a local submitit job's does
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "submitit"])
    deadline = time.time() + 10
    while not pid_alive(job.pid) and time.time() < deadline:  # until it has exec'ed
        time.sleep(0.01)
    try:
        (sweep / "jobs.json").write_text(json.dumps({run["run_id"]: {
            "executor": "local", "job_id": str(job.pid), "host": socket.gethostname()}}))
        assert main(["gather", str(sweep)]) == 0  # the command hands gather the job states
        assert pd.read_parquet(sweep / "runs.parquet")["status"].tolist() == ["running"]
        gather(sweep, full=True)  # the library alone knows no jobs: unfinished reads pending
        assert pd.read_parquet(sweep / "runs.parquet")["status"].tolist() == ["pending"]
        gather(sweep, full=True, job_states=recorded_job_states)
        assert pd.read_parquet(sweep / "runs.parquet")["status"].tolist() == ["running"]
    finally:
        job.kill()
        job.wait()
    again = gather(sweep, job_states=recorded_job_states)
    assert again.read == 0 and again.written
    assert pd.read_parquet(sweep / "runs.parquet")["status"].tolist() == ["pending"]


def test_the_files_open_in_pandas_pyarrow_and_duckdb(tmp_path):
    sweep = tmp_path / "sweep"
    for lr in (0.1, 0.2):
        make_run(sweep, lr)
    gather(sweep)
    assert pq.read_table(sweep / "runs.parquet").num_rows == 2
    assert pq.read_table(sweep / "history.parquet").num_rows == 4
    duckdb = pytest.importorskip("duckdb")  # an optional extra; the lead's dev dependencies
    rows = duckdb.sql(f"select \"optimizer.lr\", test_acc from '{sweep / 'runs.parquet'}' "
                      "order by 1").fetchall()
    assert rows == [(0.1, 22.0), (0.2, 22.0)]


def test_cli_reports_and_warns_in_one_line_each(mixed_sweep, capsys):
    sweep, _, unreadable = mixed_sweep
    assert main(["gather", str(sweep)]) == 0
    captured = capsys.readouterr()
    warning_lines = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warning_lines) == 2 and all(n in warning_lines[0] for n in unreadable)
    assert "6 runs" in captured.out and "wrote" in captured.out
    time.sleep(0.01)
    assert main(["gather", str(sweep)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_not_a_sweep_directory_is_a_usage_error(tmp_path, capsys):
    assert main(["gather", str(tmp_path / "nothing")]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_a_config_edited_after_the_run_is_left_out_naming_the_run(tmp_path):
    sweep = tmp_path / "sweep"
    kept, edited = make_run(sweep, 0.1), make_run(sweep, 0.05)
    path = edited["dir"] / "config.yaml"
    path.write_text(path.read_text().replace("lr: 0.05", "lr: 0.9"))
    with pytest.warns(GatherWarning, match=f"runs/{edited['name']}.*config.yaml was edited after "
                      f"the run: its values give run id [0-9a-f]+, but the run is "
                      f"{edited['run_id']}"):
        result = gather(sweep)
    assert list(result.skipped) == [f"runs/{edited['name']}"]
    table = pd.read_parquet(sweep / "runs.parquet")
    assert table["run_id"].tolist() == [kept["run_id"]]
    assert 0.9 not in table["optimizer.lr"].tolist()


def test_a_missing_metrics_file_keeps_the_run_with_a_warning(tmp_path):
    sweep = tmp_path / "sweep"
    run = make_run(sweep, 0.1)
    (run["dir"] / "metrics.jsonl").unlink()
    with pytest.warns(GatherWarning, match=f"runs/{run['name']} \\(no metrics.jsonl: the run "
                      "has no history rows\\)"):
        result = gather(sweep)
    assert result.runs == 1 and result.epochs == 0
    with pytest.warns(GatherWarning, match="no metrics.jsonl"):  # said again while it lasts
        gather(sweep)


def test_a_run_that_failed_before_its_config_shows_the_failure(tmp_path):
    sweep = tmp_path / "sweep"
    run_dir = sweep / "runs" / "lr=0.1-0123456789"
    run_dir.mkdir(parents=True)
    (run_dir / "failed.json").write_text(json.dumps({
        "error": "UsageError: data.root: no cifar10 data at /nowhere\nmore", "traceback": ""}))
    result = gather(sweep)
    assert result.skipped == {}
    row = pd.read_parquet(sweep / "runs.parquet").iloc[0]
    assert (row["run_id"], row["status"]) == ("0123456789", "failed")
    assert row["error"] == "UsageError: data.root: no cifar10 data at /nowhere"


def test_a_run_with_an_unreadable_summary_is_named_in_the_reports_left_out_list(tmp_path,
                                                                                 capsys):
    sweep = tmp_path / "sweep"
    make_run(sweep, 0.1)
    broken = make_run(sweep, 0.05)
    (broken["dir"] / "summary.json").write_bytes(b'{"run_id": "\xff')  # cut off, not UTF-8
    gather(sweep)
    assert main(["report", str(sweep), "--no-figures"]) == 0
    left_out = capsys.readouterr().out.split("left out:", 1)[1]
    assert f"runs/{broken['name']} failed: unreadable summary.json: " in left_out
