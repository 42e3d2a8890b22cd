"""The report of a `tune:` sweep: budget per method, best-so-far curve, and a final table from
the confirmation seeds only (trials never enter it), from parquet files written here."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run, write_sweep
from test_report_cli import NEEDS_PDFLATEX, compile_tables

from gsam_repro.report import tuning
from gsam_repro.report.build import ReportOptions, build
from gsam_repro.report.load import load_sweep

# validation score of each trial, in trial order; "sam" has one diverged trial (index 1)
TRIALS = {"sgd": [80.0, 84.0, 82.0], "sam": [83.0, None, 86.0]}
LRS = {"sgd": [0.01, 0.1, 0.03], "sam": [0.05, 0.2, 0.1]}
# test accuracy of the confirmation seeds of each method's chosen trial
FINAL = {"sgd": [90.0, 91.0, 92.0], "sam": [93.0, 93.5, 94.5]}


def tuned_rows() -> list[dict]:
    rows = []
    for method, scores in TRIALS.items():
        for k, score in enumerate(scores):
            rows.append(run(method, 99.0, seed=0, optimizer__lr=LRS[method][k],
                            best_val_acc=score, status="done" if score is not None else
                            "diverged", tuning__method=method, tuning__phase="trial",
                            tuning__trial=k))
        chosen = LRS[method][int(np.nanargmax(np.array(scores, dtype=float)))]
        for seed, acc in enumerate(FINAL[method], start=1):
            rows.append(run(method, acc, seed=seed, optimizer__lr=chosen, best_val_acc=70.0,
                            tuning__method=method, tuning__phase="confirm"))
    return rows


@pytest.fixture
def tuned(sweep_dir):
    write_sweep(sweep_dir, tuned_rows())
    (sweep_dir / "spec.yaml").write_text("name: t\ntune:\n  trials: 3\n  metric: best_val_acc\n"
                                         "  final_seeds: [1, 2, 3]\n")
    return sweep_dir


def test_budget_curve_and_final_table_from_confirmation_seeds_only(tuned):
    sweep = load_sweep(tuned)
    tables = tuning.tune_tables(sweep)
    budget = tables["tune_budget"]
    for method in ("sgd", "sam"):
        assert budget.get((method,), "trials run").value == 3  # the diverged trial counts
        assert budget.get((method,), "trials allowed").value == 3
    assert budget.get(("sgd",), "chosen trial").value == 1
    assert budget.get(("sam",), "chosen trial").value == 2
    curve = tables["tune_curve"]
    assert [curve.get((k,), "sgd").value for k in (1, 2, 3)] == [80.0, 84.0, 84.0]
    assert [curve.get((k,), "sam").value for k in (1, 2, 3)] == [83.0, 83.0, 86.0]
    final = tables["tune_final"]
    for method, values in FINAL.items():
        cell = final.get((method,), "test acc (%)")
        assert cell.n == 3  # three confirmation seeds, none of the trials (test acc 99)
        assert cell.value == pytest.approx(np.mean(values))
        assert cell.std == pytest.approx(np.std(values, ddof=1))
    assert final.get(("sam",), "chosen setting").text == "lr=0.1"
    assert final.get(("sam",), "test acc (%)").bold


def test_the_report_lists_the_tuning_tables_and_keeps_trials_out_of_the_rest(tuned):
    report = build(tuned, ReportOptions(figures=True))
    names = [t.name for t in report.tables]
    assert {"tune_budget", "tune_curve", "tune_final"} <= set(names)
    comparison = next(t for t in report.tables if t.name == "comparison")
    for method, values in FINAL.items():  # the trials' test acc of 99 would show otherwise
        cell = comparison.get(("small_cnn",), method)
        assert cell.n == 3 and cell.value == pytest.approx(np.mean(values))
    assert (tuned / "report" / "fig_tuning.png").is_file()
    assert (tuned / "report" / "tune_final.tex").is_file()
    index = (tuned / "report" / "report.md").read_text()
    assert "3 trials per method" in index and "6 trial runs, 6 confirmation runs" in index


def test_a_sweep_without_tune_runs_gets_no_tuning_tables(sweep_dir):
    write_sweep(sweep_dir, [run("sgd", 90.0, s) for s in range(3)])
    report = build(sweep_dir, ReportOptions(figures=False))
    assert not {t.name for t in report.tables} & set(tuning.TUNE_TABLES)


@NEEDS_PDFLATEX
def test_tuning_latex_tables_compile_and_fit_the_text_width(tuned, tmp_path):
    build(tuned, ReportOptions(figures=False, tables=list(tuning.TUNE_TABLES)))
    tex = sorted((tuned / "report").glob("tune_*.tex"))
    assert len(tex) == 3
    for name, log in compile_tables(tex, tmp_path):
        assert "Overfull \\hbox" not in log, name
