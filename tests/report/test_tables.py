"""Tables from parquet files written here with known values, checked against numpy, scipy and
hand computation."""

import math

import numpy as np
import pytest
from conftest import run, write_sweep
from scipy import stats

from gsam_repro.errors import UsageError
from gsam_repro.report import tables
from gsam_repro.report.load import load_sweep

SGD = [90.0, 91.0, 92.5]
SAM = [92.0, 92.5, 93.5]
GSAM = [94.0, 94.5, 95.5]


def comparison_rows():
    rows = []
    for seed, (a, b, c) in enumerate(zip(SGD, SAM, GSAM, strict=True)):
        rows += [run("sgd", a, seed), run("sam", b, seed), run("gsam", c, seed)]
        # compute-matched SGD: twice the SAM-family epochs
        rows.append(run("sgd", a + 0.5, seed, schedule__epochs=6))
    # a second model where formatted strings would sort wrongly ("9.50" > "10.20")
    rows += [run("sgd", 9.5, s, model__name="tiny") for s in range(2)]
    rows += [run("gsam", 10.2, 0, model__name="tiny")]
    return rows


def test_comparison_means_stds_bold_and_welch(sweep_dir):
    sweep = load_sweep(write_sweep(sweep_dir, comparison_rows()))
    table = tables.comparison(sweep, ["model.name"])
    assert table.columns[:4] == ["sgd", "sgd 2× epochs", "sam", "gsam"]
    row = ("small_cnn",)
    for column, values in (("sgd", SGD), ("sam", SAM), ("gsam", GSAM)):
        cell = table.get(row, column)
        assert cell.n == 3
        assert cell.value == pytest.approx(np.mean(values))
        assert cell.std == pytest.approx(np.std(values, ddof=1))
    assert table.get(row, "sgd 2× epochs").value == pytest.approx(np.mean(SGD) + 0.5)
    assert [c for c in table.columns if table.get(row, c) and table.get(row, c).bold] == ["gsam"]

    expected_p = stats.ttest_ind(GSAM, SAM, equal_var=False).pvalue
    p_cell = table.get(row, "p (gsam vs sam)")
    assert p_cell.value == pytest.approx(expected_p)
    assert (table.get(row, "gsam").mark == "†") == (expected_p < 0.05)
    assert expected_p < 0.05  # the data were chosen so the marker must show

    tiny = ("tiny",)
    assert table.get(tiny, "gsam").bold and not table.get(tiny, "sgd").bold
    assert table.get(tiny, "gsam").std is None and table.get(tiny, "gsam").n == 1
    assert any("compute-matched" in note for note in table.notes)

    markdown = table.to_markdown()
    assert "**94.67 ± 0.76 (3) †**" in markdown
    assert "10.20 (1)" in markdown and "nan" not in markdown.lower()


def test_welch_t_test_by_hand():
    a, b = [1.0, 2.0, 4.0], [2.0, 5.0, 7.0, 9.0]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    expected = 2 * stats.t.sf(abs(t), dof)
    assert tables.welch_p(a, b) == pytest.approx(expected)
    assert tables.welch_p(a[:2], b) is None  # n < 3: no test


def test_no_marker_without_three_seeds(sweep_dir):
    rows = [run("sam", 90.0 + s, s) for s in range(2)] + [run("gsam", 99.0 + s, s)
                                                           for s in range(2)]
    table = tables.comparison(load_sweep(write_sweep(sweep_dir, rows)), ["model.name"])
    assert table.get(("small_cnn",), "gsam").mark == ""
    assert table.get(("small_cnn",), "p (gsam vs sam)").text == "n/a"


def test_table1_paper_beside_ours_with_deltas(sweep_dir):
    vanilla, sam, gsam = [76.1, 76.3], [77.0, 77.4, 77.2], [77.0, 77.1, 77.8]
    imagenet = {"model__name": "resnet50", "data__name": "imagefolder"}
    rows = [run("sgd", v, s, **imagenet) for s, v in enumerate(vanilla)]
    rows += [run("sam", v, s, **imagenet) for s, v in enumerate(sam)]
    rows += [run("gsam", v, s, optimizer__rho_max=0.04, optimizer__rho_min=0.02,
                 optimizer__alpha=0.01, **imagenet) for s, v in enumerate(gsam)]
    rows += [run("gsam", 50.0, 0, model__name="small_cnn", data__name="imagefolder")]
    rows += [run("gsam", 99.0, 0, model__name="resnet50", data__name="cifar10")]
    table = tables.table1(load_sweep(write_sweep(sweep_dir, rows)))
    assert any("1 runs on other data than ImageNet" in n for n in table.notes)
    row = ("resnet50",)
    assert table.get(row, "vanilla paper").value == 76.0
    assert table.get(row, "vanilla Δ").value == pytest.approx(np.mean(vanilla) - 76.0)
    assert table.get(row, "sam Δ").value == pytest.approx(np.mean(sam) - 76.9)
    assert table.get(row, "gsam Δ").value == pytest.approx(np.mean(gsam) - 77.2)
    assert table.get(row, "gsam ours").bold  # 77.30 beats 77.20 on the numbers
    assert not table.get(row, "sam ours").bold
    assert not any("Table 4 uses" in n for n in table.notes)  # our GSAM matches Table 4
    assert table.get(("small_cnn",), "gsam paper").value is None
    assert any("no paper number for small_cnn" in n for n in table.notes)
    assert "+0.10" in table.to_markdown()  # gsam: 77.30 - 77.2


def test_ablation_over_alpha_and_rho(sweep_dir):
    values = {0.1: [90.0, 90.4], 0.3: [91.0, 91.6], 0.6: [89.0, 89.2]}
    rows = [run("gsam", acc, s, optimizer__alpha=alpha)
            for alpha, accs in values.items() for s, acc in enumerate(accs)]
    rows += [run("sam", 88.0 + rho * 10, s, optimizer__rho=rho)
             for rho in (0.05, 0.1) for s in range(2)]
    sweep = load_sweep(write_sweep(sweep_dir, rows))
    alpha = tables.ablation(sweep, "alpha", ["model.name"])
    assert alpha.rows == [(0.1,), (0.3,), (0.6,)]
    for value, accs in values.items():
        assert alpha.get((value,), "gsam").value == pytest.approx(np.mean(accs))
    assert alpha.get((0.3,), "gsam").bold and not alpha.get((0.1,), "gsam").bold
    rho = tables.ablation(sweep, "rho", ["model.name"])
    assert rho.get((0.1,), "sam").value == pytest.approx(89.0)
    # GSAM's alphas stay apart (never pooled): one column each
    assert rho.get((0.05,), "gsam α=0.3").value == pytest.approx(np.mean(values[0.3]))
    assert rho.get((0.05,), "gsam") is None


def test_gsam_vs_weighted_at_matched_lambda(sweep_dir):
    gsam = [91.0, 91.5, 92.0]
    weighted = [90.0, 90.2, 90.1]
    rows = [run("gsam", v, s, optimizer__alpha=0.3) for s, v in enumerate(gsam)]
    rows += [run("weighted", v, s, optimizer__lam=0.3) for s, v in enumerate(weighted)]
    rows += [run("weighted", 99.0, 0, optimizer__lam=0.9)]  # no GSAM at alpha 0.9: not shown
    table = tables.gsam_vs_weighted(load_sweep(write_sweep(sweep_dir, rows)), ["model.name"])
    assert table.rows == [("small_cnn", 0.05, 0.3)]
    label = table.rows[0]
    assert table.get(label, "Δ (GSAM − f_p + λh)").value == pytest.approx(
        np.mean(gsam) - np.mean(weighted))
    assert table.get(label, "p").value == pytest.approx(
        stats.ttest_ind(gsam, weighted, equal_var=False).pvalue)
    assert table.get(label, "GSAM").bold


def test_selection_picks_on_validation_and_reports_test(sweep_dir):
    # alpha 0.1 has the better test accuracy, alpha 0.3 the better validation accuracy
    rows = [run("gsam", 95.0, s, optimizer__alpha=0.1, val_acc=80.0 + s) for s in range(2)]
    rows += [run("gsam", 85.0 + s, s, optimizer__alpha=0.3, val_acc=82.0 + s) for s in range(2)]
    rows += [run("sgd", 80.0, s, val_acc=70.0) for s in range(2)]
    table = tables.selection(load_sweep(write_sweep(sweep_dir, rows)), ["model.name"])
    label = ("small_cnn", "gsam")
    assert table.get(label, "selected setting").text == "α=0.3"
    assert table.get(label, "test_acc").value == pytest.approx(85.5)
    assert table.get(label, "settings tried").value == 2
    refused = tables.selection(load_sweep(sweep_dir), ["model.name"], select_on="test_acc")
    assert refused.empty and "not honest" in refused.notes[0]


def test_cost_to_target_from_history(sweep_dir):
    sgd, sam = run("sgd", 90.0, 0), run("sam", 95.0, 0)
    history = []
    for r, passes, accs in ((sgd, 100, [50.0, 70.0, 90.0]), (sam, 200, [60.0, 80.0, 95.0])):
        for epoch, acc in enumerate(accs, 1):
            history.append({"run_id": r["run_id"], "epoch": epoch, "test_acc": acc,
                            "fwd_bwd_passes": passes * epoch, "wall_s": 2.0 * epoch})
    sweep = load_sweep(write_sweep(sweep_dir, [sgd, sam], history))
    table = tables.cost(sweep, ["model.name"], target=80.0)
    assert table.get(("small_cnn", "sgd"), "passes to target").value == 300  # epoch 3
    assert table.get(("small_cnn", "sam"), "passes to target").value == 400  # epoch 2
    assert table.get(("small_cnn", "sam"), "wall to target (s)").value == 4.0
    assert table.get(("small_cnn", "sam"), "passes / step").value == 2.0
    assert table.get(("small_cnn", "sgd"), "reached").text == "1/1"
    missed = tables.cost(sweep, ["model.name"], target=92.0)
    assert missed.get(("small_cnn", "sgd"), "passes to target").text == "not reached"
    # default target: the lower of the two runs' best accuracies, 90.0
    default = tables.cost(sweep, ["model.name"])
    assert default.get(("small_cnn", "sgd"), "target").value == 90.0


def test_cifar10_wrn_errors_beside_the_published_ones(sweep_dir):
    accs = [97.4, 97.6, 97.5]
    cifar = {"model__name": "wrn16_8", "data__name": "cifar10"}
    rows = [run("gsam", a, s, **cifar) for s, a in enumerate(accs)]
    rows += [run("sam", 97.0, s, optimizer__adaptive="asam", **cifar) for s in range(2)]
    table = tables.cifar10_paper(load_sweep(write_sweep(sweep_dir, rows)))
    row = ("wrn16_8",)
    error = 100.0 - np.mean(accs)
    assert table.get(row, "gsam ours").value == pytest.approx(error)
    assert table.get(row, "gsam Δ").value == pytest.approx(error - 2.45)
    assert table.get(row, "asam Δ").value == pytest.approx(3.0 - 2.55)
    assert table.get(row, "gsam ours").bold  # lower error is better
    assert table.get(row, "sgd paper").value == 3.20 and table.get(row, "sgd ours") is None


def test_rho_ablation_keeps_rho_min_that_follows_rho_max_in_one_column(sweep_dir):
    rows = [run("gsam", 90.0 + 10 * rho + s, s, optimizer__rho_max=rho,
                optimizer__rho_min=rho / 2) for rho in (0.05, 0.1) for s in range(2)]
    table = tables.ablation(load_sweep(write_sweep(sweep_dir, rows)), "rho", ["model.name"])
    assert table.columns == ["gsam"]
    assert table.get((0.1,), "gsam").value == pytest.approx(91.5)
    assert any("ρ_min changes with ρ" in n for n in table.notes)


def test_default_comparisons_use_the_best_baseline_of_each_family(sweep_dir):
    rows = [run("sam", 90.0 + s, s, optimizer__rho=0.05) for s in range(3)]
    rows += [run("sam", 92.0 + s, s, optimizer__rho=0.1) for s in range(3)]
    rows += [run("gsam", 93.0 + s * 1.5, s) for s in range(3)]
    rows += [run("sgd", 80.0 + s, s) for s in range(3)]
    rows += [run("lion", 81.0 + s * 0.5, s) for s in range(3)]  # a user's plain optimizer
    table = tables.comparison(load_sweep(write_sweep(sweep_dir, rows)), ["model.name"])
    p_columns = [c for c in table.columns if c.startswith("p (")]
    assert p_columns == ["p (lion vs sgd)", "p (gsam vs sam ρ=0.1)"]
    row = ("small_cnn",)
    gsam = [93.0 + s * 1.5 for s in range(3)]
    assert table.get(row, "p (gsam vs sam ρ=0.1)").value == pytest.approx(
        stats.ttest_ind(gsam, [92.0, 93.0, 94.0], equal_var=False).pvalue)
    assert any("best-mean baseline of its family" in n for n in table.notes)


def test_named_pairs_replace_the_default_ones(sweep_dir):
    sweep = load_sweep(write_sweep(sweep_dir, comparison_rows()))
    table = tables.comparison(sweep, ["model.name"], compare=[("sgd 2× epochs", "sam")])
    assert [c for c in table.columns if c.startswith("p (")] == ["p (sgd 2× epochs vs sam)"]
    expected = stats.ttest_ind([a + 0.5 for a in SGD], SAM, equal_var=False).pvalue
    assert table.get(("small_cnn",), "p (sgd 2× epochs vs sam)").value == pytest.approx(expected)
    columns = tables.comparison_columns(sweep, ["model.name"])
    with pytest.raises(UsageError, match="'gsan' is not a column.*did you mean 'gsam'"):
        tables.check_pairs([("gsan", "sam")], columns)
    with pytest.raises(UsageError, match="expected two optimizer columns"):
        tables.parse_pair("gsam")


def test_cost_totals_over_the_runs_that_reached_the_target(sweep_dir):
    # results/cifar10-cpu's weighted row: the fast seed never reached the target, so medians
    # over different runs put the time to target (392 s) above the total (384 s)
    rows = [run("weighted", 62.0 + s, s, wall_s=wall) for s, wall in
            enumerate((380.0, 384.0, 414.0))]
    history = []
    for r, best in zip(rows, (62.0, 63.0, 64.0), strict=True):
        for epoch in (1, 2):
            history.append({"run_id": r["run_id"], "epoch": epoch,
                            "fwd_bwd_passes": 30 * epoch, "test_acc": best - 5 * (2 - epoch),
                            "wall_s": r["wall_s"] / 2 * epoch - 4})
    table = tables.cost(load_sweep(write_sweep(sweep_dir, rows, history)), ["model.name"],
                        target=62.5)
    label = ("small_cnn", "weighted")
    assert table.get(label, "reached").text == "2/3"
    assert table.get(label, "wall to target (s)").value == pytest.approx((380 + 410) / 2)
    assert table.get(label, "total wall (s)").value == pytest.approx((384 + 414) / 2)
    assert table.get(label, "wall to target (s)").value <= table.get(label, "total wall (s)").value
    assert table.get(label, "final test_acc").n == 3  # accuracy stays over every run
    assert any("medians over the same runs" in note for note in table.notes)


def test_outcomes_table_shows_each_recorded_outcome_per_method(sweep_dir):
    rows = [run(name, 40.0 + seed, seed=seed, test_acc_at_best_val=45.0 + 2 * seed,
                memorized_pct=mem + seed, train_acc=99.0)
            for name, mem in (("sgd", 90.0), ("sam", 20.0)) for seed in range(3)]
    sweep = load_sweep(write_sweep(sweep_dir, rows))
    table = tables.outcomes(sweep, ["model.name"])
    assert table.columns == ["sgd", "sam"]
    memorised = table.get(("small_cnn", "flipped labels memorised (%)"), "sam")
    assert memorised.value == pytest.approx(21.0) and memorised.n == 3
    assert memorised.std == pytest.approx(np.std([20.0, 21.0, 22.0], ddof=1))
    best = table.get(("small_cnn", "test acc at best val epoch (%)"), "sgd")
    assert best.value == pytest.approx(47.0)
    # Outcomes no run recorded get no row.
    labels = [label[-1] for label in table.rows]
    assert "λ_max" not in labels and "flipped images predicted clean (%)" not in labels
