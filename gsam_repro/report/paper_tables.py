"""Tables laid out like the paper's: Table 1 (ImageNet top-1 by model and method) and the
CIFAR-10 WRN-16-8 error, ours (mean ± std over seeds) beside the published numbers.
"""

from __future__ import annotations

import math

import pandas as pd

from gsam_repro.report import paper
from gsam_repro.report.load import Sweep, setting_columns, short_name
from gsam_repro.report.render import Cell, Table
from gsam_repro.report.table_kit import (
    _require,
    _seed_note,
    bold_best,
    budget_labels,
    choose_setting,
    setting_text,
    stat_cell,
)

IMAGENET_DATA = ("imagefolder", "imagenet")  # data.name values Table 1 compares with the paper


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
