"""The report's figures (PNG and PDF), sized for one paper column (3.4 inches wide).

Each function takes a `Sweep` and an output folder and returns the files it wrote, or a note
saying why it drew nothing (missing columns, too few values) instead of raising.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from gsam_repro.fsio import save_figure
from gsam_repro.report.load import Sweep, format_value, radius, variant_sort_key
from gsam_repro.report.render import math_text

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
COLORS = {"sgd": "#4C72B0", "adamw": "#55A868", "sam": "#DD8452", "gsam": "#C44E52",
          "weighted": "#8172B3"}
OTHER_COLORS = ["#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD", "#2F4B7C"]
STYLE = {
    "font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7, "legend.fontsize": 6,
    "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "lines.linewidth": 1.0,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02, "pdf.fonttype": 42,
}


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib settings readable at column width, restored afterwards."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        yield


# Line style and marker per optimizer, so curves stay apart in grey scale; a second column of
# the same optimizer (another setting or budget) takes the next unused pair.
LINE_STYLES = {"sgd": ("-", "o"), "adamw": ("-", "v"), "sam": ("--", "s"), "gsam": (":", "^"),
               "weighted": ("-.", "D")}
SPARE_STYLES = [((0, (5, 1)), "P"), ((0, (3, 1, 1, 1, 1, 1)), "X"), ((0, (1, 2)), "*"),
                ((0, (6, 2, 1, 2)), "h"), ("-", "<"), ("--", ">"), (":", "p"), ("-.", "d")]


def _base_of(label: str) -> str:
    return label.split(" · ")[0].split(" ")[0].split("-")[0].split("(")[0]


def color_of(label: str, used: dict[str, str]) -> str:
    """A stable colour an optimizer column: SGD, SAM, GSAM, ... fixed; the first column of each
    gets its fixed colour, others (other settings, budgets) take the next free one."""
    label = label.split(" · ")[0]
    if label in used:
        return used[label]
    base = _base_of(label)
    if base in COLORS and COLORS[base] not in used.values():
        used[label] = COLORS[base]
    else:
        free = [c for c in OTHER_COLORS + list(COLORS.values()) if c not in used.values()]
        used[label] = free[0] if free else OTHER_COLORS[len(used) % len(OTHER_COLORS)]
    return used[label]


def style_of(label: str, used: dict[str, dict]) -> dict:
    """Colour, line style and marker of an optimizer column, distinct from every other column
    drawn in the same figure (`used` remembers them)."""
    key = label.split(" · ")[0]
    if key in used:
        return used[key]
    taken = {(str(v["ls"]), v["marker"]) for v in used.values()}
    fixed = LINE_STYLES.get(_base_of(key))
    candidates = ([fixed] if fixed else []) + SPARE_STYLES
    free = [c for c in candidates if (str(c[0]), c[1]) not in taken]
    ls, marker = free[0] if free else SPARE_STYLES[len(used) % len(SPARE_STYLES)]
    colors = {k: v["color"] for k, v in used.items()}
    used[key] = {"color": color_of(key, colors), "ls": ls, "marker": marker}
    return used[key]


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write fig as <name>.png (200 dpi) and <name>.pdf, each through a temporary file."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    for text in fig.findobj(Text):  # names such as λ_max and f_p as math, everywhere
        if text.get_text():
            text.set_text(math_text(text.get_text()))
    written = save_figure(fig, out_dir, name)
    plt.close(fig)
    return written


def _band(ax, x: np.ndarray, mean: np.ndarray, std: np.ndarray, style: dict, label: str,
          group: int = 0) -> None:
    """A mean line with a ± std band; markers about every eighth point, hollow for the second
    row group (the line style belongs to the optimizer)."""
    ax.plot(x, mean, color=style["color"], label=label, marker=style["marker"], ms=3,
            ls=style["ls"], markevery=max(1, len(x) // 8),
            fillstyle="full" if group % 2 == 0 else "none")
    finite = np.isfinite(std)
    if finite.any():
        ax.fill_between(x, mean - np.where(finite, std, 0), mean + np.where(finite, std, 0),
                        color=style["color"], alpha=0.2, lw=0)


def _line_label(variant: str, group: tuple, several: bool) -> str:
    if not several:
        return variant
    return f"{variant} · {', '.join(format_value(v) for v in group)}"


def labelled(sweep: Sweep, rows: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Finished runs with `_label` (the comparison table's column: variant, varying settings,
    budget), and the history of those runs with the same labels."""
    from gsam_repro.report.tables import column_labels

    df = sweep.done
    if df.empty or "optimizer.name" not in df.columns:
        return df.assign(_label=pd.Series(dtype="object")), None
    df = df.assign(_label=column_labels(df, [k for k in rows if k in df.columns]))
    history = sweep.history
    if history is not None and "run_id" in df.columns and "run_id" in history.columns:
        names = dict(zip(df["run_id"], df["_label"], strict=True))
        history = history[history["run_id"].isin(names)]
        history = history.assign(_label=history["run_id"].map(names))
    return df, history


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# --------------------------------------------------------------------- accuracy vs α / ρ
def accuracy_vs(sweep: Sweep, over: str, rows: list[str], out_dir: Path,
                metric: str = "test_acc") -> tuple[list[Path], str | None]:
    """Accuracy against alpha (GSAM) or rho (SAM family), mean ± std band over seeds."""
    import matplotlib.pyplot as plt

    from gsam_repro.report.tables import column_labels, groups, tied_settings

    df = sweep.done
    symbol = {"alpha": "α", "rho": "ρ"}[over]
    if metric not in df.columns or "optimizer.name" not in df.columns or df.empty:
        return [], f"accuracy vs {symbol} left out: no {metric} or optimizer.name"
    if over == "alpha":
        if "optimizer.alpha" not in df.columns:
            return [], "accuracy vs α left out: no optimizer.alpha column"
        df = df[df["variant"].str.startswith("gsam")]
        df = df.assign(_x=pd.to_numeric(df["optimizer.alpha"], errors="coerce"))
        exclude = ["optimizer.alpha"]
    else:
        if not radius(df).notna().any():
            return [], "accuracy vs ρ left out: no run records a radius"
        df = df[df["sam_family"].astype(bool)]
        df = df.assign(_x=radius(df))
        exclude = ["optimizer.rho", "optimizer.rho_max"]
    df = df.dropna(subset=["_x", metric])
    if df["_x"].nunique() < 2:
        return [], f"accuracy vs {symbol} left out: fewer than two {symbol} values"
    keys = [k for k in rows if k in df.columns]
    exclude += tied_settings(df, "_x", exclude=[*keys, *exclude])
    df = df.assign(_label=column_labels(df, keys, exclude=exclude))
    parts = groups(df, keys)
    several = len(parts) > 1
    used: dict[str, dict] = {}
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
        for number, (group, sub) in enumerate(parts):
            for name in sorted(sub["_label"].unique(), key=variant_sort_key):
                stats = sub[sub["_label"] == name].groupby("_x")[metric].agg(["mean", "std"])
                if len(stats) < 2:
                    continue
                stats = stats.sort_index()
                _band(ax, stats.index.to_numpy(float), stats["mean"].to_numpy(float),
                      stats["std"].to_numpy(float), style_of(name, used),
                      _line_label(name, group, several), number)
        x = df["_x"].to_numpy(float)
        if (x > 0).all() and x.max() / x.min() >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(symbol + (" (GSAM: ρ_max)" if over == "rho" else " (GSAM)"))
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        ax.set_title(f"Accuracy over {symbol} (mean ± std over seeds)")
        ax.legend(frameon=False)
        fig.tight_layout()
        return save(fig, out_dir, f"fig_accuracy_vs_{over}"), None


# ------------------------------------------------------------------------ training curves
def _curve_lines(sweep: Sweep, rows: list[str], column: str, family_only: bool = False):
    """(label, group number, epochs, mean, std) per optimizer column and row group."""
    from gsam_repro.report.tables import groups

    _, history = labelled(sweep, rows)
    if history is None or column not in history.columns or "epoch" not in history.columns:
        return None
    history = history.dropna(subset=[column])
    if family_only and "sam_family" in history.columns:
        history = history[history["sam_family"].astype(bool)]
    if history.empty:
        return None
    keys = [k for k in rows if k in history.columns]
    parts = groups(history, keys)
    several = len(parts) > 1
    lines = []
    for number, (group, sub) in enumerate(parts):
        for name in sorted(sub["_label"].unique(), key=variant_sort_key):
            stats = sub[sub["_label"] == name].groupby("epoch")[column].agg(["mean", "std"])
            stats = stats.sort_index()
            lines.append((_line_label(name, group, several), number,
                          stats.index.to_numpy(float), stats["mean"].to_numpy(float),
                          stats["std"].to_numpy(float)))
    return lines


def _draw_lines(ax, lines, used: dict[str, dict]) -> None:
    for label, number, x, mean, std in lines:
        _band(ax, x, mean, std, style_of(label, used), label, number)
    _integer_epochs(ax)


def _wants_log(lines) -> bool:
    """Log scale when every mean is positive and they span at least a factor of ten."""
    values = np.concatenate([m[np.isfinite(m)] for _, _, _, m, _ in lines])
    return bool(values.size and (values > 0).all() and values.max() / values.min() >= 10)


def training_curves(sweep: Sweep, rows: list[str], out_dir: Path
                    ) -> tuple[list[Path], str | None]:
    """Train loss and test accuracy per epoch, one line an optimizer, mean ± std over seeds."""
    import matplotlib.pyplot as plt

    loss = _curve_lines(sweep, rows, "train_loss")
    acc = _curve_lines(sweep, rows, "test_acc")
    if not loss and not acc:
        return [], "training curves left out: history.parquet missing or without train_loss " \
                   "and test_acc"
    used: dict[str, dict] = {}
    with paper_style():
        fig, axes = plt.subplots(1, 2, figsize=(COLUMN_WIDTH * 2, 2.3))
        for ax, lines, ylabel in ((axes[0], loss, "train loss"),
                                  (axes[1], acc, "test accuracy (%)")):
            if not lines:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center",
                        transform=ax.transAxes)
                continue
            _draw_lines(ax, lines, used)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
        if loss and _wants_log(loss):
            axes[0].set_yscale("log")
        axes[0].set_title("Training loss")
        axes[1].set_title("Test accuracy")
        handles, labels = axes[1 if acc else 0].get_legend_handles_labels()
        columns = min(len(labels), 4)
        fig.legend(handles, labels, loc="lower center", ncol=columns, frameon=False)
        rows_of_legend = -(-len(labels) // columns)
        fig.tight_layout(rect=(0, 0.06 + 0.06 * rows_of_legend, 1, 1))
        return save(fig, out_dir, "fig_training_curves"), None


def _rho_t_text(sweep: Sweep, rows: list[str], label: str) -> str:
    """The radius behind a training-time h curve: ρ_t = 0.05, or its range when it follows
    the schedule (GSAM: ρ_max → ρ_min), from history's per-epoch rho."""
    _, history = labelled(sweep, rows)
    if history is None or "rho" not in history.columns:
        return "ρ_t not recorded"
    rho = history.loc[history["_label"] == label.split(" · ")[0]].groupby("epoch")["rho"].mean()
    rho = rho.dropna()
    if rho.empty:
        return "ρ_t not recorded"
    first, last = float(rho.iloc[0]), float(rho.iloc[-1])
    if np.isclose(first, last, rtol=1e-3):
        return f"ρ_t = {first:.3g}"
    return f"ρ_t {first:.3g} → {last:.3g}"


def surrogate_gap_curves(sweep: Sweep, rows: list[str], out_dir: Path
                         ) -> tuple[list[Path], str | None]:
    """The training-time surrogate gap h = f(w + eps) - f(w) per epoch, SAM-family optimizers,
    each at its own radius ρ_t (stated in the legend): not a comparison at equal radius, which
    is fig_probe_h's job."""
    import matplotlib.pyplot as plt

    lines = _curve_lines(sweep, rows, "surrogate_gap", family_only=True)
    if not lines:
        return [], "surrogate gap figure left out: no surrogate_gap in history.parquet"
    lines = [(f"{label} ({_rho_t_text(sweep, rows, label)})", *rest)
             for label, *rest in lines]
    used: dict[str, dict] = {}
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
        _draw_lines(ax, lines, used)
        if _wants_log(lines):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("surrogate gap h = f_p − f")
        ax.set_title("Training-time h, each at its own ρ_t (unequal radii)")
        ax.legend(frameon=False)
        fig.tight_layout()
        return save(fig, out_dir, "fig_surrogate_gap"), None


def probe_figure(sweep: Sweep, rows: list[str], out_dir: Path
                 ) -> tuple[list[Path], str | None]:
    """h(ρ) against ρ at the end of training, one line an optimizer (SGD included), mean ± std
    over seeds as error bars: the surrogate gap compared at equal radius."""
    import matplotlib.pyplot as plt

    from gsam_repro.report.probes import probe_columns
    from gsam_repro.report.tables import groups

    df, _ = labelled(sweep, rows)
    radii = probe_columns(df)
    if len(radii) < 1 or "_label" not in df.columns:
        return [], "probe figure left out: runs.parquet has no probe_h_rho* values (older " \
                   "schema, or eval.probe_rhos empty)"
    keys = [k for k in rows if k in df.columns]
    parts = groups(df, keys)
    several = len(parts) > 1
    used: dict[str, dict] = {}
    x = np.array([r for r, _ in radii])
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
        for number, (group, sub) in enumerate(parts):
            for name in sorted(sub["_label"].unique(), key=variant_sort_key):
                runs = sub[sub["_label"] == name]
                mean = np.array([runs[c].mean() for _, c in radii], dtype=float)
                std = np.array([runs[c].std(ddof=1) if runs[c].notna().sum() > 1 else 0.0
                                for _, c in radii], dtype=float)
                style = style_of(name, used)
                ax.errorbar(x, mean, yerr=std, color=style["color"], ls=style["ls"],
                            marker=style["marker"], ms=3, capsize=2,
                            fillstyle="full" if number % 2 == 0 else "none",
                            label=_line_label(name, group, several))
        values = np.concatenate([df[c].to_numpy(float) for _, c in radii])
        values = values[np.isfinite(values)]
        if len(x) > 1 and (x > 0).all() and values.size and (values > 0).all():
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xticks(x, [f"{r:g}" for r in x])
        ax.minorticks_off()
        ax.set_xlabel("probe radius ρ (the same for every run)")
        ax.set_ylabel("h(ρ) = f(w + ρĝ) − f(w)")
        ax.set_title("Surrogate gap at equal radius, end of training (mean ± std)")
        ax.legend(frameon=False)
        fig.tight_layout()
        return save(fig, out_dir, "fig_probe_h"), None


# ------------------------------------------------------------------------- Hessian figures
def hessian_eigenvalues(sweep: Sweep, rows: list[str], out_dir: Path
                        ) -> tuple[list[Path], str | None]:
    """Dominant Hessian eigenvalue per optimizer: mean bar, one dot a seed."""
    import matplotlib.pyplot as plt

    from gsam_repro.report.tables import groups

    df, _ = labelled(sweep, rows)
    if "hessian_max_eig" not in df.columns or not df["hessian_max_eig"].notna().any():
        return [], "Hessian eigenvalue figure left out: no hessian_max_eig values " \
                   "(eval.hessian_batches = 0?)"
    df = df.dropna(subset=["hessian_max_eig"])
    keys = [k for k in rows if k in df.columns]
    parts = groups(df, keys)
    several = len(parts) > 1
    bars = []
    for group, sub in parts:
        for name in sorted(sub["_label"].unique(), key=variant_sort_key):
            bars.append((name, _line_label(name, group, several),
                         sub.loc[sub["_label"] == name, "hessian_max_eig"].to_numpy(float)))
    used: dict[str, str] = {}
    rng = np.random.default_rng(0)
    width = max(COLUMN_WIDTH, min(2 * COLUMN_WIDTH, 0.9 + 0.42 * len(bars)))
    with paper_style():
        fig, ax = plt.subplots(figsize=(width, 2.3))
        for i, (name, _, values) in enumerate(bars):
            color = color_of(name, used)
            ax.bar(i, values.mean(), color=color, alpha=0.55, width=0.6)
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, color=color, s=8,
                       zorder=3, edgecolor="black", linewidth=0.3)
        ax.set_xticks(range(len(bars)))
        crowded = len(bars) > 4 or max(len(b[1]) for b in bars) > 12
        ax.set_xticklabels([b[1] for b in bars], rotation=35 if crowded else 0,
                           ha="right" if crowded else "center")
        ax.set_ylabel("Hessian λ_max")
        ax.set_title("Dominant Hessian eigenvalue at the end (bar: mean, dot: seed)")
        fig.tight_layout()
        return save(fig, out_dir, "fig_hessian_eigenvalue"), None


def accuracy_vs_hessian(sweep: Sweep, rows: list[str], out_dir: Path,
                        metric: str = "test_acc") -> tuple[list[Path], str | None]:
    """Test accuracy against the dominant Hessian eigenvalue, one dot a run."""
    import matplotlib.pyplot as plt

    df, _ = labelled(sweep, rows)
    if not {"hessian_max_eig", metric} <= set(df.columns):
        return [], f"accuracy vs Hessian figure left out: needs hessian_max_eig and {metric}"
    df = df.dropna(subset=["hessian_max_eig", metric])
    if len(df) < 2:
        return [], "accuracy vs Hessian figure left out: fewer than two runs with both values"
    used: dict[str, dict] = {}
    keys = [k for k in rows if k in df.columns]
    from gsam_repro.report.tables import groups

    parts = groups(df, keys)
    several = len(parts) > 1
    entries = sum(sub["_label"].nunique() for _, sub in parts)
    outside = entries > 5
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH * (1.6 if outside else 1), 2.3))
        for number, (group, sub) in enumerate(parts):
            for name in sorted(sub["_label"].unique(), key=variant_sort_key):
                runs = sub[sub["_label"] == name]
                style = style_of(name, used)
                ax.scatter(runs["hessian_max_eig"], runs[metric], s=14,
                           label=_line_label(name, group, several), marker=style["marker"],
                           color=style["color"] if number % 2 == 0 else "none",
                           edgecolor=style["color"] if number % 2 else "black", linewidth=0.5)
        x = df["hessian_max_eig"].to_numpy(float)
        if (x > 0).all() and x.max() / x.min() >= 20:
            ax.set_xscale("log")
        ax.set_xlabel("dominant Hessian eigenvalue (λ_max)")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        ax.set_title("Accuracy against sharpness (one dot a run)")
        if outside:
            ax.legend(frameon=False, fontsize=5.5, loc="upper left", bbox_to_anchor=(1.01, 1))
        else:
            ax.legend(frameon=False, fontsize=5.5)
        fig.tight_layout()
        return save(fig, out_dir, "fig_accuracy_vs_hessian"), None


def all_figures(sweep: Sweep, rows: list[str], out_dir: Path) -> tuple[list[Path], list[str]]:
    """Every figure the sweep's data allows; notes for the ones left out."""
    from gsam_repro.report.cost_figure import accuracy_vs_passes

    written: list[Path] = []
    notes: list[str] = []
    if "optimizer.name" not in sweep.done.columns:
        return [], ["figures left out: runs.parquet has no optimizer.name column"]
    for draw in (
        lambda: accuracy_vs(sweep, "alpha", rows, out_dir),
        lambda: accuracy_vs(sweep, "rho", rows, out_dir),
        lambda: training_curves(sweep, rows, out_dir),
        lambda: surrogate_gap_curves(sweep, rows, out_dir),
        lambda: probe_figure(sweep, rows, out_dir),
        lambda: hessian_eigenvalues(sweep, rows, out_dir),
        lambda: accuracy_vs_hessian(sweep, rows, out_dir),
        lambda: accuracy_vs_passes(sweep, rows, out_dir),
    ):
        try:
            files, note = draw()
        except Exception as err:  # odd data must not cost the rest of the report
            files, note = [], f"a figure failed ({type(err).__name__}: {err}); please report it"
        written += files
        if note:
            notes.append(note)
    return written, notes

