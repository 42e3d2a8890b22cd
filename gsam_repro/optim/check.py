"""`gsam-repro check OPTIMIZER [key=value ...]`: conformance of any optimizer, before a sweep.

Each property runs a few steps on a tiny float64 problem on the CPU, from fresh instances built by
`create_optimizer` exactly as the trainer builds them (so built-ins, registered names and
`path/to/file.py:Class` all work), and reports pass, fail or n.a. with one line of evidence:

- batchnorm: one step leaves BatchNorm running statistics as one plain forward pass would;
- state_dict: state_dict() -> a new instance -> load_state_dict() gives the same state_dict();
- deterministic: two identical runs end bitwise identical;
- resume: a run checkpointed mid-way (through torch.save / torch.load with weights_only, with the
  RNG state, as the trainer does) and resumed in a fresh instance ends bitwise as the same run
  continued without interruption;
- radius0: with the radius at 0 a sharpness-aware method takes its base optimizer's steps
  (n.a. for plain optimizers, or a class that sets `reduces_to_base = False`);
- passes: the closure calls match `passes_per_step` (whole passes; within 4 standard deviations
  of the expectation for switch_prob);
- grad_leak: every closure call starts from zeroed gradients (the SAM family clears them itself;
  plain optimizers rely on the loop's zero_grad, as documented);
- quadratic: the loss of a strongly convex quadratic decreases, and a sharpness-aware step's
  measured h equals rho ||g|| + rho^2 g^T H g / (2 ||g||^2) (h n.a. for adaptive modes, m, or a
  class that sets `gradient_perturbation = False`);
- grad_scaler: with a GradScaler, through `scaled_step` (the documented recipe), a step whose
  gradients are inf (at w, and for the SAM family also at w + eps) leaves the weights untouched
  and lowers the scale;
- ddp: n.a. here (it needs two processes; tests/optim/test_optim_ddp.py covers the built-ins).
"""

from __future__ import annotations

import copy
import inspect
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PASS, FAIL, NA = "pass", "fail", "n.a."
STEPS = 6  # steps of each trajectory; resume checkpoints after half of them
LR = 0.05  # the learning rate when the options give none


@dataclass
class Result:
    """One property's outcome and its line of evidence."""

    name: str
    status: str
    evidence: str


# ----------------------------------------------------------------------------- the problems
def _classifier(seed: int):
    """A small float64 net with BatchNorm, and a fixed batch of 16 examples."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ).double()
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(16, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=generator)
    return model, x, y


class _Recorder:
    """The closure of a check: counts whole passes and notes calls that found gradients."""

    def __init__(self, model, loss_of: Callable, inputs: tuple):
        self.model, self.loss_of, self.inputs = model, loss_of, inputs
        self.passes = 0
        self.calls = 0
        self.dirty_calls = 0
        self.fail_at: int | None = None  # a call number whose loss is made inf (grad_scaler)

    def __call__(self, chunk=None):
        self.calls += 1
        if any(p.grad is not None and bool(p.grad.ne(0).any()) for p in self.model.parameters()):
            self.dirty_calls += 1
        inputs = self.inputs if chunk is None else tuple(chunk(t) for t in self.inputs)
        self.passes += 1 if chunk is None or chunk.last else 0
        loss = self.loss_of(*inputs)
        if self.fail_at == self.calls:
            loss = loss * float("inf")
        self.backward(loss)
        return loss.detach()

    def backward(self, loss) -> None:
        loss.backward()


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return {"lr": LR, **options}


def _build(name: str, options: dict[str, Any], model, total_steps: int = STEPS):
    from gsam_repro.optim import create_optimizer

    arguments = _options(options)
    return create_optimizer(name, model.parameters(), **arguments, lr_max=arguments["lr"],
                            lr_min=arguments["lr"], model=model, total_steps=total_steps)


def _clear(model) -> None:
    """What a correct zero_grad(set_to_none=True) does, done by the loop itself (the checks
    other than grad_leak must not depend on the optimizer's own clearing)."""
    for p in model.parameters():
        p.grad = None


def _classifier_run(name: str, options: dict[str, Any], seed: int = 0):
    import torch

    model, x, y = _classifier(seed)
    opt = _build(name, options, model)
    recorder = _Recorder(model, lambda a, b: torch.nn.functional.cross_entropy(model(a), b),
                         (x, y))
    return model, opt, recorder


def _steps(model, opt, recorder, count: int, clear: bool = True) -> None:
    for _ in range(count):
        if clear:
            _clear(model)
        opt.step(recorder)


def _weights(model):
    import torch

    return torch.cat([t.detach().reshape(-1).double() for t in model.state_dict().values()])


def _parameters(model):
    import torch

    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _is_sharpness_aware(opt) -> bool:
    from gsam_repro.optim.base import SharpnessAware

    return isinstance(opt, SharpnessAware)


# ----------------------------------------------------------------------------- the properties
def check_batchnorm(name: str, options: dict[str, Any]) -> Result:
    import torch

    model, opt, recorder = _classifier_run(name, options)
    if getattr(opt, "m", None) is not None:
        return Result("batchnorm", NA, "m-sharpness updates the statistics once per chunk "
                      "(documented)")
    reference = copy.deepcopy(model)
    reference(recorder.inputs[0])
    _clear(model)
    opt.step(recorder)
    names = [n for n, _ in model.named_buffers()]
    differ = [n for n, (a, b) in zip(names, zip(model.buffers(), reference.buffers(),
                                                strict=True), strict=True)
              if not torch.equal(a, b)]
    if differ:
        return Result("batchnorm", FAIL, f"after one step {', '.join(differ)} differ from one "
                      f"plain forward's ({recorder.calls} closure calls)")
    return Result("batchnorm", PASS, f"{len(names)} BatchNorm buffers equal one plain forward's "
                  f"after a step of {recorder.calls} closure calls")


def _same(a: Any, b: Any, where: str = "state_dict") -> str | None:
    """Where two state dicts first differ, or None."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and torch.equal(a, b)):
            return where
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where} keys {sorted(map(str, set(a) ^ set(b)))}"
        for key in a:
            found = _same(a[key], b[key], f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where} lengths {len(a)} and {len(b)}"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _same(x, y, f"{where}[{index}]")
            if found:
                return found
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def check_state_dict(name: str, options: dict[str, Any]) -> Result:
    model, opt, recorder = _classifier_run(name, options)
    _steps(model, opt, recorder, STEPS // 2)
    saved = copy.deepcopy(opt.state_dict())
    fresh_model, fresh, _ = _classifier_run(name, options, seed=1)
    fresh_model.load_state_dict(model.state_dict())
    fresh.load_state_dict(copy.deepcopy(saved))
    where = _same(saved, fresh.state_dict())
    if where:
        return Result("state_dict", FAIL, f"after load_state_dict into a new instance, {where} "
                      "differs from the saved one")
    return Result("state_dict", PASS, f"a new instance reports the saved state_dict after "
                  f"{STEPS // 2} steps ({len(saved.get('state', {}))} parameter states)")


def check_deterministic(name: str, options: dict[str, Any]) -> Result:
    import torch

    ends = []
    for _ in range(2):
        torch.manual_seed(7)
        model, opt, recorder = _classifier_run(name, options)
        _steps(model, opt, recorder, STEPS)
        ends.append(_weights(model))
    if not torch.equal(*ends):
        gap = float((ends[0] - ends[1]).abs().max())
        return Result("deterministic", FAIL, f"two identical {STEPS}-step runs differ by up to "
                      f"{gap:.3g}")
    return Result("deterministic", PASS, f"two identical {STEPS}-step runs end bitwise equal")


def check_resume(name: str, options: dict[str, Any]) -> Result:
    import torch

    torch.manual_seed(7)
    model, opt, recorder = _classifier_run(name, options)
    _steps(model, opt, recorder, STEPS // 2)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "rng": torch.get_rng_state()}, buffer)
    _steps(model, opt, recorder, STEPS - STEPS // 2)  # the same run, uninterrupted
    straight = _weights(model)

    buffer.seek(0)
    try:
        checkpoint = torch.load(buffer, map_location="cpu", weights_only=True)
    except Exception as err:  # what the trainer's checkpoint loading would meet
        return Result("resume", FAIL, f"the state_dict does not load with weights_only=True, as "
                      f"checkpoints are read ({type(err).__name__}: {str(err).splitlines()[0]})")
    torch.manual_seed(99)  # the resumed process starts elsewhere; the checkpoint must suffice
    model, opt, recorder = _classifier_run(name, options, seed=1)
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"])
    _steps(model, opt, recorder, STEPS - STEPS // 2)
    resumed = _weights(model)
    if not torch.equal(straight, resumed):
        gap = float((straight - resumed).abs().max())
        return Result("resume", FAIL, f"resumed after {STEPS // 2} of {STEPS} steps, the weights "
                      f"differ from the uninterrupted run's by up to {gap:.3g}")
    return Result("resume", PASS, f"resumed after {STEPS // 2} of {STEPS} steps in a fresh "
                  "instance, bitwise equal to the uninterrupted run")


def check_radius0(name: str, options: dict[str, Any]) -> Result:
    import torch

    model, opt, recorder = _classifier_run(name, options)
    if not _is_sharpness_aware(opt):
        return Result("radius0", NA, "not sharpness-aware")
    if not getattr(opt, "reduces_to_base", True):
        return Result("radius0", NA, "the class sets reduces_to_base = False")
    if getattr(opt, "m", None) is not None:
        return Result("radius0", NA, "m-sharpness: BatchNorm normalizes chunks of m, so even "
                      "at radius 0 the gradient is not the whole batch's")
    opt.rho_max = opt.rho_min = 0.0
    base_model = copy.deepcopy(model)
    base_class = type(opt.base_optimizer)
    accepted = inspect.signature(base_class).parameters
    base = base_class(base_model.parameters(), **{
        k: v for k, v in opt.base_optimizer.defaults.items() if k in accepted})
    base_recorder = _Recorder(base_model, lambda a, b: torch.nn.functional.cross_entropy(
        base_model(a), b), recorder.inputs)
    torch.manual_seed(7)
    _steps(model, opt, recorder, STEPS)
    torch.manual_seed(7)
    _steps(base_model, base, base_recorder, STEPS)
    ours, theirs = _parameters(model), _parameters(base_model)
    gap = float((ours - theirs).abs().max())
    if not torch.allclose(ours, theirs, rtol=1e-9, atol=1e-12):
        return Result("radius0", FAIL, f"at radius 0, {STEPS} steps differ from "
                      f"{type(base).__name__}'s by up to {gap:.3g}")
    return Result("radius0", PASS, f"at radius 0, {STEPS} steps match {type(base).__name__}'s "
                  f"(largest difference {gap:.1e})")


def check_passes(name: str, options: dict[str, Any]) -> Result:
    import torch

    steps = 40
    model, x, y = _classifier(0)
    opt = _build(name, options, model, total_steps=steps)
    recorder = _Recorder(model, lambda a, b: torch.nn.functional.cross_entropy(model(a), b),
                         (x, y))
    _steps(model, opt, recorder, steps)
    declared = opt.passes_per_step * steps
    plan = getattr(opt, "plan", None)
    probability = getattr(plan, "switch_prob", None) if plan is not None else None
    slack = 0.0
    if probability is not None:  # random: within 4 standard deviations of the expectation
        slack = 4 * math.sqrt(steps * probability * (1 - probability)) + 1
    if abs(recorder.passes - declared) > slack + 1e-9:
        return Result("passes", FAIL, f"{recorder.passes} passes in {steps} steps, but "
                      f"passes_per_step {opt.passes_per_step:g} declares {declared:g}")
    return Result("passes", PASS, f"{recorder.passes} passes in {steps} steps; passes_per_step "
                  f"{opt.passes_per_step:g} declares {declared:g}")


def check_grad_leak(name: str, options: dict[str, Any]) -> Result:
    model, opt, recorder = _classifier_run(name, options)
    clears_itself = _is_sharpness_aware(opt)
    for _ in range(STEPS):
        if not clears_itself:
            opt.zero_grad(set_to_none=True)
        opt.step(recorder)
    how = "the optimizer clears them itself" if clears_itself else "after the loop's zero_grad"
    if recorder.dirty_calls:
        return Result("grad_leak", FAIL, f"{recorder.dirty_calls} of {recorder.calls} closure "
                      f"calls found non-zero gradients ({how})")
    return Result("grad_leak", PASS, f"all {recorder.calls} closure calls started from zeroed "
                  f"gradients ({how})")


def _quadratic():
    """f(w) = mean_i (w - c_i)^T H (w - c_i) / 2 over 8 centers, H diagonal in [1, 10]."""
    import torch

    generator = torch.Generator().manual_seed(5)
    curvature = torch.linspace(1.0, 10.0, 6, dtype=torch.float64)
    centers = torch.randn(8, 6, generator=generator, dtype=torch.float64)
    weights = torch.nn.Parameter(torch.randn(6, generator=generator, dtype=torch.float64) + 3)
    holder = torch.nn.Module()
    holder.w = weights

    def loss_of(c):
        diff = holder.w - c
        return 0.5 * (diff * curvature * diff).sum(dim=1).mean()

    return holder, curvature, centers, loss_of


def check_quadratic(name: str, options: dict[str, Any]) -> Result:
    holder, curvature, centers, loss_of = _quadratic()
    opt = _build(name, options, holder, total_steps=20)
    recorder = _Recorder(holder, loss_of, (centers,))
    start = float(loss_of(centers).detach())
    measured_h = None
    for _ in range(20):
        w = holder.w.detach().clone()
        _clear(holder)
        opt.step(recorder)
        stats = getattr(opt, "stats", None) or {}
        if measured_h is None and "h" in stats and float(stats.get("rho", 0)) > 0:
            g = curvature * (w - centers.mean(dim=0))
            rho = float(stats["rho"])
            unit = g / g.norm()
            expected = rho * float(g.norm()) + 0.5 * rho**2 * float((unit * curvature * unit).sum())
            measured_h = (float(stats["h"]), expected)
    end = float(loss_of(centers).detach())
    if not end < start:
        return Result("quadratic", FAIL, f"20 steps took the loss from {start:.4g} to {end:.4g}")
    decrease = f"20 steps took the loss from {start:.4g} to {end:.4g}"
    opt_is_sa = _is_sharpness_aware(opt)
    reason = None
    if not opt_is_sa:
        reason = "not sharpness-aware"
    elif getattr(opt, "adaptive", False) is not False:
        reason = "adaptive perturbation"
    elif getattr(opt, "m", None) is not None:
        reason = "m-sharpness (h per chunk)"
    elif not getattr(opt, "gradient_perturbation", True):
        reason = "the class sets gradient_perturbation = False"
    elif measured_h is None:
        reason = "no step reported h with rho > 0"
    if reason:
        return Result("quadratic", PASS, f"{decrease}; h not checked: {reason}")
    got, want = measured_h
    if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12):
        return Result("quadratic", FAIL, f"{decrease}, but h = {got:.6g} where "
                      f"rho||g|| + rho^2 g^T H g/(2||g||^2) = {want:.6g}")
    return Result("quadratic", PASS, f"{decrease}; h = {got:.6g} = rho||g|| + "
                  f"rho^2 g^T H g/(2||g||^2) ({want:.6g})")


def check_grad_scaler(name: str, options: dict[str, Any]) -> Result:
    import warnings

    import torch

    from gsam_repro.optim import scaled_step

    sharpness_aware = _is_sharpness_aware(_classifier_run(name, options)[1])
    places = [("at w", 1)] + ([("at w + eps", 2)] if sharpness_aware else [])
    for where, call_in_step in places:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a CPU GradScaler may warn about its device
            scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)
        model, opt, recorder = _classifier_run(name, options)
        recorder.backward = lambda loss, s=scaler: s.scale(loss).backward()
        poisoned = False
        for step in range(STEPS):
            before, scale = _parameters(model), scaler.get_scale()
            armed = step >= 1 and not poisoned  # from the second step on, until it happens
            recorder.fail_at = recorder.calls + call_in_step if armed else None
            calls = recorder.calls
            _clear(model)
            try:
                scaled_step(opt, recorder, scaler)
            except Exception as err:
                return Result("grad_scaler", FAIL, f"an inf gradient {where} raised "
                              f"{type(err).__name__}: {str(err).splitlines()[0]}")
            if armed and recorder.calls - calls >= call_in_step:
                poisoned = True
                # undoing w + eps may leave one rounding; a step moves w by about lr * |d|
                change = float((before - _parameters(model)).abs().max())
                if change > 1e-12 * (1 + float(before.abs().max())):
                    return Result("grad_scaler", FAIL, f"an inf gradient {where} changed the "
                                  f"weights by up to {change:.3g} (the step was not skipped)")
                if not scaler.get_scale() < scale:
                    return Result("grad_scaler", FAIL, f"an inf gradient {where} did not lower "
                                  "the scale")
            elif not torch.isfinite(_weights(model)).all():
                return Result("grad_scaler", FAIL, f"a step {where} left non-finite weights")
        if not poisoned:
            return Result("grad_scaler", NA, f"no step of {STEPS} made a call {where}")
    return Result("grad_scaler", PASS, "with scaled_step, inf gradients "
                  f"{' and '.join(w for w, _ in places)} skip the step and lower the scale")


def check_ddp(name: str, options: dict[str, Any]) -> Result:
    return Result("ddp", NA, "needs two processes; tests/optim/test_optim_ddp.py covers the "
                  "built-ins")


PROPERTIES: dict[str, Callable[[str, dict[str, Any]], Result]] = {
    "batchnorm": check_batchnorm,
    "state_dict": check_state_dict,
    "deterministic": check_deterministic,
    "resume": check_resume,
    "radius0": check_radius0,
    "passes": check_passes,
    "grad_leak": check_grad_leak,
    "quadratic": check_quadratic,
    "grad_scaler": check_grad_scaler,
    "ddp": check_ddp,
}


def check_optimizer(name: str, options: dict[str, Any] | None = None) -> list[Result]:
    """Every property for optimizer `name` built with `options` (create_optimizer keywords).

    A property whose run raises is a failure with the error as evidence; options the optimizer
    does not take raise ValueError before any property runs."""
    import torch

    options = dict(options or {})
    _build(name, options, _classifier(0)[0])  # bad names and options: one clear error first
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise comparisons of tiny problems, whatever the machine
    try:
        for key, check in PROPERTIES.items():
            try:
                results.append(check(name, options))
            except Exception as err:
                results.append(Result(key, FAIL, f"{type(err).__name__}: "
                                      f"{str(err).splitlines()[0] if str(err) else ''}"))
    finally:
        torch.set_num_threads(threads)
    return results
