"""The report's tables, built from a `Sweep` (runs.parquet / history.parquet) into `Table`s.

Every builder returns a Table, possibly empty with notes saying why; none raises on missing
columns or empty input. Statistics are over seeds: mean, sample standard deviation (ddof = 1,
absent for one seed) and n. Bold marks the best mean, chosen on the numbers, never on text.
Significance: Welch's t-test (unequal variances) over seeds (gsam_repro.report.stats), only with
n >= 3 on both sides; † marks p < 0.05. The comparison table tests each method against the
best baseline of its family, or the pairs the user names.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from gsam_repro.errors import UsageError
from gsam_repro.report import paper
from gsam_repro.report.load import (
    Sweep,
    _clean,
    format_value,
    radius,
    setting_columns,
    short_name,
    variant_sort_key,
)
from gsam_repro.report.render import Cell, Table
from gsam_repro.report.stats import MIN_SEEDS_FOR_TEST, SIGNIFICANCE, welch_p

SIG_MARK = "†"
# The baselines of each optimizer family (`optimizer_family`): what a new method must beat.
BASELINES = {"plain": ("sgd", "adamw"), "sharpness_aware": ("sam",)}
IMAGENET_DATA = ("imagefolder", "imagenet")  # data.name values Table 1 compares with the paper
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


# --------------------------------------------------------------------- comparison table
def comparison(sweep: Sweep, rows: list[str], metric: str = "test_acc",
               compare: list[tuple[str, str]] | None = None) -> Table:
    """Rows from any config keys, one column an optimizer variant, mean ± std (n) of `metric`;
    the best mean of each row bold; Welch p-values and † marks for the `compare` pairs
    (default: each method against the best baseline of its family)."""
    label = METRIC_LABELS.get(metric, metric)
    table = Table("comparison", f"{label}: mean ± std (seeds)", list(rows), [])
    df = sweep.done
    if not _require(sweep, table, df, [*rows, "optimizer.name", metric], "comparison table"):
        return table
    df = df.assign(column=column_labels(df, rows))
    ordered = sorted(df["column"].unique(), key=variant_sort_key)
    table.columns = list(ordered)
    for row_label, sub in groups(df, rows):
        table.add_row(row_label)
        for column in ordered:
            values = sub.loc[sub["column"] == column, metric]
            if len(values):
                table.set(row_label, column, stat_cell(values))
        bold_best(table, [table.get(row_label, c) for c in ordered])
    _significance(table, df, rows, metric, compare)
    if any("× epochs" in c for c in ordered):
        matched = [c for c in ordered if c.endswith("2× epochs") and
                   not df.loc[df["column"] == c, "sam_family"].astype(bool).any()]
        for column in matched:
            table.notes.append(f"{column}: compute-matched (twice the SAM-family epochs, the "
                               "same forward+backward passes as one SAM-family run)")
    _seed_note(table)
    return table


def comparison_columns(sweep: Sweep, rows: list[str]) -> list[str]:
    """The optimizer columns of the comparison table, in display order (for --compare)."""
    df = sweep.done
    if df.empty or "optimizer.name" not in df.columns or any(r not in df.columns for r in rows):
        return []
    return sorted(column_labels(df, rows).unique(), key=variant_sort_key)


def parse_pair(text: str) -> tuple[str, str]:
    """"A:B" -> ("A", "B"); a UsageError naming the text when it is not two names."""
    parts = [part.strip() for part in str(text).split(":")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--compare {text!r}: expected two optimizer columns as A:B, "
                         "e.g. 'gsam:sam'")
    return parts[0], parts[1]


def check_pairs(pairs: list[tuple[str, str]], columns: list[str]) -> None:
    """Refuse a pair naming a column the comparison table does not have."""
    for pair in pairs:
        for name in pair:
            if name not in columns:
                hint = difflib.get_close_matches(name, columns, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else ""
                raise UsageError(f"--compare {':'.join(pair)}: {name!r} is not a column of the "
                                 f"comparison table (columns: {', '.join(columns)}){extra}")


def _family_base(column: str) -> str:
    return _base_variant(column).split("-")[0].split("(")[0]


def _default_pairs(sub: pd.DataFrame, metric: str) -> list[tuple[str, str]]:
    """Every method against the best-mean baseline of its family, within one row group."""
    pairs = []
    family_of = sub.groupby("column")["sam_family"].agg(lambda s: bool(s.astype(bool).any()))
    means = sub.groupby("column")[metric].mean()
    for family, names in BASELINES.items():
        present = [c for c in family_of.index if family_of[c] == (family == "sharpness_aware")]
        baselines = [c for c in present if _family_base(c) in names and pd.notna(means[c])]
        if not baselines:
            continue
        best = max(baselines, key=lambda c: means[c])
        pairs += [(c, best) for c in sorted(present, key=variant_sort_key)
                  if _family_base(c) not in names]
    return pairs


def _significance(table: Table, df: pd.DataFrame, rows: list[str], metric: str,
                  compare: list[tuple[str, str]] | None) -> None:
    tested = untested = 0
    for row_label, sub in groups(df, rows):
        pairs = compare if compare else _default_pairs(sub, metric)
        for first, second in pairs:
            a = sub.loc[sub["column"] == first, metric].to_numpy(dtype=float)
            b = sub.loc[sub["column"] == second, metric].to_numpy(dtype=float)
            if not (len(a) and len(b)):
                continue
            p_column = f"p ({first} vs {second})"
            p = welch_p(a, b)
            if p is None:
                untested += 1
                table.set(row_label, p_column, Cell(text="n/a", kind="p"))
                continue
            tested += 1
            table.set(row_label, p_column, Cell(value=p, kind="p"))
            if p < SIGNIFICANCE:
                cell = table.get(row_label, first)
                if cell is not None:
                    cell.mark = SIG_MARK
    if tested:
        marked = any(c.mark == SIG_MARK for c in table.cells.values())
        table.notes.append(
            (f"{SIG_MARK}: differs from the column in its p column at p < {SIGNIFICANCE}"
             if marked else f"no compared pair differs at p < {SIGNIFICANCE}")
            + f" (Welch's t-test over seeds, n ≥ {MIN_SEEDS_FOR_TEST} each)")
    if tested or untested:
        table.notes.append(
            "compared: the pairs given with --compare" if compare else
            "compared by default: each method against the best-mean baseline of its family "
            "(plain: " + "/".join(BASELINES["plain"]) + "; sharpness-aware: "
            + "/".join(BASELINES["sharpness_aware"]) + ")")
    if untested:
        table.notes.append(f"p = n/a: fewer than {MIN_SEEDS_FOR_TEST} seeds on a side (or no "
                           "spread on either), so no t-test")


# ---------------------------------------------------------------------------- Table 1
def table1(sweep: Sweep, dataset: str = "imagenet", metric: str = "test_acc",
           select_on: str = "val_acc") -> Table:
    """The paper's Table 1 layout: models by vanilla / SAM / GSAM, ours (mean ± std (n)) beside
    the paper's number and the difference; the best of ours in each row bold."""
    title = f"Table 1 layout: top-1 (%) on {paper.DATASET_LABELS.get(dataset, dataset)}, " \
            "ours (mean ± std (seeds)) beside the paper"
    table = Table("table1", title, ["model"], [])
    df = sweep.done
    if not _require(sweep, table, df, ["model.name", "optimizer.name", metric], "Table 1"):
        return table
    df, left = imagenet_runs(df)
    if left:
        table.notes.append(f"{left} runs on other data than ImageNet (data.name not "
                           f"{' or '.join(IMAGENET_DATA)}) left out: the paper's numbers are "
                           "ImageNet top-1")
    if df.empty:
        return table
    df = df.assign(method=[paper.method_key(v) for v in df["optimizer.name"]])
    adaptive = df["variant"].str.contains(r"\(", regex=True)
    if adaptive.any():
        table.notes.append(f"{int(adaptive.sum())} adaptive runs left out (Table 1 is "
                           "non-adaptive)")
    other = df["method"].isna() & ~adaptive
    if other.any():
        names = sorted(set(df.loc[other, "variant"]))
        table.notes.append(f"optimizers outside Table 1 left out: {', '.join(names)}")
    df = df[df["method"].notna() & ~adaptive]
    off_budget = budget_labels(df, ["model.name"]).str.contains("× epochs")
    if off_budget.any():
        table.notes.append(f"{int(off_budget.sum())} runs with other epochs than the model's "
                           "SAM-family runs left out (see the comparison table)")
        df = df[~off_budget]
    for method in paper.TABLE1_METHODS:
        table.columns += [f"{method} ours", f"{method} paper", f"{method} Δ"]
    order = {m: i for i, m in enumerate(paper.models())}
    models = sorted(df["model.name"].dropna().unique(),
                    key=lambda m: (order.get(paper.model_key(m), len(order)), str(m)))
    no_paper = []
    for model in models:
        sub = df[df["model.name"] == model]
        key = paper.model_key(model)
        row = (key or str(model),)
        table.add_row(row)
        ours_cells = []
        for method in paper.TABLE1_METHODS:
            runs = sub[sub["method"] == method]
            ours = _table1_cell(table, runs, str(model), method, metric, select_on) \
                if len(runs) else None
            if ours is not None:
                table.set(row, f"{method} ours", ours)
                ours_cells.append(ours)
            published = paper.lookup(model, method, dataset) if key else None
            table.set(row, f"{method} paper", Cell(value=published))
            if ours is not None and ours.is_number and published is not None:
                table.set(row, f"{method} Δ", Cell(value=ours.value - published, kind="delta"))
        bold_best(table, ours_cells)
        if paper.lookup(model, "gsam", dataset) is None:
            no_paper.append(str(model))
        _hparam_note(table, sub, model)
    if no_paper:
        table.notes.append(f"no paper number for {', '.join(no_paper)}: paper and Δ left blank")
    table.notes.append(f"paper: {paper.source('table1')}")
    table.notes.append("Δ = ours − paper (percentage points)")
    _seed_note(table)
    return table


def imagenet_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The runs Table 1 may compare with the paper (ImageNet data), and how many were not.
    Without a data.name column (an older schema) every run counts."""
    if "data.name" not in df.columns:
        return df, 0
    keep = df["data.name"].astype("string").fillna("").str.lower().isin(IMAGENET_DATA)
    return df[keep], int((~keep).sum())


def _table1_cell(table: Table, runs: pd.DataFrame, model: str, method: str, metric: str,
                 select_on: str) -> Cell | None:
    """One method's runs of one model; several settings are chosen between on validation
    accuracy (never pooled, never chosen on test)."""
    keys = [c for c in setting_columns(runs)
            if runs[c].astype("string").fillna("<NA>").nunique() > 1]
    if not keys:
        return stat_cell(runs[metric])
    choice = choose_setting(runs, keys, select_on)
    if choice is None:
        table.notes.append(f"{model} {method}: several settings and no {select_on} to choose "
                           "between them; left out")
        return None
    setting, chosen, tried = choice
    text = setting_text(dict(zip(keys, setting, strict=True)), keys)
    table.notes.append(f"{model} {method}: {text}, chosen on {select_on} among {tried} settings")
    return stat_cell(chosen[metric])


def _hparam_note(table: Table, runs: pd.DataFrame, model: str) -> None:
    published = paper.hparams(model)
    if not published:
        return
    gsam = runs[runs["method"] == "gsam"]
    for key in ("rho_max", "rho_min", "alpha"):
        column = f"optimizer.{key}"
        if column not in gsam.columns or gsam.empty:
            continue
        values = sorted({float(v) for v in gsam[column].dropna()})
        if values and any(not math.isclose(v, float(published[key])) for v in values):
            shown = ", ".join(f"{v:g}" for v in values)
            table.notes.append(f"{paper.model_key(model)}: our GSAM {short_name(column)} = "
                               f"{shown}; the paper's Table 4 uses {published[key]:g}")


def cifar10_paper(sweep: Sweep, metric: str = "test_acc") -> Table:
    """CIFAR-10 WRN-16-8: our test error (100 − accuracy) beside the published single runs."""
    table = Table("cifar10_wrn16_8", "CIFAR-10 WRN-16-8 test error (%): ours (mean ± std "
                  "(seeds)) beside the published numbers", ["model"], [])
    df = sweep.done
    if not _require(sweep, table, df, ["model.name", "optimizer.name", metric], "CIFAR table"):
        return table
    if "data.name" in df.columns:
        df = df[df["data.name"].astype("string").fillna("").str.startswith("cifar10")]
    df = df[[paper.model_key(m) == "wrn16_8" for m in df["model.name"]]]
    if df.empty:
        table.notes.append("no CIFAR-10 WRN-16-8 runs")
        return table
    methods = {"sgd": "sgd", "sam": "sam", "sam(asam)": "asam", "gsam": "gsam"}
    for method in methods.values():
        table.columns += [f"{method} ours", f"{method} paper", f"{method} Δ"]
    row = ("wrn16_8",)
    errors = []
    for variant, method in methods.items():
        values = 100.0 - df.loc[df["variant"] == variant, metric].to_numpy(dtype=float)
        published = paper.cifar10_error("wrn16_8", method)
        ours = stat_cell(values) if len(values) else None
        if ours is not None:
            table.set(row, f"{method} ours", ours)
            errors.append(ours)
        table.set(row, f"{method} paper", Cell(value=published))
        if ours is not None and ours.is_number and published is not None:
            table.set(row, f"{method} Δ", Cell(value=ours.value - published, kind="delta"))
    numbers = [c for c in errors if c.is_number]
    if len(numbers) >= 2:  # lowest error is best
        best = min(c.value for c in numbers)
        for cell in numbers:
            cell.bold = math.isclose(cell.value, best)
    table.notes.append(f"paper: {paper.source('cifar10_wrn16_8')}")
    _seed_note(table)
    return table


# ---------------------------------------------------------------------------- ablations
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


# ------------------------------------------------------------------------ cost to target
def default_target(history: pd.DataFrame, metric: str, column: str = "variant"
                   ) -> float | None:
    """The accuracy every optimizer (`column` of history) reaches in at least half its runs:
    the lowest per-optimizer median of each run's best `metric`, rounded down to 0.1."""
    best = history.groupby([column, "run_id"])[metric].max()
    medians = best.groupby(level=column).median().dropna()
    if medians.empty:
        return None
    return math.floor(float(medians.min()) * 10) / 10


def cost(sweep: Sweep, rows: list[str], target: float | None = None,
         metric: str = "test_acc") -> Table:
    """Forward+backward passes and wall time to reach a target accuracy, per variant (medians
    over seeds), beside the totals and the passes a step."""
    table = Table("cost", "cost to reach the target accuracy (medians over seeds)",
                  [*rows, "optimizer"], [])
    df = sweep.done
    if not _require(sweep, table, df, ["optimizer.name"], "cost table"):
        return table
    history = sweep.history
    have_history = (history is not None and not history.empty
                    and {metric, "fwd_bwd_passes", "wall_s", "epoch"} <= set(history.columns))
    if have_history:
        history = history[history["run_id"].isin(df["run_id"])]
        have_history = not history.empty and bool(history[metric].notna().any())
    if not have_history:
        table.notes.append(f"time to target left out: history.parquet lacks {metric}, "
                           "fwd_bwd_passes, wall_s or epoch; totals only")
    df = df.assign(_optimizer=column_labels(df, rows))
    if have_history:
        history = history.assign(_optimizer=history["run_id"].map(
            dict(zip(df["run_id"], df["_optimizer"], strict=True))))
    for row_label, sub in groups(df, rows):
        run_ids = set(sub["run_id"]) if "run_id" in sub.columns else set()
        sub_history = history[history["run_id"].isin(run_ids)] if have_history else None
        row_target = target
        if row_target is None and sub_history is not None:
            row_target = default_target(sub_history, metric, "_optimizer")
        for name in sorted(sub["_optimizer"].unique(), key=variant_sort_key):
            runs = sub[sub["_optimizer"] == name]
            label = (*row_label, name)
            table.add_row(label)
            if "fwd_bwd_passes" in runs.columns and "steps" in runs.columns:
                ratio = runs["fwd_bwd_passes"] / runs["steps"].where(runs["steps"] > 0)
                if ratio.notna().any():
                    table.set(label, "passes / step", Cell(value=float(ratio.median()),
                                                           kind="float"))
            if metric in runs.columns:
                table.set(label, f"final {metric}", stat_cell(runs[metric]))
            reached = None
            if sub_history is not None and row_target is not None:
                hits = sub_history[sub_history["run_id"].isin(set(runs["run_id"]))
                                   & (sub_history[metric] >= row_target)]
                reached = hits.sort_values("epoch").drop_duplicates("run_id", keep="first")
                table.set(label, "target", Cell(value=row_target))
                table.set(label, "reached", Cell(text=f"{len(reached)}/{len(runs)}"))
                if len(reached):
                    table.set(label, "passes to target", Cell(value=float(
                        reached["fwd_bwd_passes"].median()), kind="int"))
                    table.set(label, "wall to target (s)", Cell(value=float(
                        reached["wall_s"].median()), kind="seconds"))
                else:
                    table.set(label, "passes to target", Cell(text="not reached"))
            # totals over the same runs as the to-target columns (those that reached the
            # target), so a median time to target never exceeds the median total
            counted = runs if reached is None or not len(reached) else \
                runs[runs["run_id"].isin(set(reached["run_id"]))]
            if "fwd_bwd_passes" in counted.columns and counted["fwd_bwd_passes"].notna().any():
                table.set(label, "total passes", Cell(value=float(
                    counted["fwd_bwd_passes"].median()), kind="int"))
            if "wall_s" in counted.columns and counted["wall_s"].notna().any():
                table.set(label, "total wall (s)", Cell(value=float(counted["wall_s"].median()),
                                                        kind="seconds"))
    order = ["target", "reached", "passes to target", "wall to target (s)", "passes / step",
             "total passes", "total wall (s)", f"final {metric}"]
    table.columns = [c for c in order if c in table.columns]
    if have_history:
        how = "given" if target is not None else \
            "default: the lowest per-optimizer median of each run's best"
        table.notes.append(f"target = {metric} ≥ target ({how}); passes and wall time are "
                           "cumulative at the first epoch that reaches it")
        table.notes.append("to-target and total columns are medians over the same runs: those "
                           "that reached the target (all runs where none did); final accuracy "
                           "over all runs")
    table.notes.append("the SAM family pays two forward+backward passes a step")
    return table


# ------------------------------------------------------------------------------- outcomes
# What each method ended with, beyond the headline metric: (column, row label, cell kind).
OUTCOMES = (
    ("test_acc_at_best_val", "test acc at best val epoch (%)", "acc"),
    ("test_acc", "test acc, last epoch (%)", "acc"),
    ("best_val_acc", "best val acc (%)", "acc"),
    ("train_acc", "train acc, last epoch (%)", "acc"),
    ("memorized_pct", "flipped labels memorised (%)", "acc"),
    ("flipped_clean_pct", "flipped images predicted clean (%)", "acc"),
    ("hessian_max_eig", "λ_max", "float"),
    ("probe_f", "f(w) on the probe batches", "float"),
)


def outcomes(sweep: Sweep, rows: list[str]) -> Table:
    """One row per outcome the runs recorded (test accuracy at the best validation epoch and
    at the last, training accuracy, memorised label noise, λ_max, ...), one column per
    optimizer: mean ± std over seeds. Outcomes no run recorded are left out."""
    table = Table("outcomes", "outcomes per method: mean ± std (seeds)", [*rows, "outcome"], [])
    df = sweep.done
    if not _require(sweep, table, df, [*rows, "optimizer.name"], "outcomes table"):
        return table
    present = [entry for entry in OUTCOMES if sweep.has(entry[0], df)]
    if not present:
        table.notes.append("outcomes table left out: no run records any of "
                           f"{', '.join(column for column, _, _ in OUTCOMES)}")
        return table
    df = df.assign(column=column_labels(df, rows))
    table.columns = sorted(df["column"].unique(), key=variant_sort_key)
    for row_label, sub in groups(df, rows):
        for column, label, kind in present:
            key = (*row_label, label)
            table.add_row(key)
            for name in table.columns:
                values = sub.loc[sub["column"] == name, column]
                if values.notna().any():
                    table.set(key, name, stat_cell(values, kind))
    _seed_note(table)
    return table
