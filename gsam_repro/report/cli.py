"""`gsam-repro report SWEEP_DIR_OR_SPEC`: tables (Markdown, LaTeX, CSV) and figures (PNG, PDF)
from a sweep's runs.parquet / history.parquet, written into SWEEP_DIR/report/."""

from __future__ import annotations

import argparse
from pathlib import Path

from gsam_repro.errors import UsageError

# The same names as gsam_repro.report.build.TABLES (a test keeps them equal); repeated here so
# that `--help` does not import pandas.
TABLE_NAMES = ("comparison", "table1", "cifar10_wrn16_8", "claims", "outcomes", "probes",
               "ablation_alpha", "ablation_rho", "gsam_vs_weighted", "selection", "cost",
               "tune_budget", "tune_curve", "tune_final")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", metavar="SWEEP_DIR_OR_SPEC",
                        help="a sweep directory holding runs.parquet, or the sweep's .yaml spec")
    parser.add_argument("--out", metavar="DIR", help="output folder (default SWEEP_DIR/report)")
    parser.add_argument("--rows", nargs="+", metavar="KEY",
                        help="config keys that label the rows (default: model.name, plus "
                        "data.name when it varies)")
    parser.add_argument("--tables", nargs="+", metavar="NAME", choices=TABLE_NAMES,
                        help=f"only these tables ({', '.join(TABLE_NAMES)}); default: every "
                        "table the data supports")
    parser.add_argument("--target", type=float, metavar="ACC",
                        help="target accuracy (%%) for the cost table (default: the lowest "
                        "per-optimizer median of each run's best)")
    parser.add_argument("--target-metric", metavar="COLUMN",
                        help="history column the target applies to (default test_acc)")
    parser.add_argument("--select-on", metavar="COLUMN",
                        help="validation column for honest selection (default val_acc)")
    parser.add_argument("--dataset", metavar="NAME",
                        help="paper Table 1 column beside ours (default imagenet)")
    parser.add_argument("--metric", metavar="COLUMN",
                        help="accuracy column the tables report (default test_acc)")
    parser.add_argument("--compare", action="append", metavar="A:B",
                        help="add Welch's t-test of column A against column B of the comparison "
                        "table, named as there ('gsam α=0.1:sam'); repeatable (default: each "
                        "method against the best baseline of its family)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")


def resolve_sweep_dir(path: str) -> Path:
    """A sweep directory as given, or the directory a .yaml spec's runs live in."""
    target = Path(path)
    if target.suffix in (".yaml", ".yml"):
        if not target.is_file():
            raise UsageError(f"{target}: no such file")
        try:
            from gsam_repro.sweep.spec import sweep_dir
        except ImportError:
            sweep_dir = None
        if sweep_dir is not None:
            return Path(sweep_dir(target))
        from gsam_repro.yamlio import load_yaml

        tree, _ = load_yaml(target)
        name = tree.get("name") if isinstance(tree, dict) else None
        if not name:
            raise UsageError(f"{target}: the spec has no name")
        return Path("results") / str(name)
    return target


def run(args: argparse.Namespace) -> int:
    from gsam_repro.report.build import ReportOptions, build, spec_options

    sweep_dir = resolve_sweep_dir(args.sweep)
    if not sweep_dir.is_dir():
        raise UsageError(f"{sweep_dir}: no such sweep directory")
    options = ReportOptions()
    options.update(spec_options(sweep_dir), source=str(sweep_dir / "spec.yaml"))
    flags = {
        "rows": args.rows, "tables": args.tables, "target": args.target,
        "target_metric": args.target_metric, "select_on": args.select_on,
        "dataset": args.dataset, "metric": args.metric, "compare": args.compare,
    }
    options.update({k: v for k, v in flags.items() if v is not None}, source="command line")
    if args.no_figures:
        options.figures = False
    report = build(sweep_dir, options, out_dir=args.out)
    if report.main is not None:
        print(report.main.to_markdown())
    else:
        print("no table could be rendered from this sweep")
    if report.left_out:
        print("left out:")
        for note in report.left_out:
            print(f"  - {note}")
    print(f"wrote {len(report.files)} files to {report.out_dir} "
          f"({len(report.tables)} tables; index: {report.out_dir / 'report.md'})")
    return 0
