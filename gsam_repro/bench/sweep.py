"""`gsam-repro bench sweep`: how fast specs expand, status reads and gather runs at scale, and
how much a small local sweep costs beyond its runs.

Part `scale` (issue 4): expand a 100,000-run grid in <= 2 s; `sweep plan` / `sweep status` over
1,000 existing run directories in <= 1 s; gather 5,000 run directories in <= 10 s from scratch
and <= 1 s when nothing changed. Run directories are written by hand in a temporary folder, the
way the trainer writes them (config.yaml, metrics.jsonl with 10 epochs, summary.json). Figures
are medians over repeats.

Part `small` (issue 14): a local sweep of 12 short runs (about 5 s each on one thread), through
the warm-worker pool and through one process a run; the overhead ratio is the sweep's wall time
over the sum of its runs' own times (summary.json wall_s) divided by the parallelism; target
<= 1.3 for the pool. Part `demo`: `gsam-repro demo` in a new process, end to end; target 60 s.

JSON goes to results/benchmarks/sweep.json; a run of some parts keeps the other parts' figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The four optimizers every benchmark spec below compares, and the base two of them share.
FOUR_OPTIMIZERS_GRID = """grid:
  optimizer:
    - {name: sgd}
    - {name: sam, rho: 0.05}
    - {name: gsam, rho_max: 0.05, rho_min: 0.01, alpha: 0.1}
    - {name: weighted, rho: 0.05, lam: 0.1}
"""
FOUR_OPTIMIZERS = """
base:
  data: {name: synthetic, train_size: 256}
  model: {name: small_cnn}
  optimizer: {lr: 0.1, momentum: 0.9}
""" + FOUR_OPTIMIZERS_GRID

EXPAND_SPEC = """
name: bench-expand
max_runs: 200000
"""+FOUR_OPTIMIZERS+"""  optimizer.lr: [0.2, 0.1, 0.08, 0.05, 0.03, 0.02, 0.01, 0.008, 0.005, 0.003]
  optimizer.weight_decay: [0.0, 1.0e-5, 3.0e-5, 1.0e-4, 3.0e-4, 5.0e-4, 1.0e-3, 2.0e-3,
                           3.0e-3, 5.0e-3]
  train.label_smoothing: [0.0, 0.05, 0.1, 0.15, 0.2]
seeds: {seeds}
"""  # 4 x 10 x 10 x 5 x seeds runs

STATUS_SPEC = """
name: bench-status
"""+FOUR_OPTIMIZERS+"""  optimizer.lr: {lrs}
seeds: 10
"""  # 4 x len(lrs) x 10 runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=3, help="repeats per figure (median)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the target sizes (e.g. 0.01 for a quick check)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/sweep.json"),
                        help="where the JSON goes")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to measure (default: all)")
    parser.add_argument("--small-runs", type=int, default=12,
                        help="runs in the small sweep (part small)")
    parser.add_argument("--max-parallel", type=int, default=2,
                        help="parallelism of the small sweep and the demo")


def _median_time(fn, repeats: int, setup=None) -> list[float]:
    times = []
    for _ in range(repeats):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def write_run_dirs(sweep_dir: Path, sweep, epochs: int = 10) -> None:
    """Run directories for every run of an expanded sweep, as a finished trainer leaves them
    (every 20th failed, every 20th unfinished)."""
    import yaml

    from gsam_repro.train import rundir

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    runs_dir = sweep_dir / rundir.RUNS
    runs_dir.mkdir(parents=True, exist_ok=True)
    for i, run in enumerate(sweep.runs):
        run_dir = runs_dir / run.name
        run_dir.mkdir()
        tree = sweep.tree(run)
        (run_dir / rundir.CONFIG).write_text(
            f"{rundir.RUN_ID_HEADER}{run.run_id}\n"
            + yaml.dump(tree, Dumper=dumper, sort_keys=False))
        rows = [{"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_acc": 5.0 * e,
                 "test_loss": 2.1 / e, "test_acc": 4.0 * e, "epoch_s": 1.0, "wall_s": 1.0 * e,
                 "fwd_bwd_passes": 100 * e} for e in range(1, epochs + 1)]
        (run_dir / rundir.METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
        if i % 20 == 1:
            rundir.write_failed(run_dir, "RuntimeError: boom")
        elif i % 20 != 2:
            (run_dir / rundir.SUMMARY).write_text(json.dumps({
                "run_id": run.run_id, "status": "done", "epochs_completed": epochs,
                "test_acc": rows[-1]["test_acc"], "test_loss": rows[-1]["test_loss"],
                "train_loss": rows[-1]["train_loss"], "wall_s": rows[-1]["wall_s"],
                "fwd_bwd_passes": rows[-1]["fwd_bwd_passes"], "torch_version": "2.x",
                "device": "cpu", "git_sha": "0" * 40, "hostname": "bench"}))


PARTS = ("scale", "small", "demo")
# 4 optimizers x seeds, on synthetic images; the train size sets a run's length (about 5 s at
# 4608 on one thread of a busy 2-core machine)
SMALL_SPEC = """
name: bench-small
base:
  data: {name: synthetic, train_size: {train}, test_size: 256, image_size: 16, batch_size: 64}
  model: {name: small_cnn}
  optimizer: {lr: 0.05, momentum: 0.9}
  schedule: {epochs: 3}  # runs of about 5 s on 2 quiet CPU cores: the size the target is for
  train: {threads: 1}
""" + FOUR_OPTIMIZERS_GRID + """seeds: {seeds}
"""


def small_sweep(tmp: Path, mode: str, runs: int, scale: float, parallel: int) -> dict:
    """One small local sweep through `mode` (pool | process): wall time against its runs'."""
    from gsam_repro.cli import main as cli_main

    spec = tmp / f"small-{mode}.yaml"
    seeds = max(1, math.ceil(runs / 4))
    spec.write_text(SMALL_SPEC.replace("{train}", str(max(64, round(4608 * scale))))
                    .replace("{seeds}", str(seeds)))
    out = tmp / f"small-{mode}"
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["sweep", "run", str(spec), "--out", str(out), "--local-mode", mode,
                         "--max-parallel", str(parallel)])
    elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"the small sweep ({mode}) failed; see {out}")
    run_s = [json.loads(p.read_text())["wall_s"] for p in out.glob("runs/*/summary.json")]
    ideal = sum(run_s) / parallel
    return {"median_s": elapsed, "repeats_s": [elapsed], "size": len(run_s),
            "run_s_sum": sum(run_s), "run_s_mean": sum(run_s) / len(run_s), "parallel": parallel,
            "overhead_ratio": elapsed / ideal,
            "what": f"`sweep run --local-mode {mode} --max-parallel {parallel}` of {len(run_s)} "
                    "short runs, in process; overhead_ratio = wall / (sum of run wall_s / "
                    "parallel)"}


def run(args: argparse.Namespace) -> int:
    import pandas  # imported before any timing: the figures are the work, not the imports
    import pyarrow

    repeats = max(1, args.repeats)
    figures: dict[str, dict] = {}
    load_before = os.getloadavg()[0]

    def record(name: str, times: list[float], target: float, size: int, what: str) -> None:
        figures[name] = {"median_s": statistics.median(times), "repeats_s": times,
                         "target_s": target, "size": size, "what": what}
        status = "ok" if statistics.median(times) <= target else "OVER TARGET"
        print(f"{name:<22} {statistics.median(times):8.3f} s  (target {target:g} s, "
              f"{size:,} runs, {status})", flush=True)

    with tempfile.TemporaryDirectory(prefix="gsam-bench-sweep-") as tmp:
        tmp = Path(tmp)
        if "scale" in args.parts:
            scale_figures(tmp, args, repeats, record)
        if "small" in args.parts:
            for mode, target in (("pool", 1.3), ("process", None)):
                figure = small_sweep(tmp, mode, args.small_runs, args.scale, args.max_parallel)
                figure["target_ratio"] = target
                figures[f"small_sweep_{mode}"] = figure
                verdict = "" if target is None else (
                    ", ok" if figure["overhead_ratio"] <= target else ", OVER TARGET")
                print(f"small_sweep_{mode:<10} {figure['median_s']:8.3f} s  ({figure['size']} "
                      f"runs of {figure['run_s_mean']:.1f} s, {figure['parallel']} at once: "
                      f"overhead ratio {figure['overhead_ratio']:.2f}"
                      + (f", target {target:g}" if target else "") + f"{verdict})", flush=True)
        if "demo" in args.parts:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gsam_repro", "demo", "--out",
                            str(tmp / "demo"), "--max-parallel", str(args.max_parallel)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            run_s = [json.loads(p.read_text())["wall_s"]
                     for p in (tmp / "demo").glob("runs/*/summary.json")]
            record("demo", [elapsed], 60.0, len(run_s),
                   "`gsam-repro demo` in a new process: toy, 12 runs, gather, report; "
                   "overhead_ratio = wall / (sum of run wall_s / parallel)")
            figures["demo"].update(run_s_sum=sum(run_s), parallel=args.max_parallel,
                                   overhead_ratio=elapsed / (sum(run_s) / args.max_parallel))
            print(f"demo: runs {sum(run_s):.1f} s in all, overhead ratio "
                  f"{figures['demo']['overhead_ratio']:.2f}", flush=True)

    previous = {}
    if args.out.is_file() and set(args.parts) != set(PARTS):
        previous = json.loads(args.out.read_text()).get("figures", {})
    out = {
        "benchmark": "sweep",
        "command": "gsam-repro bench sweep " + " ".join(sys.argv[3:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "pandas": pandas.__version__,
                    "pyarrow": pyarrow.__version__,
                    "load_average_1min": [load_before, os.getloadavg()[0]]},  # shared CPUs
        "repeats": repeats,
        "scale": args.scale,
        "parts": args.parts,
        "figures": {**previous, **figures},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from gsam_repro.fsio import atomic_write_json

    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


def scale_figures(tmp: Path, args: argparse.Namespace, repeats: int, record) -> None:
    """Part `scale`: expand, plan/status and gather at the sizes of the module docstring."""
    from gsam_repro.cli import main as cli_main
    from gsam_repro.results.gather import gather
    from gsam_repro.sweep.plan import expand
    from gsam_repro.sweep.spec import load_spec

    tmp = Path(tmp)
    seeds = max(1, round(50 * args.scale))
    expand_spec = tmp / "expand.yaml"
    expand_spec.write_text(EXPAND_SPEC.replace("{seeds}", str(seeds)))
    size = len(expand(load_spec(expand_spec), yes=True).runs)
    times = _median_time(lambda: expand(load_spec(expand_spec), yes=True), repeats)
    record("expand", times, 2.0, size, "load_spec + expand (every run checked, ids, names)")

    lrs = [round(0.2 / (k + 1), 6) for k in range(max(1, round(25 * args.scale)))]
    status_spec = tmp / "status.yaml"
    status_spec.write_text(STATUS_SPEC.replace("{lrs}", json.dumps(lrs)))
    status_dir = tmp / "status-sweep"
    sweep = expand(load_spec(status_spec))
    write_run_dirs(status_dir, sweep)

    def command(action: str):
        def go():
            with contextlib.redirect_stdout(io.StringIO()):
                code = cli_main(["sweep", action, str(status_spec), "--out", str(status_dir)])
            assert code == 0
        return go

    for action in ("plan", "status"):
        record(f"{action}", _median_time(command(action), repeats), 1.0, len(sweep.runs),
               f"`gsam-repro sweep {action}` over existing run directories, in process")

    def command_cli(action: str):
        def go():
            subprocess.run([sys.executable, "-m", "gsam_repro", "sweep", action,
                            str(status_spec), "--out", str(status_dir)], check=True,
                           stdout=subprocess.DEVNULL)
        return go

    for action in ("plan", "status"):
        record(f"{action}_cli", _median_time(command_cli(action), repeats), 1.0,
               len(sweep.runs), f"`gsam-repro sweep {action}` as a new process")

    gather_spec = tmp / "gather.yaml"
    lrs = [round(0.2 / (k + 1), 6) for k in range(max(1, round(125 * args.scale)))]
    gather_spec.write_text(STATUS_SPEC.replace("{lrs}", json.dumps(lrs))
                           .replace("bench-status", "bench-gather"))
    gather_dir = tmp / "gather-sweep"
    sweep = expand(load_spec(gather_spec))
    write_run_dirs(gather_dir, sweep)

    def scratch():
        for name in ("runs.parquet", "history.parquet", ".gather.json"):
            (gather_dir / name).unlink(missing_ok=True)

    record("gather_scratch", _median_time(lambda: gather(gather_dir), repeats, scratch),
           10.0, len(sweep.runs), "gather with no previous gather (10 epochs a run)")
    record("gather_unchanged", _median_time(lambda: gather(gather_dir), repeats), 1.0,
           len(sweep.runs), "gather again, nothing changed")

    def gather_cli(*extra: str):
        def go():
            subprocess.run([sys.executable, "-m", "gsam_repro", "gather", str(gather_dir),
                            *extra], check=True, stdout=subprocess.DEVNULL)
        return go

    record("gather_cli_scratch", _median_time(gather_cli("--full"), repeats), 10.0,
           len(sweep.runs), "`gsam-repro gather --full` as a new process (imports included)")
    record("gather_cli_unchanged", _median_time(gather_cli(), repeats), 1.0,
           len(sweep.runs), "`gsam-repro gather` as a new process, nothing changed")
