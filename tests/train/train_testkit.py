"""Small configs and readers shared by the training tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

# A run that takes about a second on one CPU thread: 256 synthetic 16x16 images, small_cnn.
SMOKE = {
    "seed": 0,
    "data": {"name": "synthetic", "train_size": 256, "test_size": 128, "image_size": 16,
             "batch_size": 64, "eval_batch_size": 128},
    "model": {"name": "small_cnn"},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "schedule": {"epochs": 2},
    "train": {"threads": 1, "deterministic": True},
}

OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "adamw": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.05},
    "sam": {"name": "sam", "base": "sgd", "lr": 0.05, "momentum": 0.9, "rho": 0.05},
    "gsam": {"name": "gsam", "base": "sgd", "lr": 0.05, "momentum": 0.9, "rho_max": 0.1,
             "rho_min": 0.02, "alpha": 0.2},
    "weighted": {"name": "weighted", "base": "sgd", "lr": 0.05, "momentum": 0.9, "rho": 0.05,
                 "lam": 0.5},
}


def smoke_tree(**sections) -> dict:
    """SMOKE with some sections' keys replaced, e.g. smoke_tree(schedule={"epochs": 3}); an
    `optimizer` section replaces the whole section (its keys depend on the optimizer)."""
    tree = copy.deepcopy(SMOKE)
    for name, values in sections.items():
        if name != "optimizer" and isinstance(values, dict) and isinstance(tree.get(name), dict):
            tree[name].update(values)
        else:
            tree[name] = values
    return tree


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
