"""`gsam-repro bench optim`: what the SAM family costs on top of SGD, measured side by side.

Three figures per optimizer (SGD, SAM, GSAM, the f_p + lam*h baseline), all from one run with
the optimizers interleaved in every repeat; medians are the figures, and the same figures from
the fastest repeats are reported beside them (other work on a shared machine only adds time):

- vector work: the optimizer's own arithmetic per million parameters. The closure copies stored
  gradients (no forward/backward), so vector work = step time - passes x closure time - the base
  SGD update. Also expressed in "passes": one read or write of every parameter, measured as a
  third of an in-place add. GSAM's step needs 11 in principle (8 reads, 3 writes), but 3 of its
  reads are by reductions (||g||, <g, g_p>), which read memory more slowly than elementwise ops
  on a CPU: `one_reduction_read` measures one such read (a global norm of the gradients).
- whole step: one training step of a timm model on a fixed batch; ratios GSAM/SAM and SAM/SGD.
- buffers: parameter-sized tensors the optimizer keeps beyond the base optimizer's, per parameter.
- the official GSAM code's step (gsam_repro.bench.official_gsam), timed with the others for
  vector work; `gsam/official_gsam` is the median over repeats of the two within one repeat.

On CUDA the whole step uses bf16 autocast and also reports peak memory per optimizer.
Writes JSON (default results/benchmarks/optim.json) with the exact command in it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from gsam_repro.fsio import atomic_write_text

OPTIMIZERS = ("sgd", "sam", "gsam", "weighted")
OFFICIAL = "official_gsam"  # the official code's GSAM step, for vector work only
DEFAULT_OUTPUT = "results/benchmarks/optim.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 2 repeats: a smoke run in seconds (figures meaningless)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="whole-step repeats, interleaved (default 9, quick 2)")
    parser.add_argument("--vector-repeats", type=int, default=None,
                        help="interleaved vector-work repeats (default 21; quick 2)")
    parser.add_argument("--params-millions", type=float, default=None,
                        help="parameters for the vector-work figure (default 12.6; quick 0.3)")
    parser.add_argument("--model", default=None,
                        help="timm model for the whole step (default resnet18; resnet50 on cuda)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="whole-step batch (default 32; 256 on cuda; quick 4)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="whole-step image side (default 224; quick 32)")
    parser.add_argument("--skip-whole-step", action="store_true",
                        help="measure only vector work and buffers")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"JSON path ({DEFAULT_OUTPUT})")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    cuda = str(args.device).startswith("cuda")
    quick = args.quick

    def pick(value, normal, quick_value, cuda_value=None):
        if value is not None:
            return value
        if quick:
            return quick_value
        return cuda_value if (cuda and cuda_value is not None) else normal

    settings = {
        "device": args.device,
        "threads": args.threads,
        "repeats": pick(args.repeats, 9, 2),
        "vector_repeats": pick(args.vector_repeats, 21, 2),
        "params_millions": pick(args.params_millions, 12.6, 0.3),
        "model": pick(args.model, "resnet18", "test_resnet", "resnet50"),
        "batch_size": pick(args.batch_size, 32, 4, 256),
        "image_size": pick(args.image_size, 224, 32),
        "precision": "bf16" if cuda else "fp32",
        "whole_step": not args.skip_whole_step,
        "quick": quick,
    }
    from gsam_repro.errors import UsageError

    if min(settings["repeats"], settings["vector_repeats"], settings["threads"]) < 1 or (
        settings["params_millions"] <= 0
    ):
        raise UsageError(
            "--repeats, --vector-repeats, --threads and --params-millions must be positive"
        )
    return settings


def _command(settings: dict[str, Any], output: str) -> str:
    # OpenMP's wait policy changes CPU figures by up to half (idle threads spin or sleep
    # between the many short parallel loops of a step), so it is part of the command.
    policy = os.environ.get("OMP_WAIT_POLICY")
    parts = [f"OMP_WAIT_POLICY={policy}"] if policy else []
    parts += ["gsam-repro bench optim", f"--device {settings['device']}",
              f"--threads {settings['threads']}", f"--repeats {settings['repeats']}",
              f"--vector-repeats {settings['vector_repeats']}",
              f"--params-millions {settings['params_millions']}"]
    if settings["whole_step"]:
        parts += [f"--model {settings['model']}", f"--batch-size {settings['batch_size']}",
                  f"--image-size {settings['image_size']}"]
    else:
        parts.append("--skip-whole-step")
    parts.append(f"--output {output}")
    return " ".join(parts)


def _optimizer_kwargs(name: str, lr: float) -> dict[str, Any]:
    """The paper's ResNet settings (Table 4) where they apply; SGD momentum 0.9, wd 5e-4."""
    kwargs: dict[str, Any] = {"lr": lr, "momentum": 0.9, "weight_decay": 5e-4}
    if name == "sam":
        kwargs["rho"] = 0.05
    elif name == "gsam":
        kwargs.update(rho_max=0.04, rho_min=0.02, alpha=0.01, lr_min=lr / 100)
    elif name == "weighted":
        kwargs.update(rho=0.05, lam=0.1)
    return kwargs


def _parameter_shapes(millions: float) -> list[tuple[int, ...]]:
    """timm resnet18's parameter shapes, its channels narrowed when `millions` is below its body
    size, and its classifier head sized to reach `millions`."""
    import math

    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=1)
    body = [tuple(p.shape) for name, p in model.named_parameters() if not name.startswith("fc.")]
    target = millions * 1e6
    width = min(1.0, math.sqrt(0.9 * target / sum(_numel(shape) for shape in body)))

    def narrow(shape: tuple[int, ...]) -> tuple[int, ...]:
        channels = tuple(max(1, round(dim * width)) for dim in shape[:2])
        return channels + shape[2:]

    body = [narrow(shape) for shape in body]
    features = max(1, round(model.num_features * width))
    classes = max(1, round((target - sum(_numel(shape) for shape in body)) / (features + 1)))
    return [*body, (classes, features), (classes,)]


def _numel(shape: tuple[int, ...]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def vector_work(settings: dict[str, Any], device) -> dict[str, Any]:
    """Per-optimizer arithmetic with gradients supplied by copying stored tensors."""
    import torch

    from gsam_repro.bench.official_gsam import OfficialStyleGSAM
    from gsam_repro.optim import create_optimizer
    from gsam_repro.optim.reductions import global_norm

    generator = torch.Generator().manual_seed(0)
    shapes = _parameter_shapes(settings["params_millions"])
    params = [torch.nn.Parameter((0.05 * torch.randn(s, generator=generator)).to(device))
              for s in shapes]
    stored = [torch.randn(s, generator=generator).to(device) for s in shapes]
    n_params = sum(p.numel() for p in params)
    zero = torch.zeros((), device=device)

    def closure():
        for p, g in zip(params, stored, strict=True):
            p.grad = g.clone()
        return zero

    lr = 1e-6  # the weights barely move, so every repeat does the same arithmetic
    optimizers = {name: create_optimizer(name, params, **_optimizer_kwargs(name, lr))
                  for name in OPTIMIZERS}
    official = _optimizer_kwargs("gsam", lr)
    optimizers[OFFICIAL] = OfficialStyleGSAM(
        params, lr=lr, rho=official["rho_max"], alpha=official["alpha"],
        momentum=official["momentum"], weight_decay=official["weight_decay"])
    names = tuple(optimizers)
    base = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    scratch = [g.clone() for g in stored]

    def step(name):
        opt = optimizers[name]
        if opt.passes_per_step == 1:
            opt.zero_grad(set_to_none=True)
        opt.step(closure)

    def steady(fn, before=None, calls: int = 3) -> float:
        """Time the last of a few back-to-back calls: each optimizer in its steady state, as in
        training, with little left over from whichever optimizer ran before it."""
        for _ in range(calls):
            if before is not None:
                before()
            elapsed = _timed(fn, device)
        return elapsed

    samples: dict[str, list[float]] = {
        name: [] for name in (*names, "closure", "base", "one_pass", "one_reduction_read")}
    for repeat in range(settings["vector_repeats"] + 1):  # the first round is a warm-up
        round_times: dict[str, float] = {}
        # A closure call replaces every gradient (the old ones are freed), as a backward pass
        # after zero_grad(set_to_none=True) does: that is the cost subtracted per pass.
        round_times["closure"] = steady(closure)
        round_times["base"] = steady(base.step, before=closure)
        # One pass = one read or write of every parameter; an in-place add makes three.
        round_times["one_pass"] = steady(
            lambda: torch._foreach_add_(scratch, stored, alpha=1e-9)) / 3
        # A reduction reads every parameter once and writes nothing: the step's ||g||.
        round_times["one_reduction_read"] = steady(lambda: global_norm(stored))
        for name in names:
            round_times[name] = steady(lambda name=name: step(name))
        if repeat:
            for key, value in round_times.items():
                samples[key].append(value)

    medians = {key: statistics.median(values) for key, values in samples.items()}
    minimums = {key: min(values) for key, values in samples.items()}
    per_million = 1e3 / (n_params / 1e6)  # seconds -> ms per million parameters
    one_pass = medians["one_pass"]
    figures: dict[str, Any] = {
        "params": n_params,
        "tensors": len(params),
        "closure_ms_per_million": medians["closure"] * per_million,
        "base_sgd_update_ms_per_million": medians["base"] * per_million,
        "one_pass_ms_per_million": one_pass * per_million,
        "one_pass_gb_per_s": n_params * 4 / one_pass / 1e9,
        "one_pass_ms_per_million_minimum": minimums["one_pass"] * per_million,
        "one_reduction_read_ms_per_million": medians["one_reduction_read"] * per_million,
        "optimizers": {},
    }
    for name in names:
        opt = optimizers[name]
        own = medians[name] - opt.passes_per_step * medians["closure"] - medians["base"]
        # Other work on the machine only ever adds time: the fastest repeats bound it from below.
        own_min = minimums[name] - opt.passes_per_step * minimums["closure"] - minimums["base"]
        extra = list(opt.extra_buffers()) if hasattr(opt, "extra_buffers") else []
        base_state = getattr(opt, "base_optimizer", opt).state
        base_buffers = [v for s in base_state.values() for v in s.values()
                        if isinstance(v, torch.Tensor) and v.dim() > 0]
        figures["optimizers"][name] = {
            "step_ms": medians[name] * 1e3,
            "vector_work_ms_per_million": own * per_million,
            "vector_work_passes": own / one_pass,
            "vector_work_ms_per_million_from_minimums": own_min * per_million,
            "vector_work_passes_from_minimums": own_min / minimums["one_pass"],
            "extra_buffers_per_param": len(extra) / len(params),
            "base_buffers_per_param": len(base_buffers) / len(params),
            "step_samples_ms": [t * 1e3 for t in samples[name]],
        }

    def own_work(name: str) -> list[float]:
        return [t - optimizers[name].passes_per_step * c - b
                for t, c, b in zip(samples[name], samples["closure"], samples["base"],
                                   strict=True)]

    figures[f"gsam/{OFFICIAL}"] = statistics.median(
        a / b for a, b in zip(own_work("gsam"), own_work(OFFICIAL), strict=True))
    return figures


def whole_step(settings: dict[str, Any], device) -> dict[str, Any]:
    """One training step of a timm model per optimizer, interleaved; CUDA adds peak memory."""
    import timm
    import torch

    from gsam_repro.optim import create_optimizer

    torch.manual_seed(0)
    model = timm.create_model(settings["model"], pretrained=False, num_classes=1000).to(device)
    size, batch = settings["image_size"], settings["batch_size"]
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=settings["precision"] == "bf16")

    def closure():
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    lr = 1e-4
    optimizers = {name: create_optimizer(name, model.parameters(), model=model,
                                         **_optimizer_kwargs(name, lr))
                  for name in OPTIMIZERS}

    def step(name):
        opt = optimizers[name]
        if opt.passes_per_step == 1:
            opt.zero_grad(set_to_none=True)
        opt.step(closure)

    samples: dict[str, list[float]] = {name: [] for name in OPTIMIZERS}
    for repeat in range(settings["repeats"] + 1):
        for name in OPTIMIZERS:
            elapsed = _timed(lambda name=name: step(name), device)
            if repeat:
                samples[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    minimums = {name: min(values) for name, values in samples.items()}
    figures: dict[str, Any] = {
        "model": settings["model"],
        "params": sum(p.numel() for p in model.parameters()),
        "batch_size": batch,
        "image_size": size,
        "precision": settings["precision"],
        "step_ms": {name: medians[name] * 1e3 for name in OPTIMIZERS},
        "step_samples_ms": {name: [t * 1e3 for t in samples[name]] for name in OPTIMIZERS},
        "ratios": {
            "gsam/sam": medians["gsam"] / medians["sam"],
            "weighted/sam": medians["weighted"] / medians["sam"],
            "sam/sgd": medians["sam"] / medians["sgd"],
            "gsam/sgd": medians["gsam"] / medians["sgd"],
        },
        # Median over repeats of the ratio within each repeat: the optimizers of one repeat ran
        # back to back, so slow drifts of the machine cancel.
        "ratios_paired": {
            f"{a}/{b}": statistics.median(x / y for x, y in zip(samples[a], samples[b],
                                                                   strict=True))
            for a, b in (("gsam", "sam"), ("weighted", "sam"), ("sam", "sgd"), ("gsam", "sgd"))
        },
        "ratios_from_minimums": {
            "gsam/sam": minimums["gsam"] / minimums["sam"],
            "weighted/sam": minimums["weighted"] / minimums["sam"],
            "sam/sgd": minimums["sam"] / minimums["sgd"],
            "gsam/sgd": minimums["gsam"] / minimums["sgd"],
        },
    }
    if device.type == "cuda":
        del optimizers
        peaks = {}
        for name in OPTIMIZERS:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            opt = create_optimizer(name, model.parameters(), model=model,
                                   **_optimizer_kwargs(name, lr))
            torch.cuda.reset_peak_memory_stats(device)
            for _ in range(2):
                if opt.passes_per_step == 1:
                    opt.zero_grad(set_to_none=True)
                opt.step(closure)
            _sync(device)
            peaks[name] = torch.cuda.max_memory_allocated(device) / 2**20
            del opt
        figures["peak_memory_mib"] = peaks
    return figures


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _print_report(result: dict[str, Any]) -> None:
    vector = result["vector_work"]
    print(f"vector work, {vector['params'] / 1e6:.1f} M parameters in {vector['tensors']} tensors "
          f"(one pass = {vector['one_pass_ms_per_million']:.3f} ms/M, "
          f"{vector['one_pass_gb_per_s']:.0f} GB/s; one read by a reduction = "
          f"{vector['one_reduction_read_ms_per_million']:.3f} ms/M):")
    print(f"  {'optimizer':13s} {'ms/M':>8s} {'passes':>8s} {'(fastest: ms/M':>15s} "
          f"{'passes)':>8s} {'extra buffers':>14s} {'base buffers':>13s}")
    for name, row in vector["optimizers"].items():
        print(f"  {name:13s} {row['vector_work_ms_per_million']:8.3f} "
              f"{row['vector_work_passes']:8.1f} "
              f"{row['vector_work_ms_per_million_from_minimums']:15.3f} "
              f"{row['vector_work_passes_from_minimums']:8.1f} "
              f"{row['extra_buffers_per_param']:14.1f} {row['base_buffers_per_param']:13.1f}")
    print(f"  GSAM's vector work / the official code's (paired, median): "
          f"{vector[f'gsam/{OFFICIAL}']:.3f}")
    whole = result.get("whole_step")
    if whole:
        print(f"whole step, {whole['model']} batch {whole['batch_size']} at "
              f"{whole['image_size']}px, {whole['precision']}:")
        for name, ms in whole["step_ms"].items():
            peak = whole.get("peak_memory_mib", {}).get(name)
            extra = f"  peak {peak:.0f} MiB" if peak is not None else ""
            print(f"  {name:10s} {ms:9.1f} ms{extra}")
        print("  ratios of medians:  " + ", ".join(
            f"{k} {v:.3f}" for k, v in whole["ratios"].items()))
        print("  paired ratios:      " + ", ".join(
            f"{k} {v:.3f}" for k, v in whole["ratios_paired"].items()))
        print("  ratios of fastest:  " + ", ".join(
            f"{k} {v:.3f}" for k, v in whole["ratios_from_minimums"].items()))


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from gsam_repro.errors import UsageError

    settings = _settings(args)
    device = torch.device(settings["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    torch.set_num_threads(settings["threads"])
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.time()
    result: dict[str, Any] = {
        "command": _command(settings, args.output),
        "settings": settings,
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_before": load_before,
        },
    }
    result["vector_work"] = vector_work(settings, device)
    if settings["whole_step"]:
        result["whole_step"] = whole_step(settings, device)
    result["environment"]["load_average_after"] = (
        os.getloadavg() if hasattr(os, "getloadavg") else None
    )
    result["wall_s"] = time.time() - started
    _print_report(result)
    if load_before and load_before[0] > settings["threads"] + 0.5:
        print(f"note: load average {load_before[0]:.1f} at the start; other work shares the CPU "
              "and the figures are noisy", file=sys.stderr)
    _write_json(Path(args.output), result)
    print(f"wrote {args.output}")
    return 0
