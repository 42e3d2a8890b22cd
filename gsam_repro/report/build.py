"""Assemble a sweep's report: pick the tables and figures its data allows, write them into
SWEEP_DIR/report/, and collect what was left out and why.

Options come from, in rising priority: defaults, the `report:` mapping of SWEEP_DIR/spec.yaml,
and the command line. Keys: rows, tables, target, target_metric, select_on, dataset, metric,
figures, compare.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsam_repro.errors import ConfigError, UsageError
from gsam_repro.report import claims, paper, probes, tables, tuning
from gsam_repro.report import figures as figs
from gsam_repro.report.load import Sweep, load_sweep
from gsam_repro.report.provenance import provenance_line, stale_line
from gsam_repro.report.render import Table, write_text

TABLES = ("comparison", "table1", "cifar10_wrn16_8", "claims", "outcomes", "probes",
          "ablation_alpha", "ablation_rho", "gsam_vs_weighted", "selection", "cost",
          *tuning.TUNE_TABLES)
OPTION_KEYS = ("rows", "tables", "target", "target_metric", "select_on", "dataset", "metric",
               "figures", "compare")


@dataclass
class ReportOptions:
    """What to render. `tables` None means every table the data supports."""

    rows: list[str] | None = None
    tables: list[str] | None = None
    target: float | None = None
    target_metric: str = "test_acc"
    select_on: str = "val_acc"
    dataset: str = "imagenet"
    metric: str = "test_acc"
    figures: bool = True
    compare: list[str] | None = None  # "A:B" pairs of comparison-table columns

    def update(self, values: dict[str, Any], source: str) -> None:
        """Apply a mapping of options (from spec.yaml's `report:` or the command line)."""
        for key, value in values.items():
            if key not in OPTION_KEYS:
                hint = difflib.get_close_matches(str(key), OPTION_KEYS, n=1)
                extra = f"; did you mean {hint[0]}?" if hint else \
                    f" (valid: {', '.join(OPTION_KEYS)})"
                raise ConfigError(f"report.{key}", f"unknown key{extra}", source=source)
            if value is None:
                continue
            if key in ("rows", "tables", "compare"):
                value = [value] if isinstance(value, str) else list(value)
            if key == "tables":
                for name in value:
                    if name not in TABLES:
                        hint = difflib.get_close_matches(str(name), TABLES, n=1)
                        extra = f"; did you mean {hint[0]}?" if hint else ""
                        raise ConfigError("report.tables", f"unknown table {name!r} (valid: "
                                          f"{', '.join(TABLES)}){extra}", source=source)
            if key == "target":
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise ConfigError("report.target", f"expected a number, got {value!r}",
                                      source=source) from None
            if key == "dataset" and value not in paper.TABLE1_DATASETS:
                raise ConfigError("report.dataset", f"{value!r} is not one of "
                                  f"{', '.join(paper.TABLE1_DATASETS)}", source=source)
            setattr(self, key, value)


@dataclass
class Report:
    """What a report run produced."""

    out_dir: Path
    tables: list[Table] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    main: Table | None = None


def spec_options(sweep_dir: Path) -> dict[str, Any]:
    """The `report:` mapping of SWEEP_DIR/spec.yaml, if there is one."""
    from gsam_repro.yamlio import load_yaml

    spec = sweep_dir / "spec.yaml"
    if not spec.is_file():
        return {}
    tree, _ = load_yaml(spec)
    report = (tree or {}).get("report") if isinstance(tree, dict) else None
    if report is None:
        return {}
    if not isinstance(report, dict):
        raise ConfigError("report", f"expected a mapping, got {report!r}", source=str(spec))
    return report


def default_rows(sweep: Sweep) -> list[str]:
    """model.name, plus data.name when the sweep has more than one data set."""
    df = sweep.done
    rows = [k for k in ("model.name",) if k in df.columns]
    if "data.name" in df.columns and df["data.name"].nunique(dropna=False) > 1:
        rows.insert(0, "data.name")
    return rows


def _check_rows(sweep: Sweep, rows: list[str]) -> None:
    columns = list(sweep.runs.columns)
    for key in rows:
        if key not in columns:
            if sweep.runs.empty:
                continue
            hint = difflib.get_close_matches(key, columns, n=1)
            extra = f"; did you mean {hint[0]}?" if hint else ""
            raise UsageError(f"rows: {key!r} is not a column of runs.parquet{extra}")


def _wanted(sweep: Sweep, options: ReportOptions) -> list[str]:
    if options.tables is not None:
        return list(options.tables)
    df = sweep.done
    wanted = ["comparison"]
    if "model.name" in df.columns:
        imagenet, _ = tables.imagenet_runs(df)
        if {paper.model_key(m) for m in imagenet["model.name"].dropna()} & set(paper.models()):
            wanted.insert(0, "table1")
        keys = {paper.model_key(m) for m in df["model.name"].dropna().unique()}
        if "wrn16_8" in keys:
            wanted.append("cifar10_wrn16_8")
    wanted += ["claims", "outcomes", "probes", "ablation_alpha", "ablation_rho", "gsam_vs_weighted",
               "selection", "cost"]
    return wanted


def build(sweep_dir: str | Path, options: ReportOptions | None = None,
          out_dir: str | Path | None = None) -> Report:
    """Render every requested table and figure of a sweep into out_dir (SWEEP_DIR/report/)."""
    sweep_dir = Path(sweep_dir)
    sweep = load_sweep(sweep_dir)
    full = sweep  # a tune: sweep's other tables see its confirmation runs only, never trials
    sweep = tuning.confirmation_only(full)
    options = options or ReportOptions()
    rows = options.rows if options.rows is not None else default_rows(sweep)
    _check_rows(sweep, rows)
    compare = [tables.parse_pair(text) for text in options.compare or []]
    if compare:
        tables.check_pairs(compare, tables.comparison_columns(sweep, rows))
    out = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir=out, left_out=list(sweep.notes))
    requested = options.tables is not None
    metric = options.metric
    builders = {
        "comparison": lambda: tables.comparison(sweep, rows, metric, compare),
        "claims": lambda: claims.claims_table(sweep, rows, metric),
        "outcomes": lambda: tables.outcomes(sweep, rows),
        "probes": lambda: probes.probe_table(sweep, rows),
        "table1": lambda: tables.table1(sweep, options.dataset, metric, options.select_on),
        "cifar10_wrn16_8": lambda: tables.cifar10_paper(sweep, metric),
        "ablation_alpha": lambda: tables.ablation(sweep, "alpha", rows, metric),
        "ablation_rho": lambda: tables.ablation(sweep, "rho", rows, metric),
        "gsam_vs_weighted": lambda: tables.gsam_vs_weighted(sweep, rows, metric),
        "selection": lambda: tables.selection(sweep, rows, options.select_on, metric),
        "cost": lambda: tables.cost(sweep, rows, options.target, options.target_metric),
        **{name: (lambda name=name: tuning.tune_tables(full, metric)[name])
           for name in tuning.TUNE_TABLES},
    }
    wanted = _wanted(sweep, options)
    if options.tables is None and tuning.is_tuned(full):
        wanted[1:1] = list(tuning.TUNE_TABLES)  # after the main table
    for name in wanted:
        try:
            table = builders[name]()
        except Exception as err:  # odd data must not cost the rest of the report
            report.left_out.append(f"{name} failed ({type(err).__name__}: {err}); please report "
                                   "it with the parquet files")
            continue
        if table.empty:
            if requested or name in ("comparison", "table1"):
                report.left_out += table.notes or [f"{name}: nothing to show"]
            else:
                report.left_out += [n for n in table.notes if "left out" in n]
            continue
        report.tables.append(table)
        report.files += table.write(out)
    report.main = next((t for t in report.tables if t.name in ("table1", "comparison")), None)
    figure_files: list[Path] = []
    if options.figures and not sweep.done.empty:
        figure_files, notes = figs.all_figures(sweep, rows, out)
        tune_files, tune_note = tuning.tune_figure(full, tuning.budget(full.path), out)
        figure_files += tune_files
        report.files += figure_files
        report.left_out += notes + ([tune_note] if tune_note else [])
    report.files.append(_write_index(full, report, figure_files, out))
    _remove_stale(out, report.files)
    return report


def _remove_stale(out: Path, written: list[Path]) -> None:
    """Delete tables and figures an earlier report wrote that this one did not (a table whose
    data is gone must not linger beside the new ones). Only our own file names are touched."""
    keep = {path.name for path in written}
    ours = [f"{name}.{suffix}" for name in TABLES for suffix in ("md", "tex", "csv")]
    ours += [path.name for path in out.glob("fig_*.png")] + [p.name for p in out.glob("fig_*.pdf")]
    for name in ours:
        if name not in keep:
            (out / name).unlink(missing_ok=True)


def _write_index(sweep: Sweep, report: Report, figure_files: list[Path], out: Path) -> Path:
    total, done = len(sweep.runs), len(sweep.done)
    lines = [f"# Report: {sweep.name}", "",
             f"From `{sweep.path / 'runs.parquet'}`: {total} runs, {done} done"
             + ("; with history.parquet." if sweep.history is not None else
                "; no history.parquet."), "",
             "Accuracies in percent; cells are mean ± std (number of seeds). Bold: the best "
             "mean, chosen on the numbers. Tables also as LaTeX (booktabs) and CSV beside this "
             "file.", ""]
    for line in reversed([x for x in (provenance_line(sweep.done), stale_line(sweep.done))
                          if x]):
        lines[4:4] = [line, ""]
    if tuning.is_tuned(sweep):
        lines[4:4] = [tuning.summary_line(sweep), ""]
    for table in report.tables:
        lines.append(table.to_markdown())
        lines.append("")
    pngs = [f for f in figure_files if f.suffix == ".png"]
    if pngs:
        lines += ["## Figures", ""]
        lines += [f"![{f.stem}]({f.name})" for f in pngs]
        lines.append("")
    if report.left_out:
        lines += ["## Left out", ""]
        lines += [f"- {note}" for note in report.left_out]
        lines.append("")
    return write_text(out / "report.md", "\n".join(lines))
