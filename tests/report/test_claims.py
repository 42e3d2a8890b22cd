"""The claims table: intervals and p-values against scipy.stats, verdicts from the interval,
no verdict below three seeds, and older parquet files without probe columns."""

import numpy as np
import pytest
from conftest import run, write_sweep
from scipy import stats

from gsam_repro.report import claims
from gsam_repro.report import stats as report_stats
from gsam_repro.report.load import load_sweep

ACC = {"sgd": [90.0, 91.0, 92.5], "sam": [90.5, 91.8, 92.0], "gsam": [94.0, 94.5, 95.5],
       "sgd2x": [96.0, 96.4, 96.2]}
H05 = {"sgd": [0.30, 0.33, 0.31], "sam": [0.10, 0.11, 0.12], "gsam": [0.20, 0.22, 0.21]}
H01 = {"sgd": [0.020, 0.021, 0.024], "sam": [0.010, 0.012, 0.011], "gsam": [0.006, 0.005, 0.007]}
EIG = {"sgd": [40.0, 42.0, 45.0], "sam": [20.0, 30.0, 25.0], "gsam": [19.0, 31.0, 24.0]}


def claim_rows(seeds: int = 3) -> list[dict]:
    rows = []
    for seed in range(seeds):
        for name in ("sgd", "sam", "gsam"):
            rows.append(run(name, ACC[name][seed], seed, hessian_max_eig=EIG[name][seed],
                            **{"probe_h_rho0.01": H01[name][seed],
                               "probe_h_rho0.05": H05[name][seed]}))
        rows.append(run("sgd", ACC["sgd2x"][seed], seed, schedule__epochs=6))
    return rows


def row_of(table, claim_text: str, a: str, b: str) -> tuple:
    return ("small_cnn", claim_text, a, b)


def test_welch_interval_and_p_match_scipy():
    a, b = [1.0, 2.0, 4.0, 3.5], [2.0, 5.0, 7.0]
    result = report_stats.welch(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert result.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert result.p == pytest.approx(expected.pvalue)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high))
    assert result.dof == pytest.approx(expected.df)
    assert not report_stats.welch(a[:2], b).tested  # n < 3: no test
    assert not report_stats.welch([1.0] * 3, [2.0] * 3).tested  # no spread: t undefined


def test_claims_rows_against_scipy_and_verdicts(sweep_dir):
    sweep = load_sweep(write_sweep(sweep_dir, claim_rows()))
    table = claims.claims_table(sweep, ["model.name"])
    cases = [  # claim text, A, B, a values, b values, expected verdict
        ("GSAM accuracy ≥ SAM's", "gsam", "sam", ACC["gsam"], ACC["sam"], "supported"),
        ("SAM accuracy ≥ SGD's", "sam", "sgd", ACC["sam"], ACC["sgd"],
         "not resolved at this n"),
        ("GSAM h(ρ=0.01) < SAM's", "gsam", "sam", H01["gsam"], H01["sam"], "supported"),
        ("GSAM h(ρ=0.05) < SAM's", "gsam", "sam", H05["gsam"], H05["sam"], "contradicted"),
        ("GSAM λ_max < SAM's", "gsam", "sam", EIG["gsam"], EIG["sam"],
         "not resolved at this n"),
        ("SAM accuracy ≥ compute-matched SGD's", "sam", "sgd 2× epochs", ACC["sam"],
         ACC["sgd2x"], "contradicted"),
    ]
    assert len(table.rows) == len(cases)
    for text, a_name, b_name, a, b, expected_verdict in cases:
        label = row_of(table, text, a_name, b_name)
        assert label in table.rows, (label, table.rows)
        expected = stats.ttest_ind(a, b, equal_var=False)
        interval = expected.confidence_interval(0.95)
        assert table.get(label, "Δ (A − B)").value == pytest.approx(np.mean(a) - np.mean(b))
        assert table.get(label, "CI low").value == pytest.approx(interval.low)
        assert table.get(label, "CI high").value == pytest.approx(interval.high)
        assert table.get(label, "p").value == pytest.approx(expected.pvalue)
        assert table.get(label, "n A").value == 3 and table.get(label, "n B").value == 3
        assert table.get(label, "verdict").text == expected_verdict, text
    markdown = table.to_markdown()
    assert "Welch–Satterthwaite" in markdown and "nan" not in markdown.lower()


def test_no_verdict_below_three_seeds(sweep_dir):
    table = claims.claims_table(load_sweep(write_sweep(sweep_dir, claim_rows(seeds=2))),
                                ["model.name"])
    verdicts = {table.get(label, "verdict").text for label in table.rows}
    assert verdicts == {"no verdict: n < 3"}
    label = row_of(table, "GSAM accuracy ≥ SAM's", "gsam", "sam")
    assert table.get(label, "p").text == "n/a" and table.get(label, "CI low").text == "n/a"
    assert table.get(label, "n A").value == 2


def test_several_settings_give_one_row_each_and_sam_adamw_pairs_with_adamw(sweep_dir):
    rows = [run("gsam", 90.0 + s + alpha, s, optimizer__alpha=alpha)
            for alpha in (0.1, 0.3) for s in range(3)]
    rows += [run("sam", 90.0 + s, s) for s in range(3)]
    rows += [run("sam", 80.0 + s, s, optimizer__base="adamw") for s in range(3)]
    rows += [run("adamw", 79.0 + s, s) for s in range(3)]
    table = claims.claims_table(load_sweep(write_sweep(sweep_dir, rows)), ["model.name"])
    gsam_rows = [r for r in table.rows if r[1] == "GSAM accuracy ≥ SAM's"]
    assert {r[2:] for r in gsam_rows} == {("gsam α=0.1", "sam"), ("gsam α=0.3", "sam")}
    sgd_rows = [r for r in table.rows if r[1] == "SAM accuracy ≥ SGD's"]
    assert [r[2:] for r in sgd_rows] == [("sam-adamw", "adamw")]  # no SGD runs: sam unpaired
    assert table.get(sgd_rows[0], "Δ (A − B)").value == pytest.approx(1.0)


def test_older_schema_leaves_claims_out_with_a_note(sweep_dir):
    rows = [run(n, 90.0 + s, s) for n in ("sgd", "sam", "gsam") for s in range(3)]
    write_sweep(sweep_dir, rows, drop=("hessian_max_eig", "schedule.epochs"))
    table = claims.claims_table(load_sweep(sweep_dir), ["model.name"])
    notes = " ".join(table.notes)
    assert "no probe_h_rho* columns (older schema)" in notes
    assert "'GSAM λ_max < SAM's' left out" in notes
    assert "compute-matched" in notes
    assert len(table.rows) == 2  # the two accuracy claims still render
