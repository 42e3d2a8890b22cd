"""A spec's `executor:` section: which cluster, time limits, and the keys passed to submitit."""

from __future__ import annotations

import collections.abc
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from gsam_repro.sweep.where import Where
from gsam_repro.train.config import closest

CLUSTERS = ("local", "debug", "slurm")
DEFAULT_TIMEOUT_MIN = 24 * 60


@dataclass
class ExecutorSpec:
    """How runs are dispatched; `params` go to submitit's AutoExecutor.update_parameters."""

    cluster: str = "local"
    timeout_min: float = DEFAULT_TIMEOUT_MIN
    max_parallel: int | None = None
    max_num_timeout: int = 3
    poll_s: float | None = None
    params: dict[str, Any] = field(default_factory=dict)



def submitit_parameters() -> dict[str, Any]:
    """Executor keys passed to submitit, with the type each takes (None: any)."""
    from submitit import AutoExecutor
    from submitit.slurm import slurm

    typed: dict[str, Any] = {k: t for k, t in AutoExecutor._typed_parameters().items()
                             if k not in ("name", "timeout_min")}
    hints = typing.get_type_hints(slurm._make_sbatch_string)
    for name in slurm.SlurmExecutor._valid_parameters():
        typed[f"slurm_{name}"] = hints.get(name)
    typed["local_setup"] = list
    return typed


def _type_ok(value: Any, annotation: Any) -> bool:
    if annotation is None or annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    kind = origin or annotation
    if kind in (list, collections.abc.Iterable):
        return isinstance(value, list)
    if kind is dict:
        return isinstance(value, dict)
    return True


def parse_executor(value: Any, where: Where) -> ExecutorSpec:
    if value is None:
        value = {}
    if isinstance(value, str):
        value = {"cluster": value}
    if not isinstance(value, dict):
        raise where.error("executor", f"expected a mapping or one of {', '.join(CLUSTERS)}")
    spec = ExecutorSpec()
    cluster = value.get("cluster", "local")
    if cluster not in CLUSTERS:
        hint = closest(str(cluster), CLUSTERS)
        extra = f"; did you mean {hint}?" if hint else ""
        raise where.error("executor.cluster",
                          f"{cluster!r} is not one of {', '.join(CLUSTERS)}{extra}")
    spec.cluster = cluster
    own = {"cluster", "timeout_min", "max_parallel", "max_num_timeout", "poll_s"}
    for key in ("timeout_min", "poll_s"):
        if key in value:
            v = value[key]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise where.error(f"executor.{key}", f"expected a number > 0, got {v!r}")
            setattr(spec, key, float(v))
    for key, low in (("max_parallel", 1), ("max_num_timeout", 0)):
        if key in value and not (key == "max_parallel" and value[key] is None):
            v = value[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise where.error(f"executor.{key}", f"expected an integer >= {low}, got {v!r}")
            setattr(spec, key, v)
    others = {str(k): v for k, v in value.items() if k not in own}
    if others:
        typed = submitit_parameters()
        for key, v in others.items():
            if key not in typed:
                hint = closest(key, [*own, *typed])
                extra = f"; did you mean {hint}?" if hint else ""
                raise where.error(f"executor.{key}", f"unknown executor key{extra}")
            if not _type_ok(v, typed[key]):
                raise where.error(f"executor.{key}", f"wrong type for {key}: {v!r}")
        spec.params = others
    return spec

