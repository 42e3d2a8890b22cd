"""Read a sweep's runs.parquet / history.parquet and name each run's optimizer variant.

Reports read only these two files. Anything an older schema lacks is left out of the tables that
need it, with a note; nothing here raises on missing columns.

Optimizer variant (the column a run lands in): `optimizer.name`, plus `-<base>` when a
sharpness-aware optimizer runs on a base other than SGD (`gsam-adamw`), plus `(<adaptive>)` for
adaptive perturbations (`sam(asam)`). Settings that vary within one variant across the sweep
(alpha, rho, lr, ...) are appended by the comparison table (`gsam α=0.1`), and a budget that
differs from the SAM-family runs of the same row is marked (`sgd 2× epochs`, compute-matched).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsam_repro.errors import UsageError
from gsam_repro.results.gather import HISTORY_PARQUET, RUNS_PARQUET
from gsam_repro.train import outputs
from gsam_repro.train.config import SECTIONS

CONFIG_SECTIONS = tuple(f"{section}." for section in SECTIONS)  # flattened config columns
# Sections that never distinguish results: measurement settings, and the tags a tune: sweep
# puts on its trial and confirmation runs.
NOT_SETTING_SECTIONS = ("eval.", "tuning.")
SAM_FAMILY = ("sam", "gsam", "weighted", "asam", "esam", "gsam_weighted")
# Config keys that never distinguish results (paths, workers, logging, measurement settings).
NOT_SETTINGS = frozenset({
    "seed", "data.root", "data.download", "data.num_workers", "data.eval_batch_size",
    "train.threads", "train.log_every", "model.kwargs", "optimizer.kwargs",
})
VARIANT_KEYS = ("optimizer.name", "optimizer.base", "optimizer.adaptive")
SHORT_NAMES = {
    "optimizer.alpha": "α", "optimizer.rho": "ρ", "optimizer.rho_max": "ρ_max",
    "optimizer.rho_min": "ρ_min", "optimizer.lam": "λ", "optimizer.lr": "lr",
    "optimizer.weight_decay": "wd", "optimizer.momentum": "momentum",
    "schedule.epochs": "epochs",
}
# Display order of well-known variants; others follow alphabetically.
VARIANT_ORDER = ("sgd", "adamw", "sam", "gsam", "weighted")
PROBE_COLUMN_PREFIX = "probe_"  # fixed-radius sharpness probes: numeric, however many radii


def metrics() -> tuple[str, ...]:
    """The numeric result columns (read as float64 with NaN for missing), as the run-output
    schema marks them; sharpness probes are numeric too (`is_metric`)."""
    return outputs.metric_names()


def is_metric(column: str) -> bool:
    """True for the numeric result columns (read as float64 with NaN for missing)."""
    return column in metrics() or str(column).startswith(PROBE_COLUMN_PREFIX)


@dataclass
class Sweep:
    """A sweep's parquet contents: every run (`runs`), the finished ones (`done`), the
    per-epoch history (None when absent) and notes on what was left out."""

    name: str
    path: Path
    runs: pd.DataFrame
    history: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> pd.DataFrame:
        if "status" not in self.runs.columns:
            return self.runs
        return self.runs[self.runs["status"].astype("string").fillna("") == "done"]

    def has(self, column: str, frame: pd.DataFrame | None = None) -> bool:
        """True when `column` exists in the runs (or `frame`) and holds at least one value."""
        df = self.done if frame is None else frame
        return column in df.columns and bool(df[column].notna().any())


def short_name(key: str) -> str:
    """How a config key is written in a column label (optimizer.alpha -> α)."""
    return SHORT_NAMES.get(key, key.rpartition(".")[2])


def format_value(value: Any) -> str:
    """A config value as it appears in labels: 0.1, adamw, none."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "none"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _clean(value: Any) -> Any:
    """NA-like -> None; numpy scalars -> Python scalars (labels and dict keys need these)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def is_sam_family(name: Any, rho: Any = None, rho_max: Any = None) -> bool:
    """For runs gathered before runs recorded `optimizer_family`: a SAM-family name, or any
    optimizer given a rho."""
    if str(name).lower() in SAM_FAMILY:
        return True
    return _clean(rho) is not None or _clean(rho_max) is not None


def radius(df: pd.DataFrame) -> pd.Series:
    """Each run's radius as float64 (NaN for plain optimizers): the `radius` the run recorded
    from its optimizer, or, for runs gathered before that column existed, `optimizer.rho`
    (SAM, weighted) then `optimizer.rho_max` (GSAM)."""
    value = pd.Series(np.nan, index=df.index, dtype="float64")
    for column in ("radius", "optimizer.rho", "optimizer.rho_max"):
        if column in df.columns:
            value = value.fillna(pd.Series(numeric(df[column]), index=df.index))
    return value


def _recorded_family(row: dict) -> bool | None:
    """The family the run recorded from its optimizer object, or None for older runs."""
    family = _clean(row.get("optimizer_family"))
    return None if family is None else family == "sharpness_aware"


def variant_of(row: dict | pd.Series) -> str:
    """The optimizer variant of one run (see the module docstring)."""
    name = _clean(row.get("optimizer.name")) or "unknown"
    name = str(name)
    # a user's optimizer named by import or file path (`pkg.mod:Class`, `x/opt.py:Class`)
    # reads as its class name
    label = name.rpartition(":")[2] if ":" in name else name
    base = _clean(row.get("optimizer.base"))
    family = _recorded_family(row)
    if family is None:
        family = is_sam_family(name, row.get("optimizer.rho"), row.get("optimizer.rho_max"))
    if family and base is not None and str(base).lower() != "sgd":
        label += f"-{base}"
    adaptive = _clean(row.get("optimizer.adaptive"))
    if adaptive not in (None, False, "false", "False", "none"):
        label += f"({'adaptive' if adaptive is True else adaptive})"
    return label


def variant_sort_key(label: str) -> tuple:
    head = label.split(" ")[0]
    base = head.split("-")[0].split("(")[0]
    rank = VARIANT_ORDER.index(base) if base in VARIANT_ORDER else len(VARIANT_ORDER)
    return (rank, base, label)


def numeric(series: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for missing values, whatever its stored dtype."""
    values = pd.to_numeric(series, errors="coerce")
    return values.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)


def _normalize(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for column in df.columns:
        if is_metric(column):
            df[column] = numeric(df[column])
    df["variant"] = [variant_of(row) for row in df.to_dict("records")] if len(df) else []
    df["sam_family"] = [
        family if (family := _recorded_family(r)) is not None else
        is_sam_family(r.get("optimizer.name"), r.get("optimizer.rho"), r.get("optimizer.rho_max"))
        for r in df.to_dict("records")
    ] if len(df) else []
    return df


def config_columns(df: pd.DataFrame) -> list[str]:
    """The flattened config columns present (seed included)."""
    return [c for c in df.columns if c == "seed" or c.startswith(CONFIG_SECTIONS)]


def setting_columns(df: pd.DataFrame, exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Config columns that could distinguish two runs' results (not seed, paths, eval, ...)."""
    skip = set(NOT_SETTINGS) | set(VARIANT_KEYS) | set(exclude)
    return [c for c in config_columns(df)
            if c not in skip and not c.startswith(NOT_SETTING_SECTIONS)]


FAILED_NAMED = 10  # failed runs named one by one in the notes; the rest are counted


def _failed_runs_named(runs: pd.DataFrame) -> list[str]:
    """One note per failed run, naming its directory and error (e.g. an unreadable
    summary.json), so a run missing from the tables can be found."""
    if "run_dir" not in runs.columns:
        return []
    failed = runs[runs["status"].astype("string").fillna("") == "failed"]
    errors = failed["error"] if "error" in failed.columns else pd.Series(None, index=failed.index)
    notes = [f"{run_dir} failed: {_clean(error) or 'no error recorded'}"
             for run_dir, error in list(zip(failed["run_dir"], errors, strict=True))[:FAILED_NAMED]]
    if len(failed) > FAILED_NAMED:
        notes.append(f"... and {len(failed) - FAILED_NAMED} more failed runs (see runs.parquet)")
    return notes


def load_sweep(path: str | Path) -> Sweep:
    """Read SWEEP_DIR/runs.parquet (required) and history.parquet (optional)."""
    path = Path(path)
    runs_path = path / RUNS_PARQUET
    if not path.is_dir():
        raise UsageError(f"{path}: no such directory")
    if not runs_path.is_file():
        raise UsageError(
            f"{runs_path}: not found; run `gsam-repro gather {path}` first"
        )
    notes: list[str] = []
    try:
        runs = pd.read_parquet(runs_path)
    except Exception as err:  # a corrupt or foreign file: say so in one line
        raise UsageError(f"{runs_path}: cannot read parquet ({err})") from None
    history = None
    history_path = path / HISTORY_PARQUET
    if history_path.is_file():
        try:
            history = pd.read_parquet(history_path)
        except Exception as err:
            notes.append(f"history.parquet unreadable ({err}): training-curve figures and the "
                         "time-to-target table left out")
    else:
        notes.append("no history.parquet: training-curve figures and time-to-target left out")
    runs = _normalize(runs)
    if history is not None:
        history = history.copy()
        for column in metrics():
            if column in history.columns:
                history[column] = numeric(history[column])
        if "run_id" in history.columns and "run_id" in runs.columns:
            keep = ["run_id", "variant", "sam_family", *config_columns(runs)]
            history = history.merge(runs[keep], on="run_id", how="inner",
                                    suffixes=("", "_run"))
    name = path.name
    if "sweep" in runs.columns and runs["sweep"].notna().any():
        name = str(runs["sweep"].dropna().iloc[0])
    sweep = Sweep(name=name, path=path, runs=runs, history=history, notes=notes)
    if "status" in runs.columns and len(runs):
        counts = runs["status"].astype("string").fillna("unknown").value_counts()
        others = {k: int(v) for k, v in counts.items() if k != "done"}
        if others:
            detail = ", ".join(f"{v} {k}" for k, v in sorted(others.items()))
            notes.append(f"{sum(others.values())} of {len(runs)} runs not done and left out "
                         f"({detail})")
            notes += _failed_runs_named(runs)
    elif len(runs):
        notes.append("runs.parquet has no status column (older schema): every run counted")
    if runs.empty:
        notes.append("runs.parquet holds no runs: nothing to tabulate")
    return sweep
