"""`gsam-repro bench report`: how long `gsam-repro report` takes as a sweep grows.

Writes synthetic runs.parquet / history.parquet with the real column contract at several sizes
(runs x epochs), times the tables alone and tables plus figures (median of repeats, each in a
fresh output folder), prints the figures and writes results/benchmarks/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from gsam_repro.fsio import atomic_write_text

OPTIMIZERS = ("sgd", "sam", "gsam", "weighted")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000],
                        help="runs per synthetic sweep (default 100 1000 10000)")
    parser.add_argument("--epochs", type=int, default=10, help="history rows a run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results/benchmarks/report.json")


def synthetic_sweep(folder: Path, runs: int, epochs: int) -> None:
    """`runs` finished runs: 4 optimizers x 5 alphas (GSAM) x seeds, 2 models, with history."""
    import numpy as np

    from gsam_repro.results.gather import frame, run_columns
    from gsam_repro.results.schema import HISTORY_COLUMNS

    rng = np.random.default_rng(0)
    rows, history = [], []
    for i in range(runs):
        name = OPTIMIZERS[i % 4]
        run_id = f"r{i:06d}"
        acc = 90.0 + (i % 4) * 0.3 + rng.normal(0, 0.5)
        row = {"run_id": run_id, "sweep": "bench", "status": "done", "seed": i // 40,
               "model.name": ("small_cnn", "resnet18_cifar")[(i // 4) % 2],
               "data.name": "synthetic", "optimizer.name": name, "schedule.epochs": epochs,
               "test_acc": acc, "val_acc": acc - 1, "hessian_max_eig": 30 + rng.normal(0, 3),
               "steps": 100 * epochs, "fwd_bwd_passes": (200 if name != "sgd" else 100) * epochs,
               "wall_s": 5.0 * epochs}
        if name == "gsam":
            row.update({"optimizer.alpha": (0.01, 0.05, 0.1, 0.3, 0.6)[(i // 8) % 5],
                        "optimizer.rho_max": 0.05, "optimizer.rho_min": 0.05})
        elif name in ("sam", "weighted"):
            row["optimizer.rho"] = 0.05
            if name == "weighted":
                row["optimizer.lam"] = 0.3
        rows.append(row)
        for epoch in range(1, epochs + 1):
            history.append({"run_id": run_id, "sweep": "bench", "epoch": epoch,
                            "test_acc": acc * epoch / epochs, "train_loss": 2.0 / epoch,
                            "surrogate_gap": 0.1 / epoch if name != "sgd" else None,
                            "fwd_bwd_passes": row["fwd_bwd_passes"] * epoch // epochs,
                            "wall_s": 5.0 * epoch})
    folder.mkdir(parents=True, exist_ok=True)
    frame(rows, run_columns()).to_parquet(folder / "runs.parquet", index=False)
    frame(history, HISTORY_COLUMNS).to_parquet(folder / "history.parquet", index=False)


def time_report(folder: Path, figures: bool, repeats: int) -> list[float]:
    from gsam_repro.report.build import ReportOptions, build

    times = []
    for repeat in range(repeats):
        options = ReportOptions(figures=figures)
        start = time.perf_counter()
        build(folder, options, out_dir=folder / f"report-{int(figures)}-{repeat}")
        times.append(time.perf_counter() - start)
    return times


def run(args: argparse.Namespace) -> int:
    import torch  # noqa: F401  (imported by the CLI anyway; keep its import out of the timing)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        warmup = Path(tmp) / "warmup"  # imports (scipy, matplotlib) stay out of the timings
        synthetic_sweep(warmup, 8, 2)
        time_report(warmup, True, 1)
        for size in args.sizes:
            folder = Path(tmp) / f"sweep{size}"
            synthetic_sweep(folder, size, args.epochs)
            tables_only = time_report(folder, False, args.repeats)
            with_figures = time_report(folder, True, args.repeats)
            entry = {"runs": size, "history_rows": size * args.epochs,
                     "tables_s_median": statistics.median(tables_only),
                     "tables_and_figures_s_median": statistics.median(with_figures),
                     "tables_s": tables_only, "tables_and_figures_s": with_figures}
            results.append(entry)
            print(f"{size:>6} runs, {size * args.epochs:>7} history rows: tables "
                  f"{entry['tables_s_median']:.2f} s, tables + figures "
                  f"{entry['tables_and_figures_s_median']:.2f} s "
                  f"(median of {args.repeats})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "report", "repeats": args.repeats, "epochs": args.epochs,
              "machine": platform.platform(), "cpus": os.cpu_count(),
              "load_avg_1min": os.getloadavg()[0], "results": results}
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
