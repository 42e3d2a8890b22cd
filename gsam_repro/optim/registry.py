"""Optimizers by name: the built-ins (sgd, adamw, sam, gsam, weighted), the user's own classes
registered with `@register_optimizer("name")`, and any `package.module:Class` path.

`create_optimizer` takes keyword arguments named as in a run config's `optimizer` section. None
means "not given". `model`, `lr_max` and `lr_min` describe the training run rather than the
optimizer, so they are passed only to optimizers that accept them; any other argument an
optimizer does not take is an `ArgumentError` (a ValueError) naming it. `check_arguments` makes
that check without building anything, so `sweep plan` can run it on every run first: a built-in,
a registered class and a `file.py:Class` get the same check (against the class's signature and,
for a sharpness-aware class, its base optimizer's).

The built-ins are data (`BUILT_INS`: class, base optimizer, own arguments and radius key) behind
one factory, `_build`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
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
# Config keys each base optimizer takes, with the value used when a config leaves one unset.
BASE_ARGUMENTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adamw": {"betas": None, "weight_decay": 0.0},
}
# Arguments of every built-in sharpness-aware optimizer besides its radius and its own.
SHARPNESS_AWARE_COMMON = ("adaptive", "grad_clip", "lr_max", "lr_min", "model")


class ArgumentError(ValueError):
    """An optimizer argument is refused; `key` is its config key name (`rho`, `kwargs.beta`)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class BuiltIn:
    """What a built-in optimizer is: a plain base optimizer (`cls` None, `base` fixed) or a
    sharpness-aware class over a chosen base, with its own arguments (and their defaults) and
    the name of its radius."""

    doc: str
    cls: type[SharpnessAware] | None = None
    base: str | None = None  # fixed base of a plain optimizer; None: chosen by `base`
    own: dict[str, Any] = field(default_factory=dict)
    radius: str | None = None


BUILT_INS: dict[str, BuiltIn] = {
    "sgd": BuiltIn("Plain torch SGD (weight decay added to the gradient, as torch does).",
                   base="sgd"),
    "adamw": BuiltIn("Plain torch AdamW (decoupled weight decay: w <- w - lr * weight_decay * w).",
                     base="adamw"),
    "sam": BuiltIn("SAM over an sgd or adamw base (constant rho).", SAM,
                   own={"rho": 0.05}, radius="rho"),
    "gsam": BuiltIn("GSAM over an sgd or adamw base; rho runs from rho_max at lr_max to rho_min "
                    "at lr_min.", GSAM, own={"rho_max": 0.04, "rho_min": None, "alpha": 0.01},
                    radius="rho_max"),
    "weighted": BuiltIn("The f_p + lam * h baseline over an sgd or adamw base (constant rho).",
                        WeightedSAM, own={"rho": 0.05, "lam": 0.1}, radius="rho"),
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
    kwargs = _merge_kwargs(kwargs)
    factory = resolve_optimizer(name)
    variant = {key: kwargs.pop(key) for key in SHARPNESS_AWARE_OPTIONS if key in kwargs}
    total_steps = kwargs.get("total_steps")
    _check_variant(name, factory, variant)
    kwargs = _accepted(name, factory, kwargs)
    if _is_sharpness_aware(factory) and "base" in kwargs:
        kwargs["base_optimizer"] = _base_class(kwargs.pop("base"))
    optimizer = factory(params, **kwargs)
    if isinstance(optimizer, SharpnessAware):
        if variant or total_steps is not None:
            optimizer.configure_steps(**variant, total_steps=total_steps)
    else:
        _check_variant(name, type(optimizer), variant)
    if not hasattr(optimizer, "passes_per_step"):
        optimizer.passes_per_step = 1
    return optimizer


def check_arguments(name: str, **kwargs: Any) -> None:
    """Raise ArgumentError (or ValueError for an unknown name) if `create_optimizer(name, ...)`
    would refuse these keywords, without building anything: the same check, made early. The
    trainer's context arguments (CONTEXT_ARGUMENTS) count as given."""
    kwargs = _merge_kwargs(kwargs)
    factory = resolve_optimizer(name)
    variant = {key: kwargs.pop(key) for key in SHARPNESS_AWARE_OPTIONS if key in kwargs}
    _check_variant(name, factory, variant)
    _accepted(name, factory, {**dict.fromkeys(CONTEXT_ARGUMENTS, None), **kwargs})


def accepted_keys(name: str, base: str | None = None) -> frozenset[str] | None:
    """The keywords optimizer `name` takes over base optimizer `base` (None: its default), or
    None when it takes any keyword. A sweep drops the rest from the runs of `name` when they
    come from its base config."""
    factory = resolve_optimizer(name)
    named, _, takes_any = _signature_names(factory)
    sharpness_aware = _is_sharpness_aware(factory) or (
        isinstance(factory, _BuiltInFactory) and factory.spec.cls is not None)
    if isinstance(factory, _BuiltInFactory):
        base_name = factory.spec.base or str(base or "sgd").lower()
        _base_class(base_name)
        others = {k for b in BASE_ARGUMENTS for k in BASE_ARGUMENTS[b]} - set(
            BASE_ARGUMENTS[base_name])
        named -= others
    elif takes_any and sharpness_aware:
        base_named, _, takes_any = _signature_names(_base_class(base or "sgd"))
        named = named | base_named | {"base"}
    if takes_any:
        return None
    if sharpness_aware:
        named = named | set(SHARPNESS_AWARE_OPTIONS)
    return frozenset(named)


def _merge_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Config-style keywords with the `kwargs` mapping merged in and unset (None) ones dropped."""
    extra = kwargs.pop("kwargs", None) or {}
    for key in extra:
        if key in kwargs and kwargs[key] is not None:
            raise ArgumentError(f"kwargs.{key}", f"{key}: given both directly and under kwargs")
    return {k: v for k, v in {**kwargs, **extra}.items() if v is not None}


def _check_variant(name: str, factory: Any, variant: dict[str, Any]) -> None:
    if variant and isinstance(factory, type) and not issubclass(factory, SharpnessAware):
        key = next(iter(variant))
        raise ArgumentError(key, f"{key} applies only to sharpness-aware optimizers "
                            f"(SharpnessAware subclasses); {name!r} is not one")


def _accepted(name: str, factory: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keywords `factory` takes: context arguments it does not take are dropped, any other
    it does not take (nor its base optimizer, for a sharpness-aware class) is refused."""
    named, required, takes_any = _signature_names(factory)
    if takes_any and _is_sharpness_aware(factory):  # the rest goes to the base optimizer
        base = _base_class(kwargs.get("base", "sgd"))
        base_named, _, base_any = _signature_names(base)
        named, takes_any = named | base_named, base_any
    accepted = {}
    for key, value in kwargs.items():
        if value is None and key in CONTEXT_ARGUMENTS:
            continue  # check_arguments' stand-in for a context argument the trainer gives
        if key in named or takes_any or (key == "base" and _is_sharpness_aware(factory)):
            accepted[key] = value
        elif key not in CONTEXT_ARGUMENTS:
            choices = sorted(named - {"params", "base_optimizer", "rho_name"})
            hint = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
            extra = f"; did you mean {hint[0]}?" if hint else ""
            raise ArgumentError(key, f"{key} does not apply to optimizer {name!r} (it takes: "
                                f"{', '.join(choices)}){extra}")
    for key in required:
        if key not in accepted and not (key in CONTEXT_ARGUMENTS and key in kwargs):
            raise ArgumentError(key, f"{key} is required by optimizer {name!r}")
    if isinstance(factory, _BuiltInFactory):
        factory.check_base(accepted)
    return accepted


def _signature_names(factory: Any) -> tuple[set[str], list[str], bool]:
    """(keyword names, required ones, whether anything else is taken) of a factory or class.

    A class whose __init__ passes **kwargs on to its parent's (HalfStepSGD(SGD)) takes the
    parent's names too, up the MRO; SharpnessAware's own **base_kwargs go to the base optimizer,
    which the caller adds."""
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    chain = [factory]
    if isinstance(factory, type):
        chain = [k.__init__ for k in factory.__mro__ if "__init__" in vars(k)]
    named: set[str] = set()
    required: list[str] = []
    for position, function in enumerate(chain):
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            return named, required, True
        parameters = parameters[2:] if isinstance(factory, type) else parameters[1:]
        named |= {p.name for p in parameters if p.kind in keyword}
        if position == 0:
            required = [p.name for p in parameters
                        if p.kind in keyword and p.default is inspect.Parameter.empty]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return named, required, False
        if function is SharpnessAware.__init__:
            return named, required, True
    return named, required, True


def _base_class(base: str | type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    if isinstance(base, type) and issubclass(base, torch.optim.Optimizer):
        return base
    key = str(base).lower()
    if key not in BASE_OPTIMIZERS:
        hint = difflib.get_close_matches(key, list(BASE_OPTIMIZERS), n=1, cutoff=0.4)
        extra = f"; did you mean {hint[0]}?" if hint else ""
        raise ArgumentError("base", f"base: unknown base optimizer {base!r}; choose from "
                            f"{', '.join(BASE_OPTIMIZERS)}{extra}")
    return BASE_OPTIMIZERS[key]


class _BuiltInFactory:
    """`create_optimizer`'s factory for one BUILT_INS entry; its signature lists exactly the
    config keys the built-in takes, so the argument check reads it like a user's class."""

    def __init__(self, name: str, spec: BuiltIn):
        self.name, self.spec = name, spec
        self.__doc__ = spec.doc
        self.__name__ = self.__qualname__ = name
        P = inspect.Parameter
        parameters = [P("params", P.POSITIONAL_OR_KEYWORD), P("lr", P.KEYWORD_ONLY)]
        if spec.base is None:
            parameters.append(P("base", P.KEYWORD_ONLY, default="sgd"))
        bases = [spec.base] if spec.base else list(BASE_ARGUMENTS)
        base_keys = dict.fromkeys(k for b in bases for k in BASE_ARGUMENTS[b])
        own = [*base_keys, *spec.own] + (list(SHARPNESS_AWARE_COMMON) if spec.cls else [])
        parameters += [P(key, P.KEYWORD_ONLY, default=spec.own.get(key)) for key in own]
        self.__signature__ = inspect.Signature(parameters)

    def check_base(self, kwargs: dict[str, Any]) -> None:
        """Refuse a base optimizer's argument given to the other base (momentum with adamw)."""
        base = self.spec.base or str(kwargs.get("base", "sgd")).lower()
        _base_class(base)
        for key in kwargs:
            if key in BASE_ARGUMENTS[base] or not any(key in BASE_ARGUMENTS[b]
                                                      for b in BASE_ARGUMENTS):
                continue
            other = next(b for b in BASE_ARGUMENTS if key in BASE_ARGUMENTS[b])
            raise ArgumentError(key, f"{key} does not apply to base {base!r} (it is for {other})")
        betas = kwargs.get("betas")
        if betas is not None and len(betas) != 2:
            raise ArgumentError("betas", f"betas must be two numbers, got {betas!r}")

    def __call__(self, params: Any, **kwargs: Any) -> torch.optim.Optimizer:
        self.check_base(kwargs)
        spec = self.spec
        base = spec.base or str(kwargs.pop("base", "sgd")).lower()
        arguments = {"lr": kwargs.pop("lr")}
        for key, default in BASE_ARGUMENTS[base].items():
            value = kwargs.pop(key, None)
            value = default if value is None else value
            if key == "nesterov":
                value = bool(value)
            if key == "betas":
                if value is None:
                    continue
                value = tuple(float(b) for b in value)
            arguments[key] = value
        for key in BASE_ARGUMENTS:  # the other base's arguments: checked above, all None here
            for other in BASE_ARGUMENTS[key]:
                kwargs.pop(other, None)
        if spec.cls is None:
            return BASE_OPTIMIZERS[base](params, **arguments)
        own = {key: kwargs.pop(key, default) for key, default in spec.own.items()}
        return spec.cls(params, BASE_OPTIMIZERS[base], **own, **kwargs, **arguments)


for _name, _spec in BUILT_INS.items():
    register_optimizer(_name)(_BuiltInFactory(_name, _spec))
