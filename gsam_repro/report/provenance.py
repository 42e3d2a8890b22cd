"""Where a sweep's runs came from: how many commits, machines and dirty source trees they span.

A sweep whose runs mix commits or machines compares results of different code or hardware; the
report says so in one line instead of letting the table imply one setup. Columns an older
runs.parquet lacks (git_dirty, cpu_model) are simply not counted.
"""

from __future__ import annotations

import pandas as pd

from gsam_repro.train.rundir import optimizer_file_change

# What names a machine: the host, its CPU and the instruction set torch's kernels use there
# (results differ in the last bits between them), and its GPU.
MACHINE_KEYS = ("hostname", "cpu_model", "cpu_capability", "gpu_name")


def _distinct(series: pd.Series) -> list[str]:
    return sorted({str(v) for v in series.dropna().astype(str) if v not in ("", "None")})


def provenance_line(runs: pd.DataFrame) -> str | None:
    """One line naming how many commits, machines (MACHINE_KEYS) and dirty trees the
    runs span, or None when they share one commit, one machine and no dirty tree."""
    if runs.empty:
        return None
    parts = []
    if "git_sha" in runs.columns:
        commits = _distinct(runs["git_sha"])
        if len(commits) > 1:
            shown = ", ".join(c[:7] for c in commits[:5]) + (", ..." if len(commits) > 5 else "")
            parts.append(f"{len(commits)} commits ({shown})")
    machine_keys = [c for c in MACHINE_KEYS if c in runs.columns]
    if machine_keys:
        machines = [" / ".join(str(v) for v in row if not pd.isna(v) and str(v))
                    for row in runs[machine_keys].astype("string").itertuples(index=False)]
        distinct = sorted(set(machines))
        if len(distinct) > 1:
            parts.append(f"{len(distinct)} machines ({'; '.join(distinct)})")
    if "git_dirty" in runs.columns:
        dirty = int(runs["git_dirty"].astype("boolean").fillna(False).sum())
        if dirty:
            parts.append(f"{dirty} runs from a dirty source tree (uncommitted changes)")
    if not parts:
        return None
    return (f"Provenance: the {len(runs)} runs span " + ", ".join(parts)
            + ": differences between optimizers may partly be differences of code or machine.")


def stale_line(runs: pd.DataFrame) -> str | None:
    """One line naming the runs whose user-given optimizer file changed since they ran (their
    numbers are not those of the code as it is now), or None when there are none."""
    if runs.empty or not {"optimizer.name", "optimizer_file_sha256"} <= set(runs.columns):
        return None
    seen: dict[tuple, str | None] = {}
    stale = []
    for run_dir, name, recorded in runs[["run_dir", "optimizer.name",
                                         "optimizer_file_sha256"]].itertuples(index=False):
        if pd.isna(recorded) or pd.isna(name):
            continue
        key = (str(name), str(recorded))
        if key not in seen:
            seen[key] = optimizer_file_change(*key)
        if seen[key]:
            stale.append(f"{run_dir} ({seen[key]})")
    if not stale:
        return None
    return (f"Stale: {len(stale)} run{'s' if len(stale) > 1 else ''} used an optimizer file "
            f"that has changed since: {'; '.join(stale)}. `gsam-repro sweep run` runs "
            "them again.")
