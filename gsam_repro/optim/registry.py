"""Optimizers by name: the built-ins (sgd, adamw, sam, gsam, weighted), the user's own classes
registered with `@register_optimizer("name")`, and any `package.module:Class` path.

`create_optimizer` takes keyword arguments named as in a run config's `optimizer` section. None
means "not given". `model`, `lr_max` and `lr_min` describe the training run rather than the
optimizer, so they are passed only to optimizers that accept them; any other argument an
optimizer does not take is a ValueError naming it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gsam_repro.optim.gsam import GSAM
from gsam_repro.optim.sam import SAM, SHARPNESS_AWARE_OPTIONS, SharpnessAware
from gsam_repro.optim.weighted import WeightedSAM

# Facts about the run that the trainer hands to every optimizer; only those that take them see them.
CONTEXT_ARGUMENTS = frozenset({"model", "lr_max", "lr_min", "total_steps"})
BASE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
}

_REGISTRY: dict[str, Callable[..., torch.optim.Optimizer]] = {}


def register_optimizer(name: str) -> Callable[[Callable], Callable]:
    """Decorator: make a torch optimizer class (or a factory `f(params, **kwargs)`) available to
    `create_optimizer` and run configs as `name`."""
    key = name.strip().lower()
    if not key or ":" in key:
        raise ValueError(f"name: {name!r} is not a valid optimizer name")

    def decorator(obj: Callable) -> Callable:
        existing = _REGISTRY.get(key)
        if existing is not None and existing is not obj and (
            getattr(existing, "__qualname__", None) != getattr(obj, "__qualname__", None)
            or getattr(existing, "__module__", None) != getattr(obj, "__module__", None)
        ):
            raise ValueError(f"name: optimizer {key!r} is already registered as {existing!r}")
        _REGISTRY[key] = obj
        return obj

    return decorator


def available_optimizers() -> list[str]:
    """Registered optimizer names, sorted."""
    return sorted(_REGISTRY)


def resolve_optimizer(name: str) -> Callable[..., torch.optim.Optimizer]:
    """The class or factory behind a registered name or a `package.module:Class` path."""
    if ":" in name:
        module_name, _, attribute = name.rpartition(":")
        module = _import_module_or_file(module_name, name)
        try:
            obj = module
            for part in attribute.split("."):
                obj = getattr(obj, part)
        except AttributeError as err:
            raise ValueError(f"name: {module_name!r} has no attribute {attribute!r}") from err
        if not (isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)):
            # a path names code to run: only optimizer classes, never os:system and the like
            raise ValueError(f"name: {name!r} is not a torch.optim.Optimizer subclass (a "
                             f"{type(obj).__name__}); a module:Class path must name an "
                             "optimizer class")
        return obj
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    hint = difflib.get_close_matches(key, list(_REGISTRY), n=1, cutoff=0.4)
    message = (
        f"name: unknown optimizer {name!r}; registered: {', '.join(available_optimizers())} "
        "(or package.module:Class, or path/to/file.py:Class)"
    )
    if hint:
        message += f"; did you mean {hint[0]}?"
    raise ValueError(message)


def _import_module_or_file(module_name: str, name: str) -> Any:
    """Import `package.module`, or a Python file given by path (`experiments/x/my_opt.py`,
    relative to the current directory) so a user's optimizer needs no installed package."""
    if not module_name.endswith(".py"):
        try:
            return importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"name: cannot import {module_name!r} for {name!r}: {err}") from err
    path = Path(module_name).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"name: no such file {module_name!r} (looked at {path}) for {name!r}")
    key = "gsam_repro_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[key]
        raise ValueError(f"name: importing {module_name!r} for {name!r} failed: {err}") from err
    return module


def _is_sharpness_aware(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, SharpnessAware)


def create_optimizer(name: str, params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """Build optimizer `name` over `params` from config-style keyword arguments.

    Keywords: base ("sgd" | "adamw", the SAM family's base optimizer), lr, momentum, nesterov,
    weight_decay, betas, rho (sam, weighted), rho_max / rho_min / alpha (gsam), lam (weighted),
    adaptive (False | "paper" | "asam"), grad_clip, lr_max / lr_min (the rho schedule), model,
    plus whatever a user's optimizer takes; a mapping under `kwargs` is merged in. The cheap
    variants (every, looksam, looksam_alpha, switch_prob, switch_seed, start_fraction, with
    total_steps) and m-sharpness (m) apply to any `SharpnessAware` result, a user's subclass
    included. The result has `passes_per_step` (forward/backward passes per step: 1, 2 for the
    SAM family, or the run's exact average under a cheap variant)."""
    extra = kwargs.pop("kwargs", None) or {}
    for key in extra:
        if key in kwargs and kwargs[key] is not None:
            raise ValueError(f"{key}: given both directly and under kwargs")
    kwargs = {k: v for k, v in {**kwargs, **extra}.items() if v is not None}
    factory = resolve_optimizer(name)
    variant = {key: kwargs.pop(key) for key in SHARPNESS_AWARE_OPTIONS if key in kwargs}
    total_steps = kwargs.get("total_steps")

    if _is_sharpness_aware(factory) and "base" in kwargs:
        kwargs["base_optimizer"] = _base_class(kwargs.pop("base"))
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        kwargs = _check_arguments(name, signature, kwargs)
    optimizer = factory(params, **kwargs)
    if isinstance(optimizer, SharpnessAware):
        if variant or total_steps is not None:
            optimizer.configure_steps(**variant, total_steps=total_steps)
    elif variant:
        raise ValueError(
            f"{next(iter(variant))} applies only to sharpness-aware optimizers "
            f"(SharpnessAware subclasses); {name!r} is not one"
        )
    if not hasattr(optimizer, "passes_per_step"):
        optimizer.passes_per_step = 1
    return optimizer


def _check_arguments(
    name: str, signature: inspect.Signature, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Drop context arguments the optimizer does not take; reject any other it does not take."""
    parameters = list(signature.parameters.values())[1:]  # the first one receives params
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    named = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    accepted = {}
    for key, value in kwargs.items():
        if key in named or takes_any:
            accepted[key] = value
        elif key not in CONTEXT_ARGUMENTS:
            hint = difflib.get_close_matches(key, named, n=1, cutoff=0.6)
            extra = f"; did you mean {hint[0]}?" if hint else ""
            raise ValueError(
                f"{key} does not apply to optimizer {name!r} (it takes: {', '.join(named)}){extra}"
            )
    for p in parameters:
        required = p.default is inspect.Parameter.empty and p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        if required and p.name not in accepted:
            raise ValueError(f"{p.name} is required by optimizer {name!r}")
    return accepted


def _base_class(base: str | type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    if isinstance(base, type) and issubclass(base, torch.optim.Optimizer):
        return base
    key = str(base).lower()
    if key not in BASE_OPTIMIZERS:
        hint = difflib.get_close_matches(key, list(BASE_OPTIMIZERS), n=1, cutoff=0.4)
        extra = f"; did you mean {hint[0]}?" if hint else ""
        raise ValueError(
            f"base: unknown base optimizer {base!r}; choose from "
            f"{', '.join(BASE_OPTIMIZERS)}{extra}"
        )
    return BASE_OPTIMIZERS[key]


def _base_arguments(
    base: str,
    *,
    lr: float,
    momentum: float | None,
    nesterov: bool | None,
    weight_decay: float | None,
    betas: Any,
) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The base optimizer class and its keyword arguments; arguments of the other base raise."""
    cls = _base_class(base)
    weight_decay = 0.0 if weight_decay is None else weight_decay
    if cls is torch.optim.SGD:
        if betas is not None:
            raise ValueError(f"betas does not apply to base {base!r} (it is for adamw)")
        return cls, {
            "lr": lr,
            "momentum": 0.0 if momentum is None else momentum,
            "nesterov": bool(nesterov),
            "weight_decay": weight_decay,
        }
    for key, value in (("momentum", momentum), ("nesterov", nesterov)):
        if value is not None:
            raise ValueError(f"{key} does not apply to base {base!r} (it is for sgd)")
    arguments: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if betas is not None:
        if len(betas) != 2:
            raise ValueError(f"betas must be two numbers, got {betas!r}")
        arguments["betas"] = tuple(float(b) for b in betas)
    return cls, arguments


@register_optimizer("sgd")
def sgd(
    params: Any,
    lr: float,
    momentum: float | None = None,
    nesterov: bool | None = None,
    weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """Plain torch SGD (weight decay added to the gradient, as torch does)."""
    cls, arguments = _base_arguments(
        "sgd", lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, betas=None
    )
    return cls(params, **arguments)


@register_optimizer("adamw")
def adamw(
    params: Any, lr: float, betas: Any = None, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """Plain torch AdamW (decoupled weight decay: w <- w - lr * weight_decay * w)."""
    cls, arguments = _base_arguments(
        "adamw", lr=lr, momentum=None, nesterov=None, weight_decay=weight_decay, betas=betas
    )
    return cls(params, **arguments)


@register_optimizer("sam")
def sam(
    params: Any,
    lr: float,
    base: str = "sgd",
    momentum: float | None = None,
    nesterov: bool | None = None,
    weight_decay: float | None = None,
    betas: Any = None,
    rho: float = 0.05,
    adaptive: bool | str = False,
    grad_clip: float | None = None,
    lr_max: float | None = None,
    lr_min: float | None = None,
    model: torch.nn.Module | None = None,
) -> SAM:
    """SAM over an sgd or adamw base (constant rho)."""
    cls, arguments = _base_arguments(
        base, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, betas=betas
    )
    return SAM(
        params, cls, rho=rho, adaptive=adaptive, grad_clip=grad_clip, lr_max=lr_max,
        lr_min=lr_min, model=model, **arguments,
    )


@register_optimizer("gsam")
def gsam(
    params: Any,
    lr: float,
    base: str = "sgd",
    momentum: float | None = None,
    nesterov: bool | None = None,
    weight_decay: float | None = None,
    betas: Any = None,
    rho_max: float = 0.04,
    rho_min: float | None = None,
    alpha: float = 0.01,
    adaptive: bool | str = False,
    grad_clip: float | None = None,
    lr_max: float | None = None,
    lr_min: float | None = None,
    model: torch.nn.Module | None = None,
) -> GSAM:
    """GSAM over an sgd or adamw base; rho runs from rho_max at lr_max to rho_min at lr_min."""
    cls, arguments = _base_arguments(
        base, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, betas=betas
    )
    return GSAM(
        params, cls, rho_max=rho_max, rho_min=rho_min, alpha=alpha, adaptive=adaptive,
        grad_clip=grad_clip, lr_max=lr_max, lr_min=lr_min, model=model, **arguments,
    )


@register_optimizer("weighted")
def weighted(
    params: Any,
    lr: float,
    base: str = "sgd",
    momentum: float | None = None,
    nesterov: bool | None = None,
    weight_decay: float | None = None,
    betas: Any = None,
    rho: float = 0.05,
    lam: float = 0.1,
    adaptive: bool | str = False,
    grad_clip: float | None = None,
    lr_max: float | None = None,
    lr_min: float | None = None,
    model: torch.nn.Module | None = None,
) -> WeightedSAM:
    """The f_p + lam * h baseline over an sgd or adamw base (constant rho)."""
    cls, arguments = _base_arguments(
        base, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, betas=betas
    )
    return WeightedSAM(
        params, cls, rho=rho, lam=lam, adaptive=adaptive, grad_clip=grad_clip, lr_max=lr_max,
        lr_min=lr_min, model=model, **arguments,
    )
