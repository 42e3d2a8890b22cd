"""Accuracy against compute: one marker per method at its total forward+backward passes.

For sweeps whose methods cost different passes a step (SGD 1, SAM 2, the cheap variants in
between): x = passes_per_step x steps as each run recorded them (mean over seeds), y = the
accuracy's mean with a ± std bar over seeds. A method above and to the left of another buys
more accuracy per pass.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gsam_repro.report import figures
from gsam_repro.report.load import Sweep, variant_sort_key

FIGURE_NAME = "fig_accuracy_vs_passes"


def passes_points(sweep: Sweep, rows: list[str], metric: str = "test_acc") -> pd.DataFrame:
    """One row per (row group, method): total passes (mean over seeds), accuracy mean and
    sample std over seeds, and the number of seeds; columns group, label, passes, mean, std, n."""
    df, _ = figures.labelled(sweep, rows)
    needed = {"passes_per_step", "steps", metric}
    if df.empty or not needed <= set(df.columns):
        return pd.DataFrame(columns=["group", "label", "passes", "mean", "std", "n"])
    df = df.assign(_passes=pd.to_numeric(df["passes_per_step"], errors="coerce").astype(float)
                   * pd.to_numeric(df["steps"], errors="coerce").astype(float),
                   _y=pd.to_numeric(df[metric], errors="coerce").astype(float))
    df = df.dropna(subset=["_passes", "_y"])
    from gsam_repro.report.tables import groups

    points = []
    for group, sub in groups(df, [k for k in rows if k in df.columns]):
        for name in sorted(sub["_label"].unique(), key=variant_sort_key):
            runs = sub[sub["_label"] == name]
            points.append({"group": group, "label": name, "passes": runs["_passes"].mean(),
                           "mean": runs["_y"].mean(), "std": runs["_y"].std(ddof=1),
                           "n": len(runs)})
    return pd.DataFrame(points, columns=["group", "label", "passes", "mean", "std", "n"])


def accuracy_vs_passes(sweep: Sweep, rows: list[str], out_dir: Path,
                       metric: str = "test_acc") -> tuple[list[Path], str | None]:
    """The figure, drawn when the finished runs record more than one passes_per_step value."""
    import matplotlib.pyplot as plt

    df = sweep.done
    if "passes_per_step" not in df.columns or pd.to_numeric(
            df["passes_per_step"], errors="coerce").nunique() < 2:
        return [], "accuracy vs passes left out: fewer than two passes_per_step values"
    points = passes_points(sweep, rows, metric)
    if points.empty:
        return [], f"accuracy vs passes left out: no run records steps and {metric}"
    groups = list(dict.fromkeys(points["group"]))
    several = len(groups) > 1
    used: dict[str, dict] = {}
    with figures.paper_style():
        fig, ax = plt.subplots(figsize=(figures.COLUMN_WIDTH * 1.5, 2.3))
        for point in points.itertuples():
            style = figures.style_of(point.label, used)
            hollow = groups.index(point.group) % 2 == 1
            ax.errorbar(point.passes, point.mean,
                        yerr=point.std if pd.notna(point.std) else None,
                        marker=style["marker"], ms=4, ls="none", capsize=2, elinewidth=0.7,
                        color=style["color"], mfc="none" if hollow else style["color"],
                        mec="black" if not hollow else style["color"], mew=0.5,
                        label=figures._line_label(point.label, point.group, several))
        ax.set_xlabel("forward+backward passes (passes per step × steps)")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        ax.set_title("Accuracy against compute (mean ± std over seeds)")
        ax.legend(frameon=False, fontsize=5.5, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.tight_layout()
        return figures.save(fig, out_dir, FIGURE_NAME), None
