"""`sweep plan|run|status SPEC key=value`: bare overrides as `train` takes them (before, between
or after options; `-o` the same), and `sweep run` always ends with the sweep directory."""

from __future__ import annotations

import sys

import pytest
from sweep_testkit import cli, write_spec

SPEC = """\
name: tiny
executor: debug
grid:
  optimizer.lr: [0.1, 0.05]
profiles:
  smoke: {schedule.epochs: 1, seeds: 1}
"""


def plan(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = cli("sweep", "plan", *args)
    return code, capsys.readouterr().out


def test_bare_overrides_anywhere_equal_dash_o(tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    code, with_o = plan(capsys, spec, "--out", out, "-o", "seeds=2", "-o",
                        "grid.optimizer.lr=[0.3]", "-o", "schedule.epochs=2")
    assert code == 0
    assert plan(capsys, spec, "--out", out)[1] != with_o  # the overrides change the plan
    for args in (
        (spec, "seeds=2", "grid.optimizer.lr=[0.3]", "schedule.epochs=2", "--out", out),
        (spec, "--out", out, "seeds=2", "grid.optimizer.lr=[0.3]", "schedule.epochs=2"),
        (spec, "seeds=2", "--out", out, "-o", "grid.optimizer.lr=[0.3]", "schedule.epochs=2"),
    ):
        assert plan(capsys, *args) == (0, with_o), args
    assert "optimizer.lr: 0.3" not in with_o  # lr is fixed now, seeds vary
    assert "seed: 0, 1" in with_o


def test_a_bare_argument_that_is_not_an_override_is_a_usage_error(tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC)
    assert cli("sweep", "status", spec, "--out", tmp_path / "out", "other.yaml") == 2
    assert "override 'other.yaml': expected dotted.key=value" in capsys.readouterr().err
    assert cli("sweep", "plan", spec, "optimzer.lr=0.1") == 2
    assert "optimzer" in capsys.readouterr().err


@pytest.mark.slow
def test_run_ends_with_the_profile_sweep_directory_that_gather_reads(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path, SPEC)
    assert cli("sweep", "run", "spec.yaml", "--profile", "smoke", "grid.optimizer.lr=[0.1]") == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("sweep directory: results/tiny-smoke ")
    assert "gsam-repro gather results/tiny-smoke" in last
    assert cli("gather", "results/tiny-smoke") == 0
    assert (tmp_path / "results" / "tiny-smoke" / "runs.parquet").is_file()
    capsys.readouterr()

    assert cli("sweep", "run", "spec.yaml", "--profile", "smoke", "grid.optimizer.lr=[0.1]") == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "nothing to run" in out[0]
    assert out[-1].startswith("sweep directory: results/tiny-smoke ")


def test_tensorboard_for_every_run_keeps_the_run_ids(tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    plain = plan(capsys, spec, "--out", out)[1]
    assert plan(capsys, spec, "--out", out, "train.tensorboard=true")[1] == plain


def test_sweep_with_tensorboard_but_no_package_stops_before_writing(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    spec = write_spec(tmp_path, SPEC)
    assert cli("sweep", "run", spec, "--out", tmp_path / "out", "--tensorboard") == 2
    assert "pip install 'gsam-repro[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sweep_tensorboard_flag_writes_events_in_every_run_directory(tmp_path):
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    assert cli("sweep", "run", spec, "--out", out, "--tensorboard") == 0
    run_dirs = sorted((out / "runs").iterdir())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert list(run_dir.glob("events.out.tfevents.*")), run_dir
