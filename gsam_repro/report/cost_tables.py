"""What each method paid and ended with: forward+backward passes and wall time to a target
accuracy (the cost table) and the per-method outcomes beyond the headline metric.
"""

from __future__ import annotations

import math

import pandas as pd

from gsam_repro.report.load import Sweep, variant_sort_key
from gsam_repro.report.render import Cell, Table
from gsam_repro.report.table_kit import _require, _seed_note, column_labels, groups, stat_cell


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
