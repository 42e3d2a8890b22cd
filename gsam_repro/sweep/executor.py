"""A spec's `executor:` section: which cluster, time limits, and the keys passed to submitit."""

from __future__ import annotations

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



SET_BY_SWEEP = ("name",)  # make_executor passes the job name itself


def submitit_problem(key: str, value: Any) -> Exception | None:
    """Why submitit refuses `key: value` as an executor parameter (NameError: a name it does not
    know), or None if it takes it.

    Asks submitit itself, through its public `AutoExecutor.update_parameters`, on a throwaway
    executor: the same check `sweep run` meets, made at plan time. The "debug" executor needs no
    cluster and still checks every cluster's parameter names and the shared parameters' types
    (cluster-specific value types are checked by that cluster's executor when `sweep run` builds
    it, before anything is submitted)."""
    import tempfile
    import warnings

    import submitit

    with tempfile.TemporaryDirectory(prefix="gsam-executor-check-") as folder:
        executor = submitit.AutoExecutor(folder=folder, cluster="debug")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a deprecated name ("partition") is refused too
            try:
                executor.update_parameters(**{key: value})
            except (NameError, AssertionError, ValueError, TypeError, UserWarning) as err:
                return err
    return None


def submitit_parameter_names() -> list[str]:
    """Every executor parameter name submitit knows, for "did you mean" hints only.

    submitit has no public listing of its parameters, so this reads the executors' private
    `_valid_parameters()` (tests/sweep/test_sweep_executor.py pins it). If a submitit release drops
    it, the hints go (an empty list) and the checks in `submitit_problem` still hold."""
    try:
        from submitit import AutoExecutor
        from submitit.core import plugins

        names = set(AutoExecutor._valid_parameters())
        for cluster, executor in plugins.get_executors().items():
            names.update(f"{cluster}_{name}" for name in executor._valid_parameters())
    except (ImportError, AttributeError, TypeError):
        return []
    return sorted(names - {"timeout_min", *SET_BY_SWEEP})


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
    for key, v in others.items():
        if key in SET_BY_SWEEP:
            raise where.error(f"executor.{key}", "set by the sweep (each run's job name)")
        problem = submitit_problem(key, v)
        if isinstance(problem, NameError):
            hint = closest(key, [*own, *submitit_parameter_names()])
            raise where.error(f"executor.{key}", f"unknown executor key; did you mean {hint}?"
                              if hint else "unknown executor key")
        if problem is not None:
            detail = (str(problem).splitlines() or [type(problem).__name__])[0]
            raise where.error(f"executor.{key}", f"submitit refuses {key}={v!r}: {detail}")
    spec.params = others
    return spec
