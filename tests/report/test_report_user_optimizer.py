"""A user's sharpness-aware optimizer whose radius has its own name is costed and placed like a
built-in: the run records its facts from the optimizer object, so the report needs no guess from
names or keys."""

from __future__ import annotations

import pytest

from gsam_repro.optim import SharpnessAware
from gsam_repro.optim.registry import _REGISTRY, register_optimizer
from gsam_repro.report import tables
from gsam_repro.report.load import load_sweep
from gsam_repro.results.gather import gather
from gsam_repro.train import config_from_dict, run

EPSILON = 0.07


class EpsilonSAM(SharpnessAware):
    """SAM with its radius called `epsilon` (a name no built-in uses)."""

    def __init__(self, params, base_optimizer=None, *, epsilon: float = 0.05, **kwargs):
        import torch

        super().__init__(params, base_optimizer or torch.optim.SGD, rho_max=epsilon,
                         rho_name="epsilon", **kwargs)


@pytest.fixture
def registered():
    register_optimizer("epsilon_sam")(EpsilonSAM)
    yield "epsilon_sam"
    _REGISTRY.pop("epsilon_sam", None)


def _tree(optimizer: dict) -> dict:
    return {
        "seed": 0,
        "data": {"name": "synthetic", "train_size": 128, "test_size": 64, "image_size": 8,
                 "batch_size": 32, "eval_batch_size": 64},
        "model": {"name": "small_cnn"},
        "optimizer": optimizer,
        "schedule": {"epochs": 1},
        "train": {"threads": 1},
        "eval": {"probe_batches": 1},
    }


def test_a_registered_radius_name_is_costed_at_two_passes_and_fills_the_radius_column(
        tmp_path, registered):
    run(config_from_dict(_tree({"name": registered, "lr": 0.05, "momentum": 0.9,
                                "kwargs": {"epsilon": EPSILON}})), tmp_path / "runs" / "eps")
    run(config_from_dict(_tree({"name": "sgd", "lr": 0.05, "momentum": 0.9})),
        tmp_path / "runs" / "sgd")
    gather(tmp_path)
    sweep = load_sweep(tmp_path)
    runs = sweep.done.set_index("optimizer.name")
    assert runs.loc[registered, "radius"] == pytest.approx(EPSILON)
    assert runs.loc[registered, "optimizer_family"] == "sharpness_aware"
    assert bool(runs.loc[registered, "sam_family"])
    assert runs.loc["sgd", "radius"] is None or runs["radius"].isna()["sgd"]
    assert not bool(runs.loc["sgd", "sam_family"])
    table = tables.cost(sweep, ["model.name"])
    passes = {label[-1]: table.get(label, "passes / step").value for label in table.rows}
    assert passes == {"sgd": 1.0, registered: 2.0}
