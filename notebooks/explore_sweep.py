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
# plain pandas and matplotlib. Set `GSAM_SWEEP_DIR` to the sweep folder (default:
# `results/quick`, the folder `gsam-repro demo` fills). Open it with
# `jupytext --to notebook notebooks/explore_sweep.py` or run it as a script.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

sweep_dir = Path(os.environ.get("GSAM_SWEEP_DIR", "results/quick"))
runs = pd.read_parquet(sweep_dir / "runs.parquet")
history_path = sweep_dir / "history.parquet"
history = pd.read_parquet(history_path) if history_path.exists() else None
print(f"{sweep_dir}: {len(runs)} runs, "
      f"{0 if history is None else len(history)} history rows")

# %% [markdown]
# ## Final test accuracy per optimizer
# Mean, standard deviation over seeds (empty for a single seed) and the number of seeds, for
# the runs that finished.

# %%
done = runs[runs["status"] == "done"] if "status" in runs.columns else runs
summary = (
    done.groupby("optimizer.name")["test_acc"]
    .agg(mean="mean", std="std", seeds="count")
    .sort_values("mean", ascending=False)
    .round(2)
)
summary

# %% [markdown]
# ## Test accuracy over training
# One line an optimizer: the mean over seeds at each epoch.

# %%
fig, ax = plt.subplots(figsize=(4.5, 3))
if history is not None and "test_acc" in history.columns:
    names = done.set_index("run_id")["optimizer.name"]
    curves = history[history["run_id"].isin(names.index)].assign(
        optimizer=lambda h: h["run_id"].map(names))
    for name, sub in curves.groupby("optimizer"):
        mean = sub.groupby("epoch")["test_acc"].mean()
        ax.plot(mean.index, mean.values, marker="o", ms=3, label=name)
    ax.legend(frameon=False)
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy (%)")
ax.set_title("Test accuracy over training")
fig.tight_layout()

# %% [markdown]
# ## Accuracy against sharpness
# The dominant Hessian eigenvalue at the end of training against the final test accuracy, one
# dot a run (needs `eval.hessian_batches > 0`).

# %%
fig, ax = plt.subplots(figsize=(4.5, 3))
if "hessian_max_eig" in done.columns and done["hessian_max_eig"].notna().any():
    for name, sub in done.groupby("optimizer.name"):
        ax.scatter(sub["hessian_max_eig"], sub["test_acc"], label=name, s=18)
    ax.legend(frameon=False)
else:
    ax.text(0.5, 0.5, "no Hessian eigenvalues in this sweep", ha="center",
            transform=ax.transAxes)
ax.set_xlabel("dominant Hessian eigenvalue")
ax.set_ylabel("test accuracy (%)")
ax.set_title("Accuracy against sharpness")
fig.tight_layout()
