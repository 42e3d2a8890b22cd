"""Building blocks shared by the report's table builders: cell statistics, grouping of runs
into rows and columns, labels for settings and budgets, and setting selection on validation.

Statistics are over seeds: mean, sample standard deviation (ddof = 1, absent for one seed) and
n. Bold marks the best mean, chosen on the numbers, never on text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from gsam_repro.report.load import (
    Sweep,
    _clean,
    format_value,
    setting_columns,
    short_name,
)
from gsam_repro.report.render import Cell, Table

SIG_MARK = "†"
METRIC_LABELS = {"test_acc": "test acc (%)", "val_acc": "val acc (%)",
                 "best_test_acc": "best test acc (%)", "test_top5": "test top-5 (%)",
                 "test_acc_at_best_val": "test acc at the best validation epoch (%)"}


# ----------------------------------------------------------------------------- helpers
def stat_cell(values: Iterable[float], kind: str = "acc") -> Cell:
    """Mean, sample std (None for n < 2) and n of the finite values."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = int(array.size)
    if n == 0:
        return Cell(value=None, n=0, kind=kind)
    std = float(array.std(ddof=1)) if n >= 2 else None
    return Cell(value=float(array.mean()), std=std, n=n, kind=kind)


def bold_best(table: Table, cells: list[Cell]) -> None:
    """Bold the cells with the highest mean among `cells` (ties all bold)."""
    numbers = [c for c in cells if c is not None and c.is_number]
    if len(numbers) < 2:
        return
    best = max(c.value for c in numbers)
    for cell in numbers:
        if math.isclose(cell.value, best, rel_tol=0.0, abs_tol=1e-12):
            cell.bold = True


def groups(df: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """(label, rows) per distinct value of `keys`, sorted, NA kept as its own group."""
    if not keys:
        return [((), df)]
    out = []
    for label, sub in df.groupby(keys, dropna=False, sort=False):
        label = label if isinstance(label, tuple) else (label,)
        out.append((tuple(_clean(v) for v in label), sub))
    return sorted(out, key=lambda item: tuple(_sort_value(v) for v in item[0]))


def _sort_value(value: object) -> tuple:
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def _base_variant(label: str) -> str:
    return label.split(" ")[0]


def varying_settings(df: pd.DataFrame, exclude: Iterable[str] = ()) -> dict[str, list[str]]:
    """Per variant: the setting columns that take more than one value among its runs."""
    out: dict[str, list[str]] = {}
    columns = setting_columns(df, exclude=[*exclude, "schedule.epochs"])
    for variant, sub in df.groupby("variant", sort=False):
        out[str(variant)] = [
            c for c in columns
            if sub[c].astype("string").fillna("<NA>").nunique() > 1
        ]
    return out


def setting_text(row: dict, keys: list[str]) -> str:
    return ", ".join(f"{short_name(k)}={format_value(_clean(row.get(k)))}" for k in keys)


def budget_labels(df: pd.DataFrame, rows: list[str]) -> pd.Series:
    """Each run's variant plus its budget relative to the SAM-family runs of the same row:
    `sgd 2× epochs` when SGD gets twice their epochs (compute-matched), else the variant."""
    labels = df["variant"].astype(str).copy()
    if "schedule.epochs" not in df.columns:
        return labels
    for _, sub in groups(df, rows):
        family = sub[sub["sam_family"].astype(bool)]
        epochs = pd.to_numeric(family["schedule.epochs"], errors="coerce").dropna()
        if not len(epochs):
            continue
        reference = float(epochs.median())
        for index, value in pd.to_numeric(sub["schedule.epochs"], errors="coerce").items():
            if pd.notna(value) and reference > 0 and not math.isclose(float(value), reference):
                labels[index] = f"{labels[index]} {float(value) / reference:g}× epochs"
    return labels


def column_labels(df: pd.DataFrame, rows: list[str], exclude: Iterable[str] = ()) -> pd.Series:
    """Each run's table column: its budget label (`budget_labels`) plus the settings that vary
    among the runs of its variant (`gsam α=0.1`), so different settings are never pooled."""
    varying = varying_settings(df, exclude=[*rows, *exclude])
    budget = budget_labels(df, rows)
    labels = {}
    for index, row in zip(df.index, df.to_dict("records"), strict=True):
        variant = str(row["variant"])
        head, _, tail = budget[index].partition(" ")
        keys = varying.get(variant, [])
        text = head + (" " + setting_text(row, keys) if keys else "")
        labels[index] = text + (" " + tail if tail else "")
    return pd.Series(labels, dtype="object").reindex(df.index)


def choose_setting(runs: pd.DataFrame, keys: list[str], select_on: str
                   ) -> tuple[tuple, pd.DataFrame, int] | None:
    """The setting (values of `keys`) with the best mean `select_on`, its runs and the number
    of settings tried; None when no setting has a value to select on."""
    candidates = groups(runs, keys) if keys else [((), runs)]
    scored = []
    for setting, setting_runs in candidates:
        values = setting_runs[select_on].to_numpy(dtype=float) \
            if select_on in setting_runs.columns else np.array([])
        values = values[np.isfinite(values)]
        if values.size:
            scored.append((float(values.mean()), setting, setting_runs))
    if not scored:
        return None
    _, setting, chosen = max(scored, key=lambda item: item[0])
    return setting, chosen, len(candidates)


def _require(sweep: Sweep, table: Table, df: pd.DataFrame, columns: list[str], what: str) -> bool:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        table.notes.append(f"{what} left out: runs.parquet has no {', '.join(missing)} column "
                           "(older schema?)")
        return False
    if df.empty:
        table.notes.append(f"{what} left out: no finished runs")
        return False
    empty = [c for c in columns if not df[c].notna().any()]
    if empty:
        table.notes.append(f"{what} left out: no values in {', '.join(empty)}")
        return False
    return True


def _seed_note(table: Table) -> None:
    counts = [c.n for c in table.cells.values() if c.n is not None and c.n > 0]
    if counts and min(counts) == 1:
        table.notes.append("cells with one seed show the mean and (1), no std")



def tied_settings(df: pd.DataFrame, value: str, exclude: Iterable[str] = ()) -> list[str]:
    """Settings that vary in the sweep but take one value for each value of `value` within a
    variant (GSAM's rho_min set to rho_max / 2 in a rho sweep): they follow the swept value,
    so they are rows' properties, not separate columns."""
    tied = []
    for key in setting_columns(df, exclude=[*exclude, "schedule.epochs"]):
        text = df[key].astype("string").fillna("<NA>")
        if text.groupby(df["variant"]).nunique().max() < 2:  # constant within every variant
            continue
        per_value = text.groupby([df["variant"], df[value]]).nunique()
        if per_value.max() <= 1:
            tied.append(key)
    return tied
