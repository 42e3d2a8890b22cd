"""The run directory's guards: whose run it is, one trainer at a time, what may diverge, and the
mode of the files written into it."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys

import pytest
import torch
from train_testkit import read_json, smoke_tree

from gsam_repro.errors import UsageError
from gsam_repro.train import config_from_dict, run, rundir
from gsam_repro.train import loop as train_loop
from gsam_repro.train.checkpoint import save_checkpoint


def _listing(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_checkpoint_of_another_run_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    save_checkpoint(out / rundir.CHECKPOINT, {"run_id": "0123456789", "epoch": 1,
                                               "model": {"w": torch.zeros(3)}})
    before = _listing(out)
    with pytest.raises(UsageError, match="holds run 0123456789"):
        run(config_from_dict(smoke_tree(schedule={"epochs": 1})), out)
    assert _listing(out) == before  # no config.yaml, env.json or failed.json: it can resume


def test_a_second_trainer_into_a_locked_directory_is_refused_and_writes_nothing(tmp_path):
    config = config_from_dict(smoke_tree(schedule={"epochs": 1}))
    out = tmp_path / "out"
    out.mkdir()
    with open(out / rundir.LOCK, "a+") as held:  # what a first `gsam-repro train` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError, match="another process is training into this run"):
            run(config, out)
        assert sorted(os.listdir(out)) == [rundir.LOCK]
    assert run(config, out)["status"] == "done"  # released: the run goes ahead


def test_an_error_before_the_run_starts_leaves_no_directory_behind(tmp_path):
    config = config_from_dict(smoke_tree(data={"batch_size": 512}))  # larger than the data
    with pytest.raises(UsageError):
        run(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _exploding_steps(monkeypatch, loss: float) -> None:
    """Every step reports `loss` (finite) at w, as a run whose weights blew up does."""
    real = train_loop.train_step

    def step(*args, **kwargs):
        value, logits = real(*args, **kwargs)
        return torch.full_like(value, loss), logits

    monkeypatch.setattr(train_loop, "train_step", step)


def test_a_finite_but_exploded_loss_marks_the_run_diverged(tmp_path, monkeypatch, capsys):
    _exploding_steps(monkeypatch, 1.2e10)
    summary = run(config_from_dict(smoke_tree(schedule={"epochs": 2})), tmp_path / "out")
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 0
    assert read_json(tmp_path / "out" / "summary.json")["status"] == "diverged"
    assert "the epoch's training loss 1.2e+10 is above 23.03" in capsys.readouterr().err


def test_a_loss_below_the_divergence_limit_finishes(tmp_path, monkeypatch):
    # the synthetic data has 10 classes: the limit is 10 ln 10 = 23.03
    _exploding_steps(monkeypatch, 22.5)
    summary = run(config_from_dict(smoke_tree(schedule={"epochs": 1})), tmp_path / "out")
    assert summary["status"] == "done"


def test_run_files_get_the_mode_open_would_give_under_the_umask(tmp_path):
    script = ("import sys; from pathlib import Path; from gsam_repro.train import rundir; "
              "from gsam_repro.sweep import store; d = Path(sys.argv[1]); "
              "rundir.atomic_write_json(d / 'summary.json', {}); "
              "store.atomic_write_text(d / 'spec.yaml', '')")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True,
                   preexec_fn=lambda: os.umask(0o022))
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"summary.json": 0o644, "spec.yaml": 0o644}


def test_failed_json_has_one_shape_whoever_writes_it(tmp_path):
    try:
        raise ValueError("bad value")
    except ValueError as err:
        rundir.write_failed(tmp_path / "a", err)  # the trainer's
    rundir.write_failed(tmp_path / "b", "job ended without writing summary.json", "log tail")
    trainer = read_json(tmp_path / "a" / rundir.FAILED)
    sweep = read_json(tmp_path / "b" / rundir.FAILED)
    assert set(trainer) == set(sweep) == {"error", "traceback"}
    assert trainer["error"] == "ValueError: bad value"
    assert "raise ValueError" in trainer["traceback"]
    assert sweep == {"error": "job ended without writing summary.json", "traceback": "log tail"}


def test_run_ids_are_read_back_from_directory_names():
    from gsam_repro.sweep.ids import id_from_dir_name  # the sweep's copy, until it imports this
    from gsam_repro.train import RunConfig, run_id

    rid = run_id(RunConfig())
    for name in (f"name=gsam,seed=1-{rid}", rid, f"x-{rid[:-1]}", "x-ZZZZZZZZZZ", "plain"):
        assert rundir.run_id_from_dir_name(name) == id_from_dir_name(name)
    assert rundir.run_id_from_dir_name(f"name=gsam,seed=1-{rid}") == rid
    assert rundir.run_id_from_dir_name(f"x-{rid[:-1]}") is None
