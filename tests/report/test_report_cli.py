"""`gsam-repro report` end to end on test-written parquet: files, figures, LaTeX that compiles,
options from spec.yaml, and bad input that renders what it can instead of a traceback."""

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import run, write_sweep

from gsam_repro.cli import main
from gsam_repro.results.gather import empty_runs

OPTIMIZERS = ("sgd", "sam", "gsam", "weighted")
PROBE_RHOS = (0.01, 0.05, 0.1)


def full_sweep(folder, seeds=3, probes=False):
    """Three seeds of four optimizers, an alpha grid, validation and Hessian values, history;
    with `probes`, the fixed-radius probe and provenance columns too."""
    rng = np.random.default_rng(0)
    rows, history = [], []
    for seed in range(seeds):
        for i, name in enumerate(OPTIMIZERS):
            for alpha in ((0.1, 0.3) if name == "gsam" else (None,)):
                extra = {"optimizer__alpha": alpha} if alpha is not None else {}
                acc = 90.0 + i + rng.normal(0, 0.3)
                if probes:
                    extra.update({f"probe_h_rho{r:g}": r * r * (10.0 - i + rng.normal(0, 0.2))
                                  for r in PROBE_RHOS})
                    extra["probe_f"] = 0.5 + 0.01 * i
                r = run(name, acc, seed, val_acc=acc - 1.0, hessian_max_eig=40.0 / (i + 1),
                        **extra)
                rows.append(r)
                for epoch in range(1, 4):
                    history.append({
                        "run_id": r["run_id"], "epoch": epoch, "test_acc": acc * epoch / 3,
                        "train_loss": 2.0 / epoch, "fwd_bwd_passes": r["fwd_bwd_passes"] * epoch,
                        "wall_s": 3.0 * epoch,
                        "surrogate_gap": None if name == "sgd" else 0.1 / epoch / (i + 1),
                        "rho": None if name == "sgd" else 0.05 / (1 + (name == "gsam") * epoch),
                    })
    return write_sweep(folder, rows, history)


def test_report_writes_tables_and_figures(sweep_dir, capsys):
    full_sweep(sweep_dir)
    assert main(["report", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "| model.name | sgd |" in out and "wrote" in out
    report = sweep_dir / "report"
    for name in ("comparison", "ablation_alpha", "gsam_vs_weighted", "selection", "cost"):
        for suffix in ("md", "tex", "csv"):
            assert (report / f"{name}.{suffix}").stat().st_size > 100
    figures = ["fig_accuracy_vs_alpha", "fig_training_curves", "fig_surrogate_gap",
               "fig_hessian_eigenvalue", "fig_accuracy_vs_hessian"]
    import matplotlib.image

    for name in figures:
        assert (report / f"{name}.pdf").stat().st_size > 5_000
        image = matplotlib.image.imread(report / f"{name}.png")
        assert image.shape[0] > 300 and image.shape[1] > 500
        assert image[..., :3].std() > 0.05  # drawn on, not blank
    index = (report / "report.md").read_text()
    assert "![fig_training_curves](fig_training_curves.png)" in index
    assert not list(report.glob(".*tmp*"))  # no temporary files left behind
    assert "failed (" not in index  # no builder fell back on its safety net
    csv = pd.read_csv(report / "comparison.csv")
    gsam = csv[csv["column"] == "gsam α=0.3"]
    assert gsam["n"].iloc[0] == 3


def compile_tables(paths, folder):
    """pdflatex each table alone in a default article (345 pt text width): (ok, log text)."""
    logs = []
    for number, path in enumerate(paths):
        document = folder / f"table{number}.tex"
        document.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n"
                            "\\usepackage{graphicx}\n\\begin{document}\n"
                            f"\\input{{{path}}}\n\\end{{document}}\n")
        result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                                 document.name], cwd=folder, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, (path.name, result.stdout[-2000:])
        logs.append((path.name, (folder / f"table{number}.log").read_text(errors="replace")))
    return logs


# A developer's machine may lack pdflatex; CI (.ci/run installs it) must run these, never skip.
NEEDS_PDFLATEX = pytest.mark.skipif(shutil.which("pdflatex") is None and not os.environ.get("CI"),
                                    reason="pdflatex not installed (CI installs it)")


@NEEDS_PDFLATEX
def test_latex_tables_compile_and_fit_the_text_width(sweep_dir, tmp_path):
    full_sweep(sweep_dir, probes=True)
    assert main(["report", str(sweep_dir), "--no-figures"]) == 0
    tex = sorted((sweep_dir / "report").glob("*.tex"))
    assert {"claims.tex", "probes.tex", "cost.tex", "comparison.tex"} <= {p.name for p in tex}
    for name, log in compile_tables(tex, tmp_path):
        assert "Overfull \\hbox" not in log, name
    assert "$f_p + \\lambda h$" in (sweep_dir / "report" / "gsam_vs_weighted.tex").read_text()


@NEEDS_PDFLATEX
def test_overfull_check_catches_a_wide_table(tmp_path):
    # the check above must be able to fail: the same wide tabular without the fitting box
    from gsam_repro.report.render import FIT_OPEN, Cell, Table

    table = Table("wide", "wide", ["row"], [])
    for number in range(14):
        table.set(("a",), f"column {number}", Cell(value=90.0 + number, std=0.5, n=3))
    wide = tmp_path / "wide.tex"
    wide.write_text(table.to_latex().replace(FIT_OPEN, "").replace("\\end{tabular}%\n}",
                                                                   "\\end{tabular}"))
    fitted = tmp_path / "fitted.tex"
    fitted.write_text(table.to_latex())
    logs = dict(compile_tables([wide, fitted], tmp_path))
    assert "Overfull \\hbox" in logs["wide.tex"]
    assert "Overfull \\hbox" not in logs["fitted.tex"]


def test_spec_options_and_command_line_override(sweep_dir, capsys):
    full_sweep(sweep_dir)
    assert main(["report", str(sweep_dir)]) == 0  # a full report first: its extra files go
    (sweep_dir / "spec.yaml").write_text("name: sweep\nreport:\n  rows: [data.name]\n"
                                         "  tables: [comparison, cost]\n  target: 60\n")
    assert main(["report", str(sweep_dir), "--no-figures"]) == 0
    assert "| data.name |" in capsys.readouterr().out
    assert not (sweep_dir / "report" / "selection.md").exists()
    assert not (sweep_dir / "report" / "fig_training_curves.png").exists()
    cost = pd.read_csv(sweep_dir / "report" / "cost.csv")
    assert set(cost.loc[cost["column"] == "target", "value"]) == {60.0}
    assert main(["report", str(sweep_dir), "--no-figures", "--target", "70"]) == 0
    cost = pd.read_csv(sweep_dir / "report" / "cost.csv")
    assert set(cost.loc[cost["column"] == "target", "value"]) == {70.0}
    (sweep_dir / "spec.yaml").write_text("report:\n  rowz: [data.name]\n")
    assert main(["report", str(sweep_dir)]) == 2
    assert "report.rowz: unknown key; did you mean rows?" in capsys.readouterr().err


def test_spec_path_resolves_to_its_sweep_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    full_sweep(tmp_path / "results" / "mysweep", seeds=1)
    spec = tmp_path / "mysweep.yaml"
    spec.write_text("name: mysweep\nbase: {model: {name: small_cnn}}\n"
                    "grid: {optimizer.name: [sgd]}\n")
    assert main(["report", str(spec), "--no-figures"]) == 0
    assert (tmp_path / "results" / "mysweep" / "report" / "comparison.md").is_file()


def test_command_line_knows_every_table():
    from gsam_repro.report.build import TABLES
    from gsam_repro.report.cli import TABLE_NAMES

    assert TABLE_NAMES == TABLES


# ------------------------------------------------------------------------------ bad input
def test_empty_parquet_says_so(sweep_dir, capsys):
    sweep_dir.mkdir(parents=True)
    empty_runs().to_parquet(sweep_dir / "runs.parquet", index=False)
    assert main(["report", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "holds no runs" in out and "no table could be rendered" in out
    assert "holds no runs" in (sweep_dir / "report" / "report.md").read_text()


def test_one_seed_shows_n_1_and_no_std(sweep_dir):
    full_sweep(sweep_dir, seeds=1)
    assert main(["report", str(sweep_dir)]) == 0
    text = (sweep_dir / "report" / "comparison.md").read_text()
    assert "(1)" in text and "nan" not in text.lower() and "±" not in text.split("\n\n")[1]
    assert "n/a" in text  # no t-test with one seed


def test_older_schema_without_columns_renders_what_it_can(sweep_dir, capsys):
    rows = [run(name, 90.0 + i, s) for i, name in enumerate(OPTIMIZERS) for s in range(3)]
    drop = ("status", "val_acc", "hessian_max_eig", "optimizer.adaptive", "optimizer.base",
            "schedule.epochs", "fwd_bwd_passes", "steps", "surrogate_gap")
    write_sweep(sweep_dir, rows, drop=drop)
    assert main(["report", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "| small_cnn |" in out
    assert "no status column" in out and "no history.parquet" in out
    assert "Hessian eigenvalue figure left out" in out


def test_missing_optimizer_name_is_a_note_not_a_traceback(sweep_dir, capsys):
    rows = [run(n, 90.0 + s, s, hessian_max_eig=3.0) for n in OPTIMIZERS for s in range(3)]
    write_sweep(sweep_dir, rows, [{"run_id": r["run_id"], "epoch": 1, "test_acc": 50.0}
                                  for r in rows], drop=("optimizer.name",))
    assert main(["report", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "no optimizer.name column" in out and "failed (" not in out


def test_missing_metric_column_is_a_note_not_a_traceback(sweep_dir, capsys):
    write_sweep(sweep_dir, [run("sgd", 90.0, 0)], drop=("test_acc",))
    assert main(["report", str(sweep_dir)]) == 0
    assert "no test_acc column" in capsys.readouterr().out


def test_not_done_runs_are_left_out_with_a_count(sweep_dir, capsys):
    rows = [run("sgd", 90.0, s) for s in range(2)]
    rows.append({**run("sam", None, 0), "status": "diverged"})
    rows.append({**run("gsam", None, 0), "status": "failed"})
    write_sweep(sweep_dir, rows)
    assert main(["report", str(sweep_dir), "--no-figures"]) == 0
    assert "2 of 4 runs not done and left out (1 diverged, 1 failed)" in capsys.readouterr().out


def test_user_mistakes_exit_2_with_one_line(sweep_dir, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such" in capsys.readouterr().err
    sweep_dir.mkdir(parents=True)
    assert main(["report", str(sweep_dir)]) == 2
    assert "gsam-repro gather" in capsys.readouterr().err
    full_sweep(sweep_dir, seeds=1)
    assert main(["report", str(sweep_dir), "--rows", "optimizer.rhoo"]) == 2
    assert "did you mean optimizer.rho" in capsys.readouterr().err


def test_compare_flag_adds_p_values_and_refuses_unknown_columns(sweep_dir, capsys):
    full_sweep(sweep_dir)
    assert main(["report", str(sweep_dir), "--no-figures", "--tables", "comparison",
                 "--compare", "weighted:sgd", "--compare", "gsam α=0.1:gsam α=0.3"]) == 0
    csv = pd.read_csv(sweep_dir / "report" / "comparison.csv")
    assert set(csv.loc[csv["column"].str.startswith("p ("), "column"]) == {
        "p (weighted vs sgd)", "p (gsam α=0.1 vs gsam α=0.3)"}
    assert main(["report", str(sweep_dir), "--compare", "gsam:sgd"]) == 2
    err = capsys.readouterr().err
    assert "'gsam' is not a column of the comparison table" in err and "gsam α=0.1" in err


def _outside_math(text: str) -> str:
    return "".join(part for i, part in enumerate(text.split("$")) if i % 2 == 0)


def test_figures_separate_in_grey_scale_with_math_labels(sweep_dir, monkeypatch):
    from matplotlib.text import Text

    from gsam_repro.report import figures

    drawn = {}
    original = figures.save

    def keep(fig, out_dir, name):
        drawn[name] = fig
        return original(fig, out_dir, name)

    monkeypatch.setattr(figures, "save", keep)
    full_sweep(sweep_dir, probes=True)
    assert main(["report", str(sweep_dir), "--tables", "comparison"]) == 0
    assert {"fig_training_curves", "fig_surrogate_gap", "fig_probe_h"} <= set(drawn)
    for name in ("fig_training_curves", "fig_surrogate_gap", "fig_probe_h",
                 "fig_accuracy_vs_alpha"):
        for ax in drawn[name].axes:
            lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
            lines += [bars.lines[0] for bars in ax.containers]  # error-bar plots
            styles = {(str(line.get_linestyle()), line.get_marker()) for line in lines}
            assert len(styles) == len(lines), name  # no two curves differ by colour alone
    texts = [t.get_text() for fig in drawn.values() for t in fig.findobj(Text) if t.get_text()]
    assert any(r"$\lambda_{\max}$" in t for t in texts)
    assert not any("_max" in _outside_math(t) or "f_p" in _outside_math(t) for t in texts)
    # the training-time h states the radius behind each curve
    legend = drawn["fig_surrogate_gap"].axes[0].get_legend().get_texts()
    legend = [t.get_text() for t in legend]
    assert legend and all(r"$\rho_t$" in t for t in legend)
    probe_legend = drawn["fig_probe_h"].axes[0].get_legend().get_texts()
    assert "sgd" in [t.get_text() for t in probe_legend]  # SGD has h(ρ) too
    assert len(drawn["fig_probe_h"].axes[0].containers) == 5  # sgd, sam, 2 gsam, weighted
    assert [t.get_text() for t in drawn["fig_probe_h"].axes[0].get_xticklabels()] == [
        "0.01", "0.05", "0.1"]


def test_report_names_mixed_commits_machines_and_dirty_trees(sweep_dir):
    shas = ["a" * 40, "b" * 40, "c" * 40]
    rows = [run(name, 90.0 + s, s, git_sha=shas[s], hostname="vm",
                cpu_model="Xeon" if s else "EPYC", git_dirty=(name == "sam" and s == 0))
            for name in ("sgd", "sam") for s in range(3)]
    write_sweep(sweep_dir, rows)
    assert main(["report", str(sweep_dir), "--no-figures", "--tables", "comparison"]) == 0
    index = (sweep_dir / "report" / "report.md").read_text()
    line = next(t for t in index.splitlines() if t.startswith("Provenance:"))
    assert "the 6 runs span 3 commits (aaaaaaa, bbbbbbb, ccccccc)" in line
    assert "2 machines (vm / EPYC; vm / Xeon)" in line and "1 runs from a dirty" in line

    same = [run(name, 90.0 + s, s, git_sha=shas[0], hostname="vm") for name in ("sgd", "sam")
            for s in range(3)]
    write_sweep(sweep_dir, same)  # today's schema: no git_dirty or cpu_model columns
    assert main(["report", str(sweep_dir), "--no-figures", "--tables", "comparison"]) == 0
    assert "Provenance:" not in (sweep_dir / "report" / "report.md").read_text()
