"""The run-output schema (gsam_repro.train.outputs) is the one place a metric is added: the
trainer's files, gather's parquet and the report's tables all follow it."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_testkit import read_json, read_metrics, smoke_tree

from gsam_repro.optim import STAT_NAMES
from gsam_repro.results import schema
from gsam_repro.train import config_from_dict, outputs, run


def test_every_optimizer_stat_has_one_history_column():
    columns = outputs.stat_columns()
    assert set(columns) == set(STAT_NAMES)
    assert columns["h"] == "surrogate_gap"
    assert all(schema.history_columns()[c] == "Float64" for c in columns.values())


def test_names_are_unique_and_dtypes_known():
    names = [c.name for c in outputs.SCHEMA]
    assert len(names) == len(set(names))
    assert {c.dtype for c in outputs.SCHEMA} <= {"Float64", "Int64", "string", "boolean"}
    assert {c.where for c in outputs.SCHEMA} <= {outputs.HISTORY, outputs.SUMMARY, outputs.BOTH}
    records = {"run", "last", "last_eval", "final", "optimizer", "env"}
    assert {c.summary_source[0] for c in outputs.SCHEMA if c.in_summary} <= records


def test_summary_values_come_from_their_records():
    records = {"run": {"run_id": "abc", "wall_s": 9.0}, "last": {"train_loss": 1.5, "wall_s": 7.0},
               "last_eval": {"test_acc": 40.0}, "final": {"probe_f": 2.0, "probe_h_rho0.05": 0.1},
               "env": {"device_name": "cpu (x86_64)", "device": "cpu"}}
    summary = outputs.summary_record(records)
    assert summary["run_id"] == "abc" and summary["train_loss"] == 1.5
    assert summary["wall_s"] == 9.0  # the run's, with the end-of-training time, not the epoch's
    assert summary["test_acc"] == 40.0 and summary["device"] == "cpu (x86_64)"
    assert summary["probe_h_rho0.05"] == 0.1 and summary["hessian_max_eig"] is None
    keys = list(summary)
    assert keys.index("probe_h_rho0.05") == keys.index("probe_f") + 1
    assert not {"sweep", "run_dir", "error"} & set(summary)  # gather's, not the trainer's


def _loss_gap(row: dict) -> float | None:
    """The test metric: computed from the epoch's other values, as the schema allows."""
    if row["test_loss"] is None:
        return None
    return row["test_loss"] - row["train_loss"]


def test_a_metric_added_to_the_schema_reaches_summary_parquet_and_a_table(tmp_path, monkeypatch):
    import pandas as pd

    from gsam_repro.report import tables
    from gsam_repro.report.load import load_sweep
    from gsam_repro.results.gather import gather

    added = outputs.Column("loss_gap", "Float64", "nats", "test loss minus training loss",
                           outputs.BOTH, compute=_loss_gap, metric=True)
    monkeypatch.setattr(outputs, "SCHEMA", (*outputs.SCHEMA, added))  # the only change

    run_dir = tmp_path / "runs" / "r"
    summary = run(config_from_dict(smoke_tree(schedule={"epochs": 1})), run_dir)
    (row,) = read_metrics(run_dir)
    expected = row["test_loss"] - row["train_loss"]
    assert row["loss_gap"] == pytest.approx(expected)
    assert summary["loss_gap"] == pytest.approx(expected)
    assert read_json(run_dir / "summary.json")["loss_gap"] == pytest.approx(expected)

    gather(tmp_path)
    history = pd.read_parquet(tmp_path / "history.parquet")
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert str(history["loss_gap"].dtype) == "Float64" and str(runs["loss_gap"].dtype) == "Float64"
    assert history.loc[0, "loss_gap"] == pytest.approx(expected)
    assert runs.loc[0, "loss_gap"] == pytest.approx(expected)

    table = tables.comparison(load_sweep(tmp_path), ["data.name"], metric="loss_gap")
    (cell,) = [c for c in table.cells.values() if c.value is not None]
    assert cell.value == pytest.approx(expected) and cell.n == 1


def test_every_schema_column_is_documented():
    """The docs name every output column (the trainer's in docs/training.md, gather's in
    docs/sweeps.md), so adding a Column without a word for users fails here."""
    docs = Path(__file__).parents[2] / "docs"
    text = (docs / "training.md").read_text() + (docs / "sweeps.md").read_text()
    missing = [c.name for c in outputs.SCHEMA if f"`{c.name}`" not in text]
    assert not missing, f"docs/training.md and docs/sweeps.md do not name {missing}"
