"""Run ids come from one place: the sweep's fast `IdBuilder` assembles them from the trainer's
own id functions, so planned ids equal `run_id` of the built config and the committed runs."""

from __future__ import annotations

from pathlib import Path

from gsam_repro.sweep import ids
from gsam_repro.sweep.plan import expand
from gsam_repro.sweep.spec import load_spec
from gsam_repro.train import config

REPO = Path(__file__).resolve().parents[2]


def test_the_sweep_uses_the_trainers_id_functions():
    assert ids.id_fragment is config.id_fragment
    assert ids.id_from_fragments is config.id_from_fragments
    assert ids.resolve_lr_min is config.resolve_lr_min
    assert ids.RUN_ID_LENGTH is config.RUN_ID_LENGTH


def test_planned_ids_of_the_quick_spec_are_the_committed_runs():
    sweep = expand(load_spec(REPO / "experiments/quick.yaml"))
    recorded = {ids.id_from_dir_name(p.name) for p in (REPO / "results/quick/runs").iterdir()}
    assert {run.run_id for run in sweep.runs} == recorded


def test_run_id_is_the_hash_of_the_sorted_identifying_json():
    """An independent computation of the id of a default config (json.dumps of the whole dict)."""
    import hashlib
    import json

    cfg = config.config_from_dict({"optimizer": {"name": "gsam", "lr": 0.2}})
    flat = {k: v for k, v in cfg.flat().items() if config.identifying(k, v)}
    flat["schedule.lr_min"] = 0.2 / 100
    text = json.dumps(flat, sort_keys=True, separators=(",", ":"), default=str)
    assert config.run_id(cfg) == hashlib.sha256(text.encode()).hexdigest()[:10]


def test_lr_min_default_is_lr_over_100_everywhere():
    cfg = config.config_from_dict({"optimizer": {"lr": 0.3}})
    assert cfg.lr_min == config.resolve_lr_min(0.3, None) == 0.3 / 100
    assert config.resolve_lr_min(0.3, 0.0) == 0.0
