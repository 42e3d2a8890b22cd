"""A whole run per optimizer: the run directory holds what sweeps and reports read."""

from __future__ import annotations

import os

import pytest
from train_testkit import OPTIMIZERS, read_json, read_metrics, smoke_tree

from gsam_repro.results.schema import HISTORY_COLUMNS, RUN_COLUMNS
from gsam_repro.train import config_from_dict, load_config, run, run_id

# Filled in by gather, not by the trainer.
GATHER_ONLY = {"sweep", "run_dir", "error", "run_id"}
STEPS_PER_EPOCH = 256 // 64


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_two_epochs_write_a_complete_run_directory(tmp_path, name):
    config = config_from_dict(smoke_tree(optimizer=OPTIMIZERS[name]))
    summary = run(config, tmp_path / "run")
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == [".run.lock", "checkpoint.pt", "config.yaml", "env.json", "metrics.jsonl",
                     "summary.json"]

    assert summary == read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "done" and summary["run_id"] == run_id(config)
    assert set(RUN_COLUMNS) - GATHER_ONLY <= set(summary)
    assert summary["epochs_completed"] == 2 and summary["steps"] == 2 * STEPS_PER_EPOCH
    passes_per_step = 1 if name in ("sgd", "adamw") else 2
    assert summary["fwd_bwd_passes"] == passes_per_step * summary["steps"]

    rows = read_metrics(tmp_path / "run")
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert set(HISTORY_COLUMNS) - {"run_id", "sweep"} <= set(row)
        assert 0 <= row["test_acc"] <= row["test_top5"] <= 100
        assert 0 <= row["train_acc"] <= 100
        assert row["val_acc"] is None and row["val_loss"] is None
    assert rows[-1]["fwd_bwd_passes"] == summary["fwd_bwd_passes"]
    assert rows[0]["wall_s"] < rows[1]["wall_s"] <= summary["wall_s"]
    assert summary["test_acc"] == rows[-1]["test_acc"]
    assert summary["best_test_acc"] == max(row["test_acc"] for row in rows)

    if name in ("sgd", "adamw"):  # no perturbation: f is the training loss, no f_p or h
        assert all(row["f_p"] is None and row["surrogate_gap"] is None for row in rows)
        assert all(row["f"] == row["train_loss"] for row in rows)
    else:  # epoch means are linear: mean(h) = mean(f_p) - mean(f)
        for row in rows:
            assert row["surrogate_gap"] == pytest.approx(row["f_p"] - row["f"], abs=1e-5)
            assert row["f"] == pytest.approx(row["train_loss"], rel=1e-6)
    if name == "gsam":  # rho_t is linear in lr_t, so its epoch mean follows the mean lr
        o, lr_min = OPTIMIZERS[name], OPTIMIZERS[name]["lr"] / 100
        for row in rows:
            expected = o["rho_min"] + (o["rho_max"] - o["rho_min"]) * (row["lr"] - lr_min) / (
                o["lr"] - lr_min)
            assert row["rho"] == pytest.approx(expected, rel=1e-5)
    if name in ("sam", "weighted"):
        assert all(row["rho"] == pytest.approx(0.05) for row in rows)


def test_config_yaml_reloads_to_the_same_run(tmp_path):
    config = config_from_dict(smoke_tree(schedule={"epochs": 1}))
    run(config, tmp_path)
    text = (tmp_path / "config.yaml").read_text()
    assert text.startswith(f"# run_id: {run_id(config)}\n")
    assert run_id(load_config(tmp_path / "config.yaml")) == run_id(config)
    env = read_json(tmp_path / "env.json")
    for key in ("torch", "timm", "python", "cuda", "device", "hostname", "git_sha"):
        assert key in env


def test_a_finished_run_is_left_as_it_is(tmp_path):
    config = config_from_dict(smoke_tree(schedule={"epochs": 1}))
    first = run(config, tmp_path)
    before = {p.name: os.stat(p).st_mtime_ns for p in tmp_path.iterdir()}
    assert run(config, tmp_path) == first
    assert {p.name: os.stat(p).st_mtime_ns for p in tmp_path.iterdir()} == before


def test_synthetic_data_is_learnable_in_a_few_epochs(tmp_path):
    tree = smoke_tree(data={"train_size": 1024, "val_size": 256},
                      schedule={"epochs": 4, "decay": "cosine"})
    summary = run(config_from_dict(tree), tmp_path)
    rows = read_metrics(tmp_path)
    assert rows[-1]["train_loss"] < 0.75 * rows[0]["train_loss"]
    assert summary["test_acc"] > 50  # chance is 10 %
    assert summary["val_acc"] is not None and summary["best_val_acc"] >= summary["val_acc"]
    best = max(rows, key=lambda row: row["val_acc"])  # the best epoch is chosen on val
    assert summary["best_epoch"] == best["epoch"]


def test_eval_every_skips_test_metrics_between_but_not_at_the_end(tmp_path):
    tree = smoke_tree(schedule={"epochs": 3}, eval={"every": 2})
    run(config_from_dict(tree), tmp_path)
    tested = [row["test_acc"] is not None for row in read_metrics(tmp_path)]
    assert tested == [False, True, True]


def test_hessian_eigenvalue_is_recorded_when_asked(tmp_path):
    tree = smoke_tree(schedule={"epochs": 1}, eval={"hessian_batches": 1, "hessian_iters": 5})
    summary = run(config_from_dict(tree), tmp_path / "with")
    assert summary["hessian_max_eig"] > 0
    off = run(config_from_dict(smoke_tree(schedule={"epochs": 1})), tmp_path / "without")
    assert off["hessian_max_eig"] is None


@pytest.mark.parametrize("train", [{"precision": "bf16"}, {"precision": "fp16"},
                                   {"channels_last": True}, {"label_smoothing": 0.1}])
def test_precision_and_layout_options_train_to_the_same_place(tmp_path, train):
    """bf16/fp16 autocast, channels_last and label smoothing change numerics a little, not
    the outcome: the first epoch's loss stays near the fp32 run's."""
    tree = smoke_tree(data={"image_size": 8, "train_size": 128}, schedule={"epochs": 1})
    reference = run(config_from_dict(tree), tmp_path / "fp32")
    changed = run(config_from_dict(smoke_tree(**{**tree, "train": {**tree["train"], **train}})),
                  tmp_path / "changed")
    assert changed["status"] == "done"
    assert changed["train_loss"] == pytest.approx(reference["train_loss"], rel=0.1)
