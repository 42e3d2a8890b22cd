# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploring a sweep
#
# Loads a sweep's `runs.parquet` (one row a run) and `history.parquet` (one row a run and
# epoch), as written by `gsam-repro gather`, and shows a summary table and two figures with
# pandas and matplotlib. Set `GSAM_SWEEP_DIR` to the sweep folder; by default it is the
# `results/quick` folder of the repository this notebook sits in, found from any working
# directory. Open it with `jupytext --to notebook notebooks/explore_sweep.py`, or run it as a
# script (`python notebooks/explore_sweep.py`): it then prints the table and saves the figures.
#
# Runs are grouped by optimizer variant *and* every setting that varies among that variant's
# runs (`gsam α=0.1` and `gsam α=0.3` are two rows), the same labels the report's comparison
# table uses, so different ρ/α/λ settings are never pooled.

# %%
import os
from pathlib import Path

import matplotlib

try:  # in Jupyter: show tables and figures inline
    from IPython import get_ipython

    INTERACTIVE = get_ipython() is not None
except ImportError:
    INTERACTIVE = False
if not INTERACTIVE:
    matplotlib.use("Agg")  # a plain script saves its figures instead
import matplotlib.pyplot as plt

import gsam_repro
from gsam_repro.report.load import load_sweep
from gsam_repro.report.tables import column_labels


def default_sweep_dir() -> Path:
    """results/quick of the first folder at or above the working directory that has one, else
    of the repository the installed package lives in (an editable install)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "results" / "quick" / "runs.parquet").is_file():
            return folder / "results" / "quick"
    return Path(gsam_repro.__file__).resolve().parents[1] / "results" / "quick"


def show(obj) -> None:
    """Display inline in a notebook, print as a script."""
    if INTERACTIVE:
        from IPython.display import display

        display(obj)
    else:
        print(obj.to_string() if hasattr(obj, "to_string") else obj)


def finish(fig, name: str) -> None:
    """Inline in a notebook; as a script, saved under the sweep folder and its path printed."""
    fig.tight_layout()
    if not INTERACTIVE:
        folder = sweep_dir / "notebook"
        folder.mkdir(exist_ok=True)
        fig.savefig(folder / f"{name}.png", dpi=120)
        print(f"figure: {folder / f'{name}.png'}")


sweep_dir = Path(os.environ.get("GSAM_SWEEP_DIR") or default_sweep_dir()).resolve()
sweep = load_sweep(sweep_dir)  # a clear error when runs.parquet is missing
done = sweep.done.copy()
done["setting"] = column_labels(done, rows=[]) if len(done) else []
history = sweep.history
print(f"{sweep_dir}: {len(sweep.runs)} runs ({len(done)} done), "
      f"{0 if history is None else len(history)} history rows")

# %% [markdown]
# ## Final test accuracy per optimizer setting
# Mean, standard deviation over seeds (empty for a single seed) and the number of seeds, for
# the runs that finished.

# %%
summary = (
    done.groupby("setting")["test_acc"]
    .agg(mean="mean", std="std", seeds="count")
    .sort_values("mean", ascending=False)
    .round(2)
)
show(summary)

# %% [markdown]
# ## Test accuracy over training
# One line an optimizer setting: the mean over seeds at each epoch.

# %%
fig, ax = plt.subplots(figsize=(4.5, 3))
if history is not None and "test_acc" in history.columns:
    labels = done.set_index("run_id")["setting"]
    curves = history[history["run_id"].isin(labels.index)].assign(
        setting=lambda h: h["run_id"].map(labels))
    for name, sub in curves.groupby("setting"):
        mean = sub.groupby("epoch")["test_acc"].mean()
        ax.plot(mean.index, mean.values, marker="o", ms=3, label=name)
    ax.legend(frameon=False, fontsize=7)
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy (%)")
ax.set_title("Test accuracy over training")
finish(fig, "test_acc_over_training")

# %% [markdown]
# ## Accuracy against sharpness
# The dominant Hessian eigenvalue at the end of training against the final test accuracy, one
# dot a run (needs `eval.hessian_batches > 0`).

# %%
fig, ax = plt.subplots(figsize=(4.5, 3))
if "hessian_max_eig" in done.columns and done["hessian_max_eig"].notna().any():
    for name, sub in done.groupby("setting"):
        ax.scatter(sub["hessian_max_eig"], sub["test_acc"], label=name, s=18)
    ax.legend(frameon=False, fontsize=7)
else:
    ax.text(0.5, 0.5, "no Hessian eigenvalues in this sweep", ha="center",
            transform=ax.transAxes)
ax.set_xlabel("dominant Hessian eigenvalue")
ax.set_ylabel("test accuracy (%)")
ax.set_title("Accuracy against sharpness")
finish(fig, "accuracy_vs_sharpness")
