"""Tables about hyper-parameters: accuracy over GSAM's α or the SAM family's ρ, GSAM against
the f_p + λh baseline at λ = α, and the honest selection of each optimizer's setting on
validation accuracy.
"""

from __future__ import annotations

import pandas as pd

from gsam_repro.report.load import Sweep, format_value, radius, short_name, variant_sort_key
from gsam_repro.report.render import Cell, Table
from gsam_repro.report.stats import SIGNIFICANCE, welch_p
from gsam_repro.report.table_kit import (
    METRIC_LABELS,
    SIG_MARK,
    _base_variant,
    _require,
    _seed_note,
    bold_best,
    budget_labels,
    choose_setting,
    column_labels,
    groups,
    setting_text,
    stat_cell,
    tied_settings,
    varying_settings,
)


def ablation(sweep: Sweep, over: str, rows: list[str], metric: str = "test_acc") -> Table:
    """Accuracy over one hyper-parameter: `over` = "alpha" (GSAM) or "rho" (SAM family; GSAM's
    rho is its rho_max). Rows the values, columns the variants; best of each column bold."""
    symbol = {"alpha": "α", "rho": "ρ"}[over]
    table = Table(f"ablation_{over}", f"{METRIC_LABELS.get(metric, metric)} over {symbol}: "
                  "mean ± std (seeds)", [symbol], [])
    df = sweep.done
    needed = ["optimizer.name", metric] + (["optimizer.alpha"] if over == "alpha" else [])
    if not _require(sweep, table, df, needed, f"{symbol} ablation"):
        return table
    if over == "alpha":
        df = df[df["variant"].map(_base_variant).str.startswith("gsam")]
        values = pd.to_numeric(df["optimizer.alpha"], errors="coerce")
        exclude = ["optimizer.alpha"]
    else:
        df = df[df["sam_family"].astype(bool)]
        values = radius(df)
        exclude = ["optimizer.rho", "optimizer.rho_max"]
    df = df.assign(_value=values.astype("float64")).dropna(subset=["_value"])
    if df["_value"].nunique() < 2:
        table.notes.append(f"{symbol} ablation left out: the sweep has fewer than two {symbol} "
                           "values")
        return table
    tied = tied_settings(df, "_value", exclude=[*rows, *exclude])
    if tied:
        table.notes.append(f"{', '.join(short_name(k) for k in tied)} changes with {symbol} "
                           "(one value per row)")
    labels = column_labels(df, rows, exclude=[*exclude, *tied])
    group_text = {}
    for row_label, sub in groups(df, rows):
        text = ", ".join(format_value(v) for v in row_label)
        for index in sub.index:
            group_text[index] = text
    several = len({v for v in group_text.values()}) > 1
    df = df.assign(column=[f"{labels[i]} · {group_text[i]}" if several else labels[i]
                           for i in df.index])
    columns = sorted(df["column"].unique(), key=variant_sort_key)
    table.columns = list(columns)
    for value in sorted(df["_value"].unique()):
        row = (float(value),)
        table.add_row(row)
        for column in columns:
            sub = df[(df["_value"] == value) & (df["column"] == column)]
            if len(sub):
                table.set(row, column, stat_cell(sub[metric]))
    for column in columns:
        bold_best(table, [table.get(r, column) for r in table.rows])
    table.notes.append("bold: the best value of each column")
    _seed_note(table)
    return table


def gsam_vs_weighted(sweep: Sweep, rows: list[str], metric: str = "test_acc") -> Table:
    """GSAM (alpha) against the f_p + lambda*h baseline at lambda = alpha, same rho."""
    title = f"GSAM vs f_p + λh at λ = α: {METRIC_LABELS.get(metric, metric)}"
    table = Table("gsam_vs_weighted", title, [*rows, "ρ", "α = λ"], [])
    df = sweep.done
    if not _require(sweep, table, df, ["optimizer.name", "optimizer.alpha", "optimizer.lam",
                                       metric], "GSAM vs weighted table"):
        return table
    base = df["variant"].map(_base_variant)
    gsam = df[base == "gsam"].assign(_coef=lambda d: pd.to_numeric(d["optimizer.alpha"],
                                                                    errors="coerce"))
    weighted = df[base == "weighted"].assign(_coef=lambda d: pd.to_numeric(d["optimizer.lam"],
                                                                           errors="coerce"))
    gsam = gsam.assign(_rho=radius(gsam))
    weighted = weighted.assign(_rho=radius(weighted))
    if gsam.empty or weighted.empty:
        table.notes.append("GSAM vs weighted left out: the sweep lacks GSAM or weighted runs")
        return table
    keys = [*rows, "_rho", "_coef"]
    weighted_groups = {label: sub for label, sub in groups(weighted, keys)}
    tested = False
    for label, sub in groups(gsam, keys):
        other = weighted_groups.get(label)
        if other is None:
            continue
        a, b = stat_cell(sub[metric]), stat_cell(other[metric])
        table.set(label, "GSAM", a)
        table.set(label, "f_p + λh", b)
        if a.is_number and b.is_number:
            table.set(label, "Δ (GSAM − f_p + λh)", Cell(value=a.value - b.value, kind="delta"))
        bold_best(table, [a, b])
        p = welch_p(sub[metric].to_numpy(dtype=float), other[metric].to_numpy(dtype=float))
        table.set(label, "p", Cell(value=p, kind="p") if p is not None else Cell(text="n/a"))
        if p is not None:
            tested = True
            if p < SIGNIFICANCE:
                a.mark = SIG_MARK
    if table.empty:
        table.notes.append("GSAM vs weighted left out: no weighted run has λ equal to a GSAM "
                           "run's α at the same ρ")
        return table
    if "optimizer.rho_min" in gsam.columns:
        decays = gsam[pd.to_numeric(gsam["optimizer.rho_min"], errors="coerce")
                      < gsam["_rho"] - 1e-12]
        if len(decays):
            table.notes.append("GSAM's ρ follows the lr from ρ_max to ρ_min; matched on ρ_max")
    if tested:
        marked = any(c.mark == SIG_MARK for c in table.cells.values())
        table.notes.append((f"{SIG_MARK}: p < {SIGNIFICANCE}" if marked else
                            f"no difference at p < {SIGNIFICANCE}")
                           + ", Welch's t-test over seeds")
    _seed_note(table)
    return table


# ------------------------------------------------------------------------ honest selection
def selection(sweep: Sweep, rows: list[str], select_on: str = "val_acc",
              metric: str = "test_acc") -> Table:
    """Each variant's best setting chosen on `select_on` (validation), reported on `metric`."""
    table = Table("selection", f"best setting per optimizer chosen on {select_on}, reported on "
                  f"{metric}", [*rows, "optimizer"], [])
    df = sweep.done
    if select_on.startswith("test"):
        table.notes.append("selection left out: selecting on test accuracy is not honest; "
                           "choose a validation metric")
        return table
    if not _require(sweep, table, df, ["optimizer.name", metric, select_on],
                    "honest selection (needs data.val_size > 0)"):
        return table
    varying = varying_settings(df, exclude=rows)
    if not any(varying.values()):
        table.notes.append("selection left out: no optimizer has more than one setting")
        return table
    df = df.assign(_optimizer=budget_labels(df, rows))
    for row_label, sub in groups(df, rows):
        best_cells = []
        for name in sorted(sub["_optimizer"].unique(), key=variant_sort_key):
            runs = sub[sub["_optimizer"] == name]
            keys = varying.get(str(runs["variant"].iloc[0]), [])
            choice = choose_setting(runs, keys, select_on)
            if choice is None:
                continue
            setting, chosen, tried = choice
            label = (*row_label, name)
            text = setting_text(dict(zip(keys, setting, strict=True)), keys) if keys else "(one)"
            table.set(label, "selected setting", Cell(text=text))
            table.set(label, "settings tried", Cell(value=tried, kind="int"))
            table.set(label, f"{select_on} (chosen on)", stat_cell(chosen[select_on]))
            cell = stat_cell(chosen[metric])
            table.set(label, metric, cell)
            best_cells.append(cell)
        bold_best(table, best_cells)
    table.notes.append(f"each optimizer's setting is the one with the best mean {select_on}; "
                       f"{metric} is only reported, never used to choose")
    _seed_note(table)
    return table
