"""A run killed with SIGKILL and started again ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch
import yaml
from train_testkit import OPTIMIZERS, read_json, read_metrics, smoke_tree

from gsam_repro.train import config_from_dict, run

# Measurements of the machine, not of the training (the checkout may gain commits meanwhile).
TIMING = {"train_s", "data_s", "eval_s", "epoch_s", "images_per_s", "wall_s", "peak_mem_mb",
          "git_sha"}


def _command(config_path, out_dir) -> list[str]:
    return [sys.executable, "-m", "gsam_repro", "train", str(config_path), "--out", str(out_dir)]


def _without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def test_resume_after_sigkill_matches_an_uninterrupted_run_bitwise(tmp_path):
    tree = smoke_tree(
        data={"train_size": 512, "val_size": 64, "augment": "cifar", "cutout": 4},
        optimizer=OPTIMIZERS["gsam"],
        schedule={"epochs": 6, "warmup_steps": 3},
    )
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    run(config_from_dict(tree), tmp_path / "reference")  # uninterrupted, in this process

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(_command(config_path, killed_dir), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed_dir / "checkpoint.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed_dir / "summary.json").exists(), "the kill came too late to test resume"
    assert len(read_metrics(killed_dir)) < 6

    resumed = subprocess.run(_command(config_path, killed_dir), env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr

    expected_rows = [_without_timing(row) for row in read_metrics(tmp_path / "reference")]
    assert [_without_timing(row) for row in read_metrics(killed_dir)] == expected_rows
    summary = _without_timing(read_json(killed_dir / "summary.json"))
    assert summary == _without_timing(read_json(tmp_path / "reference" / "summary.json"))

    final = torch.load(killed_dir / "checkpoint.pt", weights_only=True)
    reference_final = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)
    for name, tensor in reference_final["model"].items():
        assert torch.equal(final["model"][name], tensor), name
    momentum = [s["momentum_buffer"] for s in reference_final["optimizer"]["state"].values()]
    resumed_momentum = [s["momentum_buffer"] for s in final["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, resumed_momentum, strict=True))
