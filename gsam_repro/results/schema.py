"""The parquet contract between gather and reports: column names and dtypes, derived from the
run-output schema (gsam_repro.train.outputs.SCHEMA, where each column's meaning and unit are).

runs.parquet has one row a run: the summary columns, with the flattened config after `error`.
history.parquet has one row a (run, epoch): `run_id`, then the history columns. Config keys appear
flattened with dots (`optimizer.name`, `optimizer.rho_max`, ...), one column each, typed from the
RunConfig dataclasses. Accuracies are percentages (0-100), losses are means over examples.
An empty sweep has exactly the same columns and dtypes as a large one.

`status` is one of RUN_STATUSES (see gsam_repro.sweep.store for how it is read). Config columns
whose field takes lists or mappings (`optimizer.betas`, `*.kwargs`) hold JSON text;
`optimizer.adaptive` holds "false", "paper" or "asam". Sharpness probes: one PROBE_DTYPE column
per radius of eval.probe_rhos, named by gsam_repro.train.config.probe_key; which radii exist
depends on the sweep.

The columns are read from the schema when asked for (`run_columns`, `history_columns`), so a
column added there reaches the parquet files with no change here; `RUN_COLUMNS` and
`HISTORY_COLUMNS` give the same as of when they are read.
"""

from __future__ import annotations

from typing import Any

from gsam_repro.train import outputs
from gsam_repro.train.outputs import PROBE_DTYPE

RUN_STATUSES = ("done", "diverged", "failed", "running", "pending")
__all__ = ["PROBE_DTYPE", "RUN_STATUSES", "history_columns", "run_columns"]  # + the two below


def run_columns() -> dict[str, str]:
    """Columns every runs.parquet has besides the flattened config, with pandas dtypes."""
    return outputs.columns(outputs.SUMMARY)


def history_columns() -> dict[str, str]:
    """Columns of history.parquet (one row a run and epoch), with pandas dtypes."""
    return {"run_id": "string", **outputs.columns(outputs.HISTORY)}


def __getattr__(name: str) -> Any:
    if name == "RUN_COLUMNS":
        return run_columns()
    if name == "HISTORY_COLUMNS":
        return history_columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
