"""`gsam-repro bench train`: training throughput of the real loop, SGD beside GSAM.

Runs the trainer's own epoch function (gsam_repro.train.loop.train_epoch) over the first N
batches of a real data set, SGD and GSAM interleaved in every repeat, medians reported:

- images a second for each optimizer, and their ratio SGD / GSAM (GSAM does two forward and
  backward passes a step, so about 2.0; more is overhead outside the passes), as the median of
  the ratios within each repeat, so a shared machine's changing load cancels out;
- the fraction of training time spent waiting for the next batch (target under 5 %);
- one plain forward+backward on a fixed batch, the floor both optimizers stand on;
- how long the data take to decode the first time and to load from the cache afterwards.

Default data: the CIFAR-10 JPEG copy as an ImageFolder tree (`--root`); `--quick` uses small
synthetic data so a test can run it in seconds. Writes JSON (default
results/benchmarks/train.json) with the exact command in it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gsam_repro.errors import UsageError

DEFAULT_ROOT = "../shared/data/cifar10-jpeg"
DEFAULT_OUTPUT = "results/benchmarks/train.json"
OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "gsam": {"name": "gsam", "base": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
             "rho_max": 0.1, "rho_min": 0.02, "alpha": 0.2},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=DEFAULT_ROOT,
                        help=f"ImageFolder tree with train/ and test/ ({DEFAULT_ROOT})")
    parser.add_argument("--model", default="small_cnn", help="model name (small_cnn)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (128)")
    parser.add_argument("--steps", type=int, default=None,
                        help="measured steps per repeat and optimizer (10; quick 3)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="unmeasured steps before each measurement (2; quick 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats (15; quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--augment", default="cifar", choices=("none", "cifar", "inception"))
    parser.add_argument("--skip-cold", action="store_true",
                        help="do not time a first decode into an empty cache")
    parser.add_argument("--quick", action="store_true",
                        help="synthetic data, a few steps: a smoke run in seconds")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"JSON path ({DEFAULT_OUTPUT})")


def _config(args: argparse.Namespace, optimizer: dict, cache_dir: str | None):
    from gsam_repro.train.config import config_from_dict

    if args.quick:
        data = {"name": "synthetic", "train_size": 256, "test_size": 64, "image_size": 16,
                "batch_size": 32}
    else:
        data = {"name": "imagefolder", "root": args.root, "batch_size": args.batch_size,
                "cache_dir": cache_dir}
    data["augment"] = args.augment
    return config_from_dict({
        "data": data,
        "model": {"name": args.model},
        "optimizer": optimizer,
        "schedule": {"epochs": 1},
        "train": {"threads": args.threads, "device": args.device, "precision": args.precision,
                  "channels_last": args.channels_last, "compile": args.compile,
                  "log_every": 10**9},
    })


def _time_data(args: argparse.Namespace, cache_dir: str | None) -> dict[str, Any]:
    """Seconds to build the data the first time (decode into an empty cache) and again."""
    import torch

    from gsam_repro.data import build_data

    config = _config(args, OPTIMIZERS["sgd"], cache_dir)
    result: dict[str, Any] = {}
    if not args.quick and not args.skip_cold:
        with tempfile.TemporaryDirectory() as empty_cache:
            cold = _config(args, OPTIMIZERS["sgd"], empty_cache)
            start = time.perf_counter()
            build_data(cold.data, seed=0, device=torch.device("cpu"))
            result["cold_decode_s"] = time.perf_counter() - start
    build_data(config.data, seed=0, device=torch.device("cpu"))  # make sure the cache exists
    start = time.perf_counter()
    bundle = build_data(config.data, seed=0, device=torch.device("cpu"))
    result["warm_load_s"] = time.perf_counter() - start
    result["train_images"] = bundle.train_examples
    result["loader"] = bundle.loader
    return result


def _fwd_bwd_ms(parts, repeats: int) -> float:
    """Median milliseconds of one plain forward+backward on a fixed training batch."""
    import torch

    x, y = next(iter(parts.data.train))
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        with parts.autocast():
            loss = parts.criterion(parts.forward(x), y)
        loss.backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        parts.model.zero_grad(set_to_none=True)
    return 1000 * statistics.median(times[2:])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build both runs, then alternate SGD and GSAM measurements; medians per optimizer."""
    import torch

    from gsam_repro.train import loop

    quick = args.quick
    steps = args.steps or (3 if quick else 10)
    warmup = args.warmup_steps if args.warmup_steps is not None else (1 if quick else 2)
    repeats = args.repeats or (1 if quick else 15)
    if min(steps, repeats) < 1 or warmup < 0:
        raise UsageError("--steps and --repeats must be at least 1, --warmup-steps at least 0")
    if not quick and not Path(args.root, "train").is_dir():
        raise UsageError(f"--root: {args.root} has no train/ folder (the CIFAR-10 JPEG copy is "
                         f"at {DEFAULT_ROOT} from the project root)")
    cache_dir = None
    data = _time_data(args, cache_dir)

    runs, settings = {}, {}
    for name, optimizer in OPTIMIZERS.items():
        config = _config(args, optimizer, cache_dir)
        device = loop.resolve_device(config.train.device)
        settings[name] = loop.torch_settings(config, device)
        settings[name].__enter__()
        parts = loop.build(config, device)
        runs[name] = (config, parts)
    samples: dict[str, list[dict]] = {name: [] for name in runs}
    try:
        fwd_bwd = _fwd_bwd_ms(runs["sgd"][1], repeats=max(5, repeats))
        epoch = 0
        for _ in range(repeats):
            for name, (config, parts) in runs.items():
                counters = loop.Counters()
                epoch += 1
                if warmup:
                    parts.data.train.max_batches = warmup
                    loop.train_epoch(parts, config, epoch, counters)
                parts.data.train.max_batches = steps
                row = loop.train_epoch(parts, config, epoch + 1000, counters)
                if row.get("diverged"):
                    raise RuntimeError(f"{name} diverged during the benchmark")
                samples[name].append({
                    "images_per_s": row["images_per_s"],
                    "data_wait_frac": row["data_s"] / row["train_s"],
                    "step_ms": 1000 * row["train_s"] / steps,
                    "passes_per_step": counters.fwd_bwd_passes / counters.steps,
                })
    finally:
        for context in settings.values():
            context.__exit__(None, None, None)

    results = {}
    for name, rows in samples.items():
        results[name] = {
            key: statistics.median(row[key] for row in rows) for key in rows[0]
        } | {"images_per_s_all": [round(row["images_per_s"], 1) for row in rows]}
    # Each repeat measures SGD and then GSAM seconds apart, so their ratio within a repeat is
    # robust to the load of a shared machine drifting between repeats.
    pair_ratios = [a["images_per_s"] / b["images_per_s"]
                   for a, b in zip(samples["sgd"], samples["gsam"], strict=True)]
    config, parts = runs["sgd"]
    device = parts.device
    return {
        "benchmark": "train",
        "command": "gsam-repro bench train " + " ".join(sys.argv[3:] if
                                                        sys.argv[1:3] == ["bench", "train"]
                                                        else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "device": str(device),
            "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else platform.processor() or platform.machine()),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "load_average_1min": os.getloadavg()[0],
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "torch": torch.__version__,
        },
        "settings": {
            "data": "synthetic (quick)" if quick else f"CIFAR-10 (JPEG copy) at {args.root}",
            "model": args.model, "batch_size": config.data.batch_size, "augment": args.augment,
            "precision": args.precision, "channels_last": args.channels_last,
            "compile": args.compile, "steps": steps, "warmup_steps": warmup, "repeats": repeats,
            "optimizers": OPTIMIZERS,
        },
        "data": data,
        "fwd_bwd_ms": fwd_bwd,
        "results": results,
        "sgd_over_gsam_throughput": statistics.median(pair_ratios),
        "sgd_over_gsam_throughput_all": [round(r, 3) for r in pair_ratios],
        "sgd_over_gsam_of_medians": (results["sgd"]["images_per_s"]
                                     / results["gsam"]["images_per_s"]),
        "targets": {"data_wait_frac": "< 0.05", "sgd_over_gsam_throughput": "about 2.0, <= 2.1"},
    }


def run(args: argparse.Namespace) -> int:
    from gsam_repro.train import passive_cpu_threads

    passive_cpu_threads()
    from gsam_repro.fsio import atomic_write_text

    report = measure(args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, json.dumps(report, indent=2) + "\n")
    machine = report["machine"]
    print(f"bench train: {report['settings']['data']}, {report['settings']['model']}, batch "
          f"{report['settings']['batch_size']}, {machine['device_name']} "
          f"({machine['torch_threads']} threads, load {machine['load_average_1min']:.2f})")
    for key, value in report["data"].items():
        if key.endswith("_s"):
            print(f"  data {key}: {value:.2f}")
    print(f"  plain forward+backward: {report['fwd_bwd_ms']:.1f} ms a batch")
    for name, result in report["results"].items():
        print(f"  {name:5s} {result['images_per_s']:8.0f} images/s  step "
              f"{result['step_ms']:7.1f} ms  data wait {100 * result['data_wait_frac']:4.1f} %  "
              f"({result['passes_per_step']:.0f} passes a step)")
    print(f"  SGD / GSAM throughput: {report['sgd_over_gsam_throughput']:.3f} (median of "
          f"{len(report['sgd_over_gsam_throughput_all'])} side-by-side pairs; target about 2.0, "
          f"<= 2.1)")
    print(f"  written to {output}")
    return 0
