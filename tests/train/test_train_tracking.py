"""Experiment tracking: `train.tensorboard: true` leaves event files that TensorBoard's own reader
reads back, and `train.loggers` hands the same numbers to a user's logger (the W&B hook)."""

from __future__ import annotations

import json
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from train_testkit import OPTIMIZERS, read_json, read_metrics, smoke_tree

from gsam_repro.errors import ConfigError, UsageError
from gsam_repro.train import run
from gsam_repro.train.config import config_from_dict, run_id

GSAM = OPTIMIZERS["gsam"]


def tracked_config(**train):
    return config_from_dict(smoke_tree(optimizer=GSAM, train={"threads": 1, **train},
                                       eval={"hessian_batches": 1, "hessian_iters": 3}))


def scalars(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_tensorboard_events_hold_every_step_every_epoch_and_the_summary(tmp_path):
    config = tracked_config(tensorboard=True)
    out = tmp_path / "run"
    summary = run(config, out)
    assert list(out.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out))
    events.Reload()
    steps = 2 * 256 // 64  # 2 epochs of 4 steps
    for tag in ("loss", "lr", "f", "f_p", "h", "rho_t", "grad_norm", "grad_p_norm", "cos"):
        assert [s for s, _ in scalars(events, f"step/{tag}")] == list(range(1, steps + 1)), tag

    # rho_t follows the logged lr on the line through (lr_min, rho_min) and (lr, rho_max)
    lr_max, lr_min = GSAM["lr"], config.lr_min
    for (_, lr), (_, rho) in zip(scalars(events, "step/lr"), scalars(events, "step/rho_t"),
                                 strict=True):
        expected = GSAM["rho_min"] + (GSAM["rho_max"] - GSAM["rho_min"]) * (lr - lr_min) / (
            lr_max - lr_min)
        assert rho == pytest.approx(expected, rel=1e-5)
    for (_, f), (_, f_p), (_, h) in zip(scalars(events, "step/f"), scalars(events, "step/f_p"),
                                        scalars(events, "step/h"), strict=True):
        assert h == pytest.approx(f_p - f, rel=1e-4, abs=1e-6)

    # epoch scalars are the metrics.jsonl rows (float32 in the event file)
    rows = read_metrics(out)
    for key in ("train_loss", "train_acc", "test_acc", "surrogate_gap", "rho", "lr"):
        assert scalars(events, f"epoch/{key}") == [
            (row["epoch"], pytest.approx(row[key], rel=1e-6)) for row in rows], key
    # the epoch's train loss is the mean of its steps' losses
    losses = [v for _, v in scalars(events, "step/loss")]
    assert rows[0]["train_loss"] == pytest.approx(sum(losses[:4]) / 4, rel=1e-5)
    assert scalars(events, "final/hessian_max_eig") == [
        (2, pytest.approx(summary["hessian_max_eig"], rel=1e-6))]


def test_tracking_keys_do_not_change_the_run_id():
    assert run_id(tracked_config(tensorboard=True, loggers=["x.py:Y"])) == run_id(
        tracked_config())


def test_missing_tensorboard_package_is_a_clear_error_before_anything_is_written(tmp_path,
                                                                               monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = tmp_path / "run"
    with pytest.raises(UsageError, match=r"pip install 'gsam-repro\[tensorboard\]'"):
        run(tracked_config(tensorboard=True), out)
    assert not out.exists()


RECORDER = '''
import json


class Recorder:
    """A user's logger, as a Weights & Biases one would be written."""

    def __init__(self, config, run_dir):
        self.path = run_dir / "recorded.json"
        self.seen = {"optimizer": config.optimizer.name, "steps": [], "epochs": []}

    def log_step(self, step, scalars):
        self.seen["steps"].append([step, scalars["step/h"]])

    def log_epoch(self, epoch, row):
        self.seen["epochs"].append([epoch, row["test_acc"]])

    def close(self, summary):
        self.seen["final"] = summary["test_acc"]
        self.path.write_text(json.dumps(self.seen))
'''


def test_a_user_logger_named_by_file_gets_steps_epochs_and_the_summary(tmp_path):
    (tmp_path / "recorder.py").write_text(RECORDER)
    out = tmp_path / "run"
    summary = run(tracked_config(loggers=[f"{tmp_path / 'recorder.py'}:Recorder"]), out)
    seen = json.loads((out / "recorded.json").read_text())
    assert seen["optimizer"] == "gsam"
    assert [s for s, _ in seen["steps"]] == list(range(1, 9))
    assert seen["epochs"] == [[row["epoch"], row["test_acc"]] for row in read_metrics(out)]
    assert seen["final"] == read_json(out / "summary.json")["test_acc"] == summary["test_acc"]
    assert not list(out.glob("events.out.tfevents.*"))  # tensorboard stays off unless asked


def test_bad_logger_entries_are_config_errors_naming_them(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.loggers\[1\]"):
        tracked_config(loggers=["a.py:B", "no_colon"])
    with pytest.raises(UsageError, match="train.loggers: cannot load 'nowhere.py:X'"):
        run(tracked_config(loggers=["nowhere.py:X"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
