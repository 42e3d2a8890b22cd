"""The report of a `tune:` sweep (equal tuning budgets, docs/sweeps.md): the budget each method
used, its best-so-far validation score against the number of trials, and the final table from
the confirmation seeds of each method's chosen setting only.

Trials are chosen on validation, so their scores are optimistic; the final numbers come from
fresh seeds of the chosen setting, never from the trials. Runs are told apart by their
`tuning.phase` / `tuning.method` / `tuning.trial` columns; the budget and the selection metric
come from the sweep's spec.yaml (`tune.trials`, `tune.metric`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gsam_repro.report.load import Sweep, format_value, setting_columns, short_name
from gsam_repro.report.render import Cell, Table
from gsam_repro.report.table_kit import METRIC_LABELS, bold_best, stat_cell
from gsam_repro.sweep.tune import CONFIRM, SELECT_METRICS, TRIAL, best_so_far, select
from gsam_repro.sweep.tune import TrialResult as _Result

PHASE, METHOD, INDEX = "tuning.phase", "tuning.method", "tuning.trial"
FINISHED = ("done", "diverged")  # a diverged trial used its budget, with no score
TUNE_TABLES = ("tune_budget", "tune_curve", "tune_final")


@dataclass
class Budget:
    """What the spec allowed: trials per method and the metric they were chosen on."""

    trials: int | None
    metric: str


def is_tuned(sweep: Sweep) -> bool:
    """True when the sweep holds runs of a `tune:` section."""
    return PHASE in sweep.runs.columns and bool(sweep.runs[PHASE].notna().any())


def confirmation_only(sweep: Sweep) -> Sweep:
    """The sweep restricted to its confirmation runs (and any untagged runs): what every other
    table of a tuned sweep is built from, so that trials never enter a final number."""
    if not is_tuned(sweep):
        return sweep
    keep = sweep.runs[PHASE].astype("string").fillna(CONFIRM) == CONFIRM
    runs = sweep.runs[keep]
    history = sweep.history
    if history is not None and "run_id" in history.columns:
        history = history[history["run_id"].isin(set(runs["run_id"]))]
    return Sweep(name=sweep.name, path=sweep.path, runs=runs, history=history,
                 notes=list(sweep.notes))


def budget(sweep_dir: Path) -> Budget:
    """tune.trials and tune.metric of SWEEP_DIR/spec.yaml (unknown trials when absent)."""
    from gsam_repro.yamlio import load_yaml

    path = Path(sweep_dir) / "spec.yaml"
    tree = load_yaml(path)[0] if path.is_file() else None
    section = tree.get("tune") if isinstance(tree, dict) else None
    section = section if isinstance(section, dict) else {}
    trials = section.get("trials")
    metric = section.get("metric", "best_val_acc")
    return Budget(trials=trials if isinstance(trials, int) else None,
                  metric=metric if metric in SELECT_METRICS else "best_val_acc")


def _trials(sweep: Sweep) -> pd.DataFrame:
    runs = sweep.runs
    status = runs["status"].astype("string").fillna("") if "status" in runs.columns else \
        pd.Series("done", index=runs.index)
    phase = runs[PHASE].astype("string").fillna("")
    return runs[(phase == TRIAL) & status.isin(FINISHED)]


def _methods(sweep: Sweep) -> list[str]:
    return sorted(sweep.runs.loc[sweep.runs[PHASE].notna(), METHOD].dropna().astype(str).unique())


def _values(trials: pd.DataFrame, method: str, metric: str, allowed: int | None
            ) -> list[float | None]:
    """The method's trial scores by trial index (None: not finished or no score)."""
    mine = trials[trials[METHOD].astype(str) == method]
    indexes = pd.to_numeric(mine[INDEX], errors="coerce")
    count = allowed if allowed is not None else int(indexes.max()) + 1 if len(mine) else 0
    out: list[float | None] = [None] * count
    for index, value in zip(indexes, mine[metric] if metric in mine.columns else
                            [None] * len(mine), strict=True):
        if pd.notna(index) and 0 <= int(index) < count and value is not None and \
                np.isfinite(float(value)):
            out[int(index)] = float(value)
    return out


def _chosen(sweep: Sweep, plan: Budget) -> dict[str, _Result]:
    trials = _trials(sweep)
    results = []
    for method in _methods(sweep):
        values = _values(trials, method, plan.metric, plan.trials)
        results += [_Result(method, k, v) for k, v in enumerate(values)]
    limit = plan.trials if plan.trials is not None else max((r.trial + 1 for r in results),
                                                            default=0)
    return select(results, limit, SELECT_METRICS[plan.metric])


def budget_table(sweep: Sweep, plan: Budget) -> Table:
    """Per method: trials finished / allowed, and the trial chosen on validation."""
    table = Table("tune_budget", f"tuning budget per method (chosen on {plan.metric})",
                  ["method"], ["trials run", "trials allowed", "chosen trial",
                               f"{plan.metric} (chosen trial)"])
    if not is_tuned(sweep):
        table.notes.append("tuning tables left out: the sweep has no tune: runs")
        return table
    trials = _trials(sweep)
    chosen = _chosen(sweep, plan)
    extra = 0
    for method in _methods(sweep):
        mine = trials[trials[METHOD].astype(str) == method]
        indexes = pd.to_numeric(mine[INDEX], errors="coerce")
        within = int((indexes < plan.trials).sum()) if plan.trials is not None else len(mine)
        extra += len(mine) - within
        row = (method,)
        table.set(row, "trials run", Cell(value=within, kind="int"))
        table.set(row, "trials allowed", Cell(value=plan.trials, kind="int")
                  if plan.trials is not None else Cell(text="?"))
        if method in chosen:
            table.set(row, "chosen trial", Cell(value=chosen[method].trial, kind="int"))
            table.set(row, f"{plan.metric} (chosen trial)", Cell(value=chosen[method].value))
    table.notes.append("every method is allowed the same number of trials (tune.trials); a "
                       "trial counts once finished (a diverged trial counts, with no score)")
    if plan.trials is None:
        table.notes.append("trials allowed unknown: the sweep has no spec.yaml with tune.trials")
    if extra:
        table.notes.append(f"{extra} trials beyond the budget ignored (a larger earlier budget)")
    return table


def curve_table(sweep: Sweep, plan: Budget) -> Table:
    """Best-so-far validation score after k trials, k = 1..budget, one column per method: what
    each method would have chosen had the budget been k."""
    label = METRIC_LABELS.get(plan.metric.removeprefix("best_"), plan.metric)
    table = Table("tune_curve", f"best {label} after k trials (best so far, in trial order)",
                  ["trials"], [])
    if not is_tuned(sweep):
        table.notes.append("tuning tables left out: the sweep has no tune: runs")
        return table
    trials = _trials(sweep)
    methods = _methods(sweep)
    table.columns = list(methods)
    higher = SELECT_METRICS[plan.metric]
    for method in methods:
        for k, value in enumerate(best_so_far(_values(trials, method, plan.metric, plan.trials),
                                              higher), start=1):
            table.set((k,), method, Cell(value=value) if value is not None else Cell(text="–"))
    table.notes.append("trial k is the same setting whatever the budget, so row k shows what a "
                       "budget of k trials would have chosen")
    return table


def curve_lines(sweep: Sweep, plan: Budget) -> dict[str, list[float | None]]:
    """method -> best-so-far score per trial count (the figure's data)."""
    trials = _trials(sweep)
    higher = SELECT_METRICS[plan.metric]
    return {m: best_so_far(_values(trials, m, plan.metric, plan.trials), higher)
            for m in _methods(sweep)}


def final_table(sweep: Sweep, plan: Budget, metric: str = "test_acc") -> Table:
    """Each method's chosen setting over the confirmation seeds only: mean ± std (seeds)."""
    label = METRIC_LABELS.get(metric, metric)
    table = Table("tune_final", f"{label} of each method's chosen setting over the confirmation "
                  "seeds: mean ± std (seeds)", ["method"], ["chosen setting", label])
    if not is_tuned(sweep):
        table.notes.append("tuning tables left out: the sweep has no tune: runs")
        return table
    done = sweep.done
    confirm = done[done[PHASE].astype("string").fillna("") == CONFIRM]
    trials = sweep.runs[sweep.runs[PHASE].astype("string").fillna("") == TRIAL]
    cells = []
    for method in _methods(sweep):
        runs = confirm[confirm[METHOD].astype(str) == method]
        row = (method,)
        if runs.empty:
            table.set(row, "chosen setting", Cell(text="(confirmation not run yet)"))
            continue
        searched = [c for c in setting_columns(trials[trials[METHOD].astype(str) == method])
                    if trials.loc[trials[METHOD].astype(str) == method, c]
                    .astype("string").fillna("<NA>").nunique() > 1]
        first = runs.iloc[0]
        text = ", ".join(f"{short_name(k)}={format_value(first[k])}" for k in searched)
        table.set(row, "chosen setting", Cell(text=text or "(one setting)"))
        cell = stat_cell(runs[metric]) if metric in runs.columns else Cell(text="n/a")
        table.set(row, label, cell)
        cells.append(cell)
    bold_best(table, cells)
    table.notes.append("confirmation runs only: the trials were chosen on validation and never "
                       "enter this table")
    counts = [c.n for c in cells if c.n]
    if counts and min(counts) == 1:
        table.notes.append("cells with one seed show the mean and (1), no std")
    return table


def tune_figure(sweep: Sweep, plan: Budget, out_dir: Path) -> tuple[list[Path], str | None]:
    """fig_tuning: each method's best-so-far validation score against the number of trials."""
    from gsam_repro.report.figures import COLUMN_WIDTH, paper_style, save, style_of

    if not is_tuned(sweep):
        return [], None
    lines = curve_lines(sweep, plan)
    if not any(v is not None for values in lines.values() for v in values):
        return [], "tuning figure left out: no finished trial has a score"
    import matplotlib.pyplot as plt

    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
        used: dict[str, dict] = {}
        for method, values in lines.items():
            style = style_of(method, used)
            x = np.arange(1, len(values) + 1)
            y = np.array([np.nan if v is None else v for v in values], dtype=float)
            ax.plot(x, y, color=style["color"], ls=style["ls"], marker=style["marker"], ms=3,
                    label=method)
        ax.set_xlabel("trials")
        ax.set_ylabel(f"best {plan.metric} so far")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False)
        return save(fig, out_dir, "fig_tuning"), None


def summary_line(sweep: Sweep) -> str:
    """One line for report.md: the budget and where the final numbers come from."""
    plan = budget(sweep.path)
    phase = sweep.runs[PHASE].astype("string").fillna("")
    allowed = f"{plan.trials} trials per method" if plan.trials is not None else \
        "an unknown number of trials per method"
    return (f"Tuned sweep with equal budgets: {allowed}, chosen on {plan.metric}; "
            f"{int((phase == TRIAL).sum())} trial runs, {int((phase == CONFIRM).sum())} "
            "confirmation runs. Every table except the tune_* ones is from the confirmation "
            "runs only.")


def tune_tables(sweep: Sweep, metric: str = "test_acc") -> dict[str, Table]:
    """The three tuning tables by name (empty with a note on a sweep without tune: runs)."""
    plan = budget(sweep.path)
    return {"tune_budget": budget_table(sweep, plan), "tune_curve": curve_table(sweep, plan),
            "tune_final": final_table(sweep, plan, metric)}
