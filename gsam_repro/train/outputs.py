"""The run-output schema: every value a run writes, defined once.

One table, `SCHEMA`, names each output column with its pandas dtype, unit and meaning, and says
where it goes: `history` (one row an epoch: metrics.jsonl, then history.parquet), `summary`
(summary.json, then runs.parquet) or `both`. From it the trainer builds its metrics.jsonl rows
and summary.json (`history_row`, `summary_record`), gather types its parquet columns
(gsam_repro.results.schema) and the report knows which columns are numeric results
(gsam_repro.report.load). Adding a metric is one `Column` here plus the code computing it; a
value computable from the epoch's other values needs only `compute`.

A summary value is read from one of the records the trainer hands `summary_record` (`source`,
"<record>.<key>"): `run` (computed at the end: status, best epoch, cost), `last` (the last
epoch's row), `last_eval` (the last evaluated epoch's row), `final` (end-of-training
measurements), `optimizer` (gsam_repro.optim.optimizer_facts) and `env` (env.json). Sharpness
probes (`probe_h_rho<r>`, one per radius of eval.probe_rhos) are the one dynamic family of
columns: named by gsam_repro.train.config.probe_key, they follow `probe_f` in summary.json.

This module sits in the trainer's layer and imports nothing above it (no torch, no pandas), so
gather and the report can read it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gsam_repro.train.config import PROBE_PREFIX

HISTORY, SUMMARY, BOTH = "history", "summary", "both"
TRAINER, GATHER = "trainer", "gather"


@dataclass(frozen=True)
class Column:
    """One output column (see the module docstring)."""

    name: str
    dtype: str  # pandas dtype in parquet: Float64, Int64, boolean or string
    unit: str  # "" for a count, a name or a flag
    meaning: str
    where: str = SUMMARY  # HISTORY, SUMMARY or BOTH
    source: str | None = None  # summary: "<record>.<key>"; default last.<name> (BOTH), run.<name>
    stat: str | None = None  # the optimizer stat (gsam_repro.optim.STAT_NAMES) averaged per epoch
    compute: Callable[[Mapping[str, Any]], Any] | None = None  # from the epoch's other values
    metric: bool = False  # a numeric result the report reads as float (NaN when missing)
    by: str = TRAINER  # GATHER: gather adds it from the sweep directory, the trainer never does

    @property
    def in_history(self) -> bool:
        return self.where in (HISTORY, BOTH)

    @property
    def in_summary(self) -> bool:
        return self.where in (SUMMARY, BOTH)

    @property
    def summary_source(self) -> tuple[str, str]:
        """(record, key) summary.json takes this column's value from."""
        if self.source is None:
            return ("last" if self.where == BOTH else "run"), self.name
        record, _, key = self.source.partition(".")
        return record, key


C = Column
F, I, S = "Float64", "Int64", "string"
SCHEMA: tuple[Column, ...] = (
    # identity and status
    C("run_id", S, "", "the run's id (gsam_repro.train.config.run_id)", source="run.run_id"),
    C("sweep", S, "", "the sweep's name", BOTH, by=GATHER),
    C("run_dir", S, "", "the run directory, relative to the sweep directory", by=GATHER),
    C("status", S, "", "done | diverged (gather: also failed, running, pending)"),
    C("error", S, "", "first line of a failed run's error", by=GATHER),
    C("epochs_completed", I, "epochs", "epochs trained", metric=True),
    C("best_epoch", I, "epoch", "epoch of best validation (else test) accuracy"),
    # per epoch: training
    C("epoch", I, "epoch", "the epoch this row ends", HISTORY, metric=True),
    C("lr", F, "", "mean learning rate over the epoch's steps", HISTORY, metric=True),
    C("test_acc", F, "%", "top-1 test accuracy (summary: last evaluated epoch)", BOTH,
      source="last_eval.test_acc", metric=True),
    C("test_top5", F, "%", "top-5 test accuracy", BOTH, source="last_eval.test_top5",
      metric=True),
    C("test_loss", F, "nats", "mean test cross-entropy", BOTH, source="last_eval.test_loss",
      metric=True),
    C("val_acc", F, "%", "held-out validation accuracy", BOTH, source="last_eval.val_acc",
      metric=True),
    C("val_loss", F, "nats", "held-out validation loss", BOTH, source="last_eval.val_loss",
      metric=True),
    C("train_acc", F, "%", "training accuracy at w, on augmented batches", BOTH, metric=True),
    C("train_loss", F, "nats", "mean training loss at w", BOTH, metric=True),
    C("best_test_acc", F, "%", "best test accuracy of any evaluated epoch", metric=True),
    C("best_val_acc", F, "%", "best validation accuracy", metric=True),
    C("test_acc_at_best_val", F, "%", "test accuracy at the epoch of best validation accuracy",
      metric=True),
    # per epoch: the optimizer's stats, epoch means (plain optimizers: f is the train loss)
    C("f", F, "nats", "loss at w", BOTH, stat="f", metric=True),
    C("f_p", F, "nats", "loss at w + eps", BOTH, stat="f_p", metric=True),
    C("surrogate_gap", F, "nats", "h = f_p - f", BOTH, stat="h", metric=True),
    C("rho", F, "", "the perturbation radius rho_t", BOTH, stat="rho", metric=True),
    C("grad_norm", F, "", "||g||, the gradient norm at w", BOTH, stat="grad_norm"),
    C("grad_p_norm", F, "", "||g_p||, the gradient norm at w + eps", BOTH, stat="grad_p_norm"),
    C("cos", F, "", "cos(g, g_p)", BOTH, stat="cos"),
    # end of training, the same measurement for every optimizer
    C("hessian_max_eig", F, "", "dominant Hessian eigenvalue of the training loss",
      source="final.hessian_max_eig", metric=True),
    C("probe_f", F, "nats", "loss at the final weights on the probe batches (eval mode)",
      source="final.probe_f", metric=True),
    C("memorized_pct", F, "%", "label noise: flipped images predicted as their noisy label",
      source="final.memorized_pct", metric=True),
    C("flipped_clean_pct", F, "%", "label noise: flipped images predicted as the clean label",
      source="final.flipped_clean_pct"),
    # the optimizer's facts, read from the optimizer object
    C("optimizer_family", S, "", "plain | sharpness_aware", source="optimizer.optimizer_family"),
    C("passes_per_step", F, "passes", "forward+backward passes a step (mean if it varies)",
      source="optimizer.passes_per_step", metric=True),
    C("radius", F, "", "the radius of a sharpness-aware run (GSAM: rho_max); null if plain",
      source="optimizer.radius", metric=True),
    C("rho_start", F, "", "rho_t at lr_max", source="optimizer.rho_start"),
    C("rho_end", F, "", "rho_t at lr_min", source="optimizer.rho_end"),
    # cost
    C("epoch_s", F, "s", "the epoch's training and evaluation time", HISTORY, metric=True),
    C("train_s", F, "s", "time in the training pass (data_s of it waiting for batches)",
      HISTORY),
    C("data_s", F, "s", "time waiting for training batches", HISTORY),
    C("eval_s", F, "s", "time evaluating", HISTORY),
    C("wall_s", F, "s", "wall time so far (summary: with the end-of-training measurements)",
      BOTH, source="run.wall_s", metric=True),
    C("fwd_bwd_passes", I, "passes", "forward+backward passes so far", BOTH,
      source="run.fwd_bwd_passes", metric=True),
    C("steps", I, "steps", "optimizer steps", metric=True),
    C("images_per_s", F, "images/s", "training throughput (summary: over the whole run)", BOTH,
      source="run.images_per_s", metric=True),
    C("peak_mem_mb", F, "MiB", "peak accelerator (CPU: resident) memory", metric=True),
    C("world_size", I, "", "processes of a data-parallel run (1: one process)",
      source="env.world_size"),
    C("per_device_batch", I, "images", "m of m-sharpness: the batch each perturbation sees",
      source="env.per_device_batch"),
    # environment
    C("torch_version", S, "", "torch's version"),
    C("device", S, "", "the device's name", source="env.device_name"),
    C("git_sha", S, "", "the commit the package ran from", source="env.git_sha"),
    C("hostname", S, "", "the host", source="env.hostname"),
    C("git_dirty", "boolean", "", "tracked files differed from git_sha when the run started",
      source="env.git_dirty"),
    C("cpu_model", S, "", "the CPU's model name", source="env.cpu_model"),
    C("cpu_capability", S, "", "the instruction set torch's CPU kernels use (e.g. AVX512)",
      source="env.cpu_capability"),
    C("gpu_name", S, "", "the GPU's name", source="env.gpu_name"),
    C("optimizer_file_sha256", S, "", "a `file.py:Class` optimizer's file, as it ran",
      source="env.optimizer_file_sha256"),
)
del C, F, I, S

PROBES_AFTER = "probe_f"  # the summary's sharpness-probe columns follow this one
PROBE_DTYPE = "Float64"  # probe_h_rho<r>: f(w + r g/||g||) - f(w) at the final weights, mean


def stat_columns() -> dict[str, str]:
    """Optimizer stat -> the history column of its epoch mean (h -> surrogate_gap)."""
    return {c.stat: c.name for c in SCHEMA if c.stat}


def history_row(values: Mapping[str, Any]) -> dict:
    """A metrics.jsonl row: every history column, from `values` (the epoch's measurements) or
    its `compute`, evaluated after the rest; null where there is no value."""
    row = {c.name: values.get(c.name) for c in SCHEMA if c.in_history and c.by == TRAINER}
    for c in SCHEMA:
        if c.compute is not None and c.in_history and c.by == TRAINER:
            row[c.name] = c.compute(row)
    return row


def summary_record(records: Mapping[str, Mapping[str, Any]]) -> dict:
    """summary.json: every summary column from its source record (null when absent), the
    sharpness probes of records["final"] after PROBES_AFTER."""
    out: dict = {}
    for c in SCHEMA:
        if not c.in_summary or c.by != TRAINER:
            continue
        record, key = c.summary_source
        out[c.name] = (records.get(record) or {}).get(key)
        if c.name == PROBES_AFTER:
            out.update({k: v for k, v in (records.get("final") or {}).items()
                        if k.startswith(PROBE_PREFIX)})
    return out


def is_probe(name: str) -> bool:
    """A sharpness-probe column (probe_h_rho<r>)."""
    return str(name).startswith(PROBE_PREFIX)


def columns(where: str) -> dict[str, str]:
    """name -> dtype of the columns in HISTORY or SUMMARY, in schema order."""
    return {c.name: c.dtype for c in SCHEMA
            if (c.in_history if where == HISTORY else c.in_summary)}


def metric_names() -> tuple[str, ...]:
    """The numeric result columns the report reads as float (probes are too: `is_probe`)."""
    return tuple(c.name for c in SCHEMA if c.metric)
