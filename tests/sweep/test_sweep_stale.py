"""A finished run whose user-given optimizer file changed since it ran is `stale`: status shows
it, `sweep run` runs it again (its old directory kept under stale/), gather and report flag it."""

from __future__ import annotations

import hashlib
import json
import warnings

import pandas as pd
import pytest
from sweep_testkit import cli, write_spec

from gsam_repro.report.provenance import stale_line
from gsam_repro.results.gather import GatherWarning, gather
from gsam_repro.sweep import store
from gsam_repro.sweep.spec import expand, load_spec

OPTIMIZER = "import torch\n\n\nclass MySGD(torch.optim.SGD):\n    pass\n"
SPEC = """
name: stale
out_dir: out
grid:
  optimizer.name: [my_opt.py:MySGD]
"""


@pytest.fixture
def sweep_dir(tmp_path, monkeypatch):
    """A spec whose one run uses ./my_opt.py (relative: read from the current directory)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_opt.py").write_text(OPTIMIZER)
    write_spec(tmp_path, SPEC)
    return tmp_path


def _fake_finished(tmp_path, recorded: str):
    """The run directory of a finished run (by hand: no training) that recorded `recorded`."""
    sweep = expand(load_spec(tmp_path / "spec.yaml"))
    run = sweep.runs[0]
    run_dir = tmp_path / "out" / "runs" / run.name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("optimizer:\n  name: my_opt.py:MySGD\n")
    (run_dir / "summary.json").write_text(json.dumps(
        {"status": "done", "optimizer_file_sha256": recorded}))
    return run.run_id, run_dir


def test_status_shows_a_run_whose_optimizer_file_changed(sweep_dir, capsys):
    sha = hashlib.sha256(OPTIMIZER.encode()).hexdigest()  # computed here, not by the package
    rid, _ = _fake_finished(sweep_dir, sha)
    assert store.run_states(sweep_dir / "out", [rid])[rid].state == "done"
    (sweep_dir / "my_opt.py").write_text(OPTIMIZER + "# edited\n")
    state = store.run_states(sweep_dir / "out", [rid])[rid]
    assert state.state == "stale"
    assert "my_opt.py changed since the run" in state.error and sha[:12] in state.error
    capsys.readouterr()
    assert cli("sweep", "status", "spec.yaml") == 0
    out = capsys.readouterr().out
    assert "1 stale" in out and "my_opt.py changed since the run" in out
    (sweep_dir / "my_opt.py").unlink()
    assert "is gone" in store.run_states(sweep_dir / "out", [rid])[rid].error


def test_run_reruns_a_stale_run_keeping_the_old_one(sweep_dir, capsys):
    assert cli("sweep", "run", "spec.yaml", "--executor", "debug") == 0
    (run_dir,) = (sweep_dir / "out" / "runs").iterdir()
    first = json.loads((run_dir / "summary.json").read_text())
    assert first["optimizer_file_sha256"] == hashlib.sha256(OPTIMIZER.encode()).hexdigest()
    assert cli("sweep", "run", "spec.yaml", "--executor", "debug") == 0  # unchanged: skipped
    assert "nothing to run" in capsys.readouterr().out

    edited = OPTIMIZER + "# edited\n"
    (sweep_dir / "my_opt.py").write_text(edited)
    assert cli("sweep", "run", "spec.yaml", "--executor", "debug") == 0
    assert "running it again" in capsys.readouterr().err
    kept = sweep_dir / "out" / "stale" / run_dir.name
    assert json.loads((kept / "summary.json").read_text()) == first  # the old run, untouched
    again = json.loads((run_dir / "summary.json").read_text())
    assert again["optimizer_file_sha256"] == hashlib.sha256(edited.encode()).hexdigest()

    (sweep_dir / "my_opt.py").unlink()  # stale again, and it cannot run: refused
    assert cli("sweep", "run", "spec.yaml", "--executor", "debug") == 2
    assert "no such file 'my_opt.py'" in capsys.readouterr().err  # refused at plan time
    assert (run_dir / "summary.json").exists()  # refused before anything moved
    assert sorted(p.name for p in (sweep_dir / "out" / "stale").iterdir()) == [run_dir.name]


def test_gather_and_report_flag_stale_runs(sweep_dir):
    assert cli("sweep", "run", "spec.yaml", "--executor", "debug") == 0
    (run_dir,) = (sweep_dir / "out" / "runs").iterdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GatherWarning)
        gather(sweep_dir / "out")  # unchanged file: no warning
    (sweep_dir / "my_opt.py").write_text(OPTIMIZER + "# edited\n")
    with pytest.warns(GatherWarning, match=f"1 stale run directory.*runs/{run_dir.name} "
                      r"\(optimizer file my_opt.py changed"):
        result = gather(sweep_dir / "out")  # nothing in the run changed: still checked
    assert list(result.stale) == [f"runs/{run_dir.name}"]
    runs = pd.read_parquet(sweep_dir / "out" / "runs.parquet")
    line = stale_line(runs)
    assert line.startswith("Stale: 1 run used") and f"runs/{run_dir.name}" in line
    (sweep_dir / "my_opt.py").write_text(OPTIMIZER)
    assert stale_line(runs) is None


def test_set_aside_never_overwrites_an_earlier_stale_run(tmp_path):
    for text in ("first", "second"):
        run_dir = tmp_path / "runs" / "sgd-abc"
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(text)
        store.set_aside(tmp_path, run_dir)
        assert not run_dir.exists()
    kept = tmp_path / "stale"
    assert (kept / "sgd-abc" / "summary.json").read_text() == "first"
    assert (kept / "sgd-abc.2" / "summary.json").read_text() == "second"
