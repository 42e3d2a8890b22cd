"""The fixed-radius sharpness probes: h(ρ) = f(w + ρ g/‖g‖) − f(w) at the end of training, on
training batches fixed for the whole sweep, at the same radii for every run (SGD included).

Unlike the training-time surrogate gap, which each SAM-family run measures at its own ρ_t, the
probes compare optimizers at equal radius. Columns are `probe_h_rho<r>` with r written by
format(r, "g"), and `probe_f` (the loss at w on those batches).
"""

from __future__ import annotations

import re

import pandas as pd

from gsam_repro.report.load import Sweep, variant_sort_key
from gsam_repro.report.render import Table
from gsam_repro.train.config import PROBE_PREFIX

PROBE_PATTERN = re.compile(rf"^{PROBE_PREFIX}(.+)$")


def probe_columns(df: pd.DataFrame) -> list[tuple[float, str]]:
    """(radius, column) of every `probe_h_rho<r>` column that holds a value, by radius."""
    found = []
    for column in df.columns:
        match = PROBE_PATTERN.match(str(column))
        if not match or not df[column].notna().any():
            continue
        try:
            found.append((float(match.group(1)), str(column)))
        except ValueError:
            continue
    return sorted(found)


def probe_label(radius: float) -> str:
    """A probe column's header: h(ρ=0.05)."""
    return f"h(ρ={radius:g})"


def probe_table(sweep: Sweep, rows: list[str]) -> Table:
    """h(ρ) per optimizer column (rows) and radius (columns), mean ± std (seeds), with the
    dominant Hessian eigenvalue and the probed loss beside them."""
    from gsam_repro.report.tables import column_labels, groups, stat_cell

    table = Table("probes", "sharpness at equal radius: h(ρ) = f(w + ρĝ) − f(w) at the end, "
                  "mean ± std (seeds)", [*rows, "optimizer"], [])
    df = sweep.done
    radii = probe_columns(df)
    missing = [c for c in [*rows, "optimizer.name"] if c not in df.columns]
    if missing or not radii:
        table.notes.append("probe table left out: " + (
            f"runs.parquet has no {', '.join(missing)} column" if missing else
            f"runs.parquet has no {PROBE_PREFIX}* values (older schema, or "
            "eval.probe_rhos empty)"))
        return table
    df = df.assign(_column=column_labels(df, rows))
    extra = [(c, label) for c, label in (("hessian_max_eig", "λ_max"), ("probe_f", "f(w)"))
             if c in df.columns and df[c].notna().any()]
    for row_label, sub in groups(df, rows):
        for name in sorted(sub["_column"].unique(), key=variant_sort_key):
            runs = sub[sub["_column"] == name]
            label = (*row_label, name)
            for radius, column in radii:
                table.set(label, probe_label(radius), stat_cell(runs[column], kind="sci"))
            for column, header in extra:
                table.set(label, header, stat_cell(runs[column], kind="sci"))
    table.notes.append("the same radii and fixed training batches for every run; "
                       "ĝ = g/‖g‖ per batch of the run's own batch size (m-sharpness)")
    return table
