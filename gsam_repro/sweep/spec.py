"""Sweep specs: one YAML file that expands into many validated run configs.

A spec names a `base` run config and the axes that vary it (`grid`, `zip`, `seeds`), trims or
extends the product (`exclude`, `include`), and says how to dispatch (`executor`). `profiles` are
named overrides of any of it, `force` fixes config keys over every run, and `-o key=value` on the
command line overrides anything. docs/sweeps.md is the user's reference; this module is the one
place that reads spec files (the axes are parsed in grid.py, the executor section in executor.py,
and plan.py expands a spec into runs).

Every mistake raises ConfigError naming the key path in the YAML (`grid.optimizer[1].rho`) and its
line. Every written value is type-checked here, once; the cross-key checks need whole runs and
happen in plan.py.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsam_repro.errors import ConfigError
from gsam_repro.sweep import ids
from gsam_repro.sweep.executor import ExecutorSpec, parse_executor
from gsam_repro.sweep.grid import Axis, parse_axes, parse_entries, parse_seeds
from gsam_repro.sweep.tune import TuneSpec, parse_section, trial_axis
from gsam_repro.sweep.values import (
    CONFIG_TOP,
    LEAF_KEYS,
    Variant,
    apply_variants,
    coerce_config,
    coerce_values,
    flatten_config,
)
from gsam_repro.sweep.where import Where, mapping
from gsam_repro.train.config import RunConfig, closest, flatten
from gsam_repro.yamlio import KeyLines, load_yaml, parse_override, set_dotted

__all__ = ["ExecutorSpec", "SweepSpec", "load_spec", "sweep_dir"]

SPEC_KEYS = (
    "name", "description", "base", "out_dir", "grid", "zip", "include", "exclude", "seeds",
    "force", "profiles", "executor", "max_runs", "report", "tune",
)
PROFILE_KEYS = tuple(k for k in SPEC_KEYS if k not in ("name", "profiles"))
DEFAULT_MAX_RUNS = 10_000


@dataclass
class SweepSpec:
    """A spec after profile and overrides, every value type-checked."""

    name: str
    source: str
    out_dir: Path
    base: dict
    base_cfg: RunConfig  # base + force, type-checked (cross-key checks happen per run)
    axes: list[Axis]
    include: list[Variant]
    exclude: list[Variant]
    force: Variant
    executor: ExecutorSpec
    max_runs: int
    report: dict
    description: str | None
    profile: str | None
    overrides: list[str]
    resolved: dict  # the spec as run, for spec.yaml
    where: Where = field(repr=False)
    tune: TuneSpec | None = None  # equal tuning budgets (sweep/tune.py); its trials: axes

    def error(self, path: str, message: str) -> ConfigError:
        return self.where.error(path, message)



def load_spec(
    path: str | Path,
    overrides: list[str] | None = None,
    profile: str | None = None,
    out: str | Path | None = None,
) -> SweepSpec:
    """Read a sweep spec, apply a profile and `key=value` overrides, and type-check every value."""
    path = Path(path)
    tree, lines = load_yaml(path)
    where = Where(str(path), lines)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError("", f"a sweep spec must be a mapping, got {type(tree).__name__}",
                          source=str(path))
    _check_spec_keys(tree, "", where)
    tree = copy.deepcopy(tree)
    base_overrides: list[tuple[str, Any]] = []
    force_sources: list[tuple[dict, str, str | None, KeyLines | None]] = []
    if "force" in tree:
        force_sources.append((mapping(tree.pop("force"), "force", where), "force",
                              str(path), lines))
    profiles = tree.pop("profiles", None)
    if profiles is not None and not isinstance(profiles, dict):
        raise where.error("profiles", "expected a mapping of profile name -> overrides")
    out_dir_set_by_override = False
    if profile is not None:
        if not profiles or profile not in profiles:
            known = ", ".join(map(str, profiles or {})) or "none"
            hint = closest(profile, list(map(str, profiles or {})))
            extra = f"; did you mean {hint}?" if hint else ""
            raise where.error("profiles", f"unknown profile {profile!r} (this spec has: {known})"
                              f"{extra}")
        body = profiles[profile]
        prefix = f"profiles.{profile}"
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise where.error(prefix, "expected a mapping of overrides")
        _check_spec_keys(body, prefix + ".", where, profile=True)
        config_part = {k: v for k, v in body.items() if str(k).split(".")[0] in CONFIG_TOP}
        if config_part:
            force_sources.append((config_part, prefix, str(path), lines))
        for key, value in body.items():
            key = str(key)
            if key.split(".")[0] in CONFIG_TOP:
                continue
            out_dir_set_by_override |= key == "out_dir"
            _apply_spec_override(tree, key, copy.deepcopy(value), f"{prefix}.{key}", str(path),
                                 lines, where, base_overrides)
    override_force: dict[str, Any] = {}
    for item in overrides or []:
        key, value = parse_override(item)
        head = key.split(".")[0]
        if head in CONFIG_TOP:
            override_force[key] = value
            continue
        if head not in PROFILE_KEYS:
            hint = closest(head, [*PROFILE_KEYS, *LEAF_KEYS])
            extra = f"; did you mean {hint}?" if hint else ""
            raise ConfigError(key, f"unknown key{extra}", source="override")
        out_dir_set_by_override |= key == "out_dir"
        _apply_spec_override(tree, key, value, key, None, None, where, base_overrides)
    if override_force:
        force_sources.append((override_force, "", None, None))

    name = tree.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise where.error("name", f"expected a non-empty string, got {name!r}")
    name = ids.safe_name(name.strip())
    description = tree.get("description")
    if description is not None and not isinstance(description, str):
        raise where.error("description", "expected a string")

    if out is not None:
        out_dir = Path(out)
    elif tree.get("out_dir") is not None:
        if not isinstance(tree["out_dir"], str):
            raise where.error("out_dir", f"expected a path, got {tree['out_dir']!r}")
        out_dir = Path(tree["out_dir"])
        if profile and not out_dir_set_by_override:
            out_dir = out_dir.with_name(f"{out_dir.name}-{profile}")
    else:
        out_dir = Path("results") / (f"{name}-{profile}" if profile else name)

    base = _load_base(tree.get("base"), path, where)
    for key, value in base_overrides:
        set_dotted(base, key, value)
    force = _force_variant(force_sources, where)
    base_cfg = coerce_config(apply_variants(base, [force]), [("base", base), force], where)
    force.coerced = {k: v for k, v in base_cfg.flat().items() if k in force.flat}
    if "seed" in force.flat:
        force.coerced["seed"] = base_cfg.seed

    tuned = parse_section(tree, where.error)
    axes = parse_axes(tree, where)
    seeds = parse_seeds(tree.get("seeds"), where)
    if seeds is not None:
        for axis in axes:
            if "seed" in axis.keys:
                raise where.error("seeds", f"{axis.path} already varies seed; drop one of them")
        axes.append(seeds)
    for axis in axes:
        for variant in axis.variants:
            variant.coerced = coerce_values(variant, base, force, where)
    exclude = parse_entries(tree.get("exclude"), "exclude", axes, where)
    include = parse_entries(tree.get("include"), "include", axes, where)
    executor = parse_executor(tree.get("executor"), where)
    max_runs = tree.get("max_runs", DEFAULT_MAX_RUNS)
    if not isinstance(max_runs, int) or isinstance(max_runs, bool) or max_runs < 1:
        raise where.error("max_runs", f"expected a positive integer, got {max_runs!r}")
    report = tree.get("report") or {}
    if not isinstance(report, dict):
        raise where.error("report", f"expected a mapping, got {report!r}")
    if tuned is not None:
        axes = [trial_axis(tuned, base, force, where)]

    resolved = {k: v for k, v in tree.items() if k in SPEC_KEYS}
    resolved["name"] = name
    resolved["base"] = base
    resolved["out_dir"] = str(out_dir)
    if force.flat:
        resolved["force"] = dict(force.flat)
    spec = SweepSpec(
        name=name, source=str(path), out_dir=out_dir, base=base, base_cfg=base_cfg, axes=axes,
        include=include, exclude=exclude, force=force, executor=executor, max_runs=max_runs,
        report=report, description=description, profile=profile,
        overrides=list(overrides or []), resolved=resolved, where=where, tune=tuned,
    )
    for entry in include:
        entry.coerced = coerce_values(entry, base, force, where)
    return spec


def sweep_dir(
    spec_path: str | Path, overrides: list[str] | None = None, profile: str | None = None
) -> Path:
    """The folder a spec's runs and parquet files live in (`out_dir`, default results/<name>)."""
    return load_spec(spec_path, overrides, profile).out_dir


def _check_spec_keys(tree: dict, prefix: str, where: Where, profile: bool = False) -> None:
    allowed = PROFILE_KEYS if profile else SPEC_KEYS
    for key in tree:
        head = str(key).split(".")[0]
        if head in allowed or (profile and head in CONFIG_TOP):
            continue
        if head in CONFIG_TOP:
            message = "unknown key; run config keys go under base: (or force:)"
        else:
            hint = closest(str(key), list(allowed) + (list(LEAF_KEYS) if profile else []))
            message = f"unknown key; did you mean {hint}?" if hint else "unknown key"
            if not hint:
                message += f" (spec keys: {', '.join(allowed)})"
        raise where.error(f"{prefix}{key}", message)



def _apply_spec_override(
    tree: dict, key: str, value: Any, shown: str, source: str | None, lines: KeyLines | None,
    where: Where, base_overrides: list[tuple[str, Any]],
) -> None:
    """Put one profile or command-line value into the spec tree, remembering where it came from.

    Mappings (`executor`, `report`, `base`, and `grid` axis by axis) merge; the rest replace."""
    head, _, rest = key.partition(".")
    if head == "base":
        if rest:
            base_overrides.append((rest, value))
            where.redirect(key, shown, source, lines)
        elif isinstance(value, dict):
            for sub, sub_value in flatten(value).items():
                base_overrides.append((sub, sub_value))
                where.redirect(f"base.{sub}", f"{shown}.{sub}", source, lines)
        else:
            tree["base"] = value
            where.redirect("base", shown, source, lines)
        return
    if head in ("grid", "zip") and rest:
        section = tree.setdefault(head, {})
        if not isinstance(section, dict):
            raise where.error(head, f"expected a mapping to override {key}")
        section[rest] = value
        where.redirect(key, shown, source, lines)
        return
    if head in ("grid", "executor", "report", "tune") and not rest and isinstance(value, dict):
        current = tree.get(head)
        if head == "executor" and isinstance(current, str):
            current = {"cluster": current}
        merged = dict(current) if isinstance(current, dict) else {}
        for sub, sub_value in value.items():
            merged[sub] = sub_value
            where.redirect(f"{head}.{sub}", f"{shown}.{sub}", source, lines)
        tree[head] = merged
        return
    if head == "executor" and rest:
        current = tree.get("executor")
        if isinstance(current, str):
            current = {"cluster": current}
        current = dict(current) if isinstance(current, dict) else {}
        set_dotted(current, rest, value)
        tree["executor"] = current
        where.redirect(key, shown, source, lines)
        return
    if head in ("report", "tune") and rest:
        current = tree.get(head)
        current = dict(current) if isinstance(current, dict) else {}
        set_dotted(current, rest, value)
        tree[head] = current
        where.redirect(key, shown, source, lines)
        return
    if rest:
        raise where.error(shown, f"{head} takes a whole value, not {key}")
    tree[head] = value
    where.redirect(head, shown, source, lines)


def _load_base(value: Any, spec_path: Path, where: Where) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return copy.deepcopy(value)
    if not isinstance(value, str):
        raise where.error("base", f"expected a mapping or a path to a run config, got {value!r}")
    base_path = Path(value)
    if not base_path.is_absolute():
        base_path = spec_path.parent / base_path
    if not base_path.is_file():
        raise where.error("base", f"{base_path}: no such file")
    base, base_lines = load_yaml(base_path)
    if base is None:
        base = {}
    if not isinstance(base, dict):
        raise where.error("base", f"{base_path}: a run config must be a mapping")
    where.base_file = (str(base_path), base_lines)
    return base


def _force_variant(sources: list[tuple[dict, str, str | None, KeyLines | None]],
                   where: Where) -> Variant:
    """All config keys fixed over every run: the spec's `force:`, the profile, then `-o`."""
    flat: dict[str, Any] = {}
    paths: dict[str, str] = {}
    for written, prefix, source, lines in sources:
        for key, value in flatten_config(written).items():
            shown = f"{prefix}.{key}" if prefix else key
            flat[key] = value
            paths[key] = f"force:{key}"
            where.redirect(f"force:{key}", shown, source, lines)
    return Variant(path="force", flat=flat, paths=paths)



_MOVED_TO_PLAN = ("PlannedRun", "Sweep", "expand", "count_distinct_grid", "iter_axes_summary")


def __getattr__(name: str) -> Any:
    """`from gsam_repro.sweep.spec import expand` keeps working: expansion lives in plan.py, which
    imports this module, so the names are looked up there on first use rather than at import."""
    if name in _MOVED_TO_PLAN:
        from gsam_repro.sweep import plan
        return getattr(plan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
