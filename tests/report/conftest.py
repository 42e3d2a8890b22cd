"""Sweeps written by the tests: runs.parquet / history.parquet with known values, through the
same column contract gather uses (gsam_repro.results.gather.frame / run_columns)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from gsam_repro.results.gather import frame, run_columns
from gsam_repro.results.schema import HISTORY_COLUMNS

_ids = itertools.count()

DEFAULTS = {
    "sgd": {},
    "adamw": {},
    "sam": {"optimizer.rho": 0.05},
    "gsam": {"optimizer.rho_max": 0.05, "optimizer.rho_min": 0.05, "optimizer.alpha": 0.3},
    "weighted": {"optimizer.rho": 0.05, "optimizer.lam": 0.3},
}


def run(optimizer: str, test_acc: float | None, seed: int = 0, **settings) -> dict:
    """One runs.parquet row: a finished run of `optimizer` with the given final accuracy.
    Keyword names use __ for dots: optimizer__alpha=0.1 -> optimizer.alpha."""
    row = {
        "run_id": f"r{next(_ids):05d}", "sweep": "testsweep", "status": "done",
        "seed": seed, "data.name": "synthetic", "model.name": "small_cnn",
        "optimizer.name": optimizer, "optimizer.lr": 0.1, "schedule.epochs": 3,
        "test_acc": test_acc, "steps": 30,
        "fwd_bwd_passes": 60 if optimizer in ("sam", "gsam", "weighted") else 30,
        "wall_s": 10.0,
    }
    row.update(DEFAULTS.get(optimizer, {}))
    row.update({k.replace("__", "."): v for k, v in settings.items()})
    return row


def with_extra_columns(runs: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """Keep the columns the rows carry beyond today's schema (probe_h_rho*, provenance, ...),
    typed as gather types them: Float64, boolean or string."""
    extra = sorted({k for row in rows for k in row} - set(runs.columns))
    for name in extra:
        values = [row.get(name) for row in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            dtype = "boolean"
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                             for v in present):
            dtype = "Float64"
        else:
            dtype = "string"
        runs[name] = pd.array(values, dtype=dtype)
    return runs


def write_sweep(folder: Path, rows: list[dict], history: list[dict] | None = None,
                drop: tuple[str, ...] = ()) -> Path:
    """Write runs.parquet (and history.parquet when given) into folder; `drop` removes columns,
    as an older schema would lack them."""
    folder.mkdir(parents=True, exist_ok=True)
    runs = with_extra_columns(frame(rows, run_columns()), rows).drop(columns=list(drop))
    runs.to_parquet(folder / "runs.parquet", index=False)
    if history is not None:
        hist = frame(history, HISTORY_COLUMNS).drop(
            columns=[c for c in drop if c in HISTORY_COLUMNS])
        hist.to_parquet(folder / "history.parquet", index=False)
    return folder


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return tmp_path / "sweep"
