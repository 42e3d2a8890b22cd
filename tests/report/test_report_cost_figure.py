"""The accuracy-against-passes figure: its points are each method's total passes and accuracy
mean ± std over seeds, computed here independently; it is drawn only when passes differ."""

from __future__ import annotations

import statistics

import pytest
from conftest import run, write_sweep

from gsam_repro.report import cost_figure, figures
from gsam_repro.report.load import load_sweep

# (optimizer, extra settings, passes per step, accuracies over three seeds)
METHODS = [
    ("sgd", {}, 1.0, [90.0, 91.0, 92.5]),
    ("sam", {}, 2.0, [93.0, 93.5, 95.0]),
    ("sam", {"optimizer__every": 2}, 1.5, [92.0, 92.2, 92.9]),
    ("gsam", {"optimizer__looksam": 5}, 1.2, [91.0, 93.0, 94.0]),
]
STEPS = 40


def write(folder, methods=METHODS):
    rows = [run(name, acc, seed, passes_per_step=passes, steps=STEPS, **extra)
            for name, extra, passes, accs in methods for seed, acc in enumerate(accs)]
    return write_sweep(folder, rows)


def drawn_figure(monkeypatch, folder):
    kept = {}
    original = figures.save

    def keep(fig, out_dir, name):
        kept[name] = fig
        return original(fig, out_dir, name)

    monkeypatch.setattr(figures, "save", keep)
    files, note = cost_figure.accuracy_vs_passes(load_sweep(folder), ["model.name"],
                                                 folder / "report")
    return files, note, kept


def test_points_are_total_passes_and_accuracy_mean_and_std_over_seeds(sweep_dir, monkeypatch):
    write(sweep_dir)
    files, note, kept = drawn_figure(monkeypatch, sweep_dir)
    assert note is None
    assert sorted(f.name for f in files) == ["fig_accuracy_vs_passes.pdf",
                                             "fig_accuracy_vs_passes.png"]
    ax = kept["fig_accuracy_vs_passes"].axes[0]
    plotted = sorted((float(c.lines[0].get_xdata()[0]), float(c.lines[0].get_ydata()[0]))
                     for c in ax.containers)
    expected = sorted((passes * STEPS, statistics.mean(accs))
                      for _, _, passes, accs in METHODS)
    assert [x for x, _ in plotted] == [x for x, _ in expected]  # exact: passes x steps
    assert [y for _, y in plotted] == pytest.approx([y for _, y in expected], rel=1e-12)
    # the error bars span mean ± sample std over seeds
    spans = sorted(float(seg[1, 1] - seg[0, 1]) / 2 for c in ax.containers
                   for seg in c.lines[2][0].get_segments())
    assert spans == pytest.approx(sorted(statistics.stdev(accs) for *_, accs in METHODS),
                                  rel=1e-9)
    # one marker per method: distinguishable without colour
    markers = [c.lines[0].get_marker() for c in ax.containers]
    assert len(set(markers)) == len(METHODS)


def test_left_out_when_every_run_costs_the_same_passes(sweep_dir, monkeypatch):
    write(sweep_dir, [("sam", {}, 2.0, [93.0, 94.0]), ("gsam", {}, 2.0, [93.5, 94.5])])
    files, note, kept = drawn_figure(monkeypatch, sweep_dir)
    assert files == [] and not kept
    assert "fewer than two passes_per_step values" in note
