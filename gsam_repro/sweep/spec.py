"""Sweep specs: one YAML file that expands into many validated run configs.

A spec names a `base` run config and the axes that vary it (`grid`, `zip`, `seeds`), trims or
extends the product (`exclude`, `include`), and says how to dispatch (`executor`). `profiles` are
named overrides of any of it, `force` fixes config keys over every run, and `-o key=value` on the
command line overrides anything. docs/sweeps.md is the user's reference; this module is the one
place that reads specs.

Every mistake raises ConfigError naming the key path in the YAML (`grid.optimizer[1].rho`) and its
line. Expansion checks every run as `config_from_dict` would, but in two stages so that a
100,000-run grid expands in about a second: each written value is type-checked once, and each
combination of values gets the cross-key checks (ranges, choices, rho_min <= rho_max, ...) on a
config assembled from the already-checked parts. `Sweep.config(run)` builds a run's config with
`config_from_dict` itself, and `sweep run` does that for every run before it submits anything.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import itertools
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsam_repro.errors import ConfigError
from gsam_repro.sweep import ids
from gsam_repro.train import config as run_config
from gsam_repro.train.config import SECTIONS, RunConfig, closest, flatten, valid_keys
from gsam_repro.yamlio import KeyLines, load_yaml, parse_override, set_dotted

SPEC_KEYS = (
    "name", "description", "base", "out_dir", "grid", "zip", "include", "exclude", "seeds",
    "force", "profiles", "executor", "max_runs", "report",
)
PROFILE_KEYS = tuple(k for k in SPEC_KEYS if k not in ("name", "profiles"))
CONFIG_TOP = ("seed", *SECTIONS)
CLUSTERS = ("local", "debug", "slurm")
DEFAULT_MAX_RUNS = 10_000
DEFAULT_TIMEOUT_MIN = 24 * 60
LEAF_KEYS = frozenset([*valid_keys(), "seed"])
_MISSING = object()


# ----------------------------------------------------------------------------------------------
# parsed pieces


@dataclass
class Variant:
    """One value of an axis (or one include/exclude entry, or the forced keys): the config keys it
    sets, each with the spec key path it was written at."""

    path: str
    flat: dict[str, Any]
    paths: dict[str, str]
    coerced: dict[str, Any] = field(default_factory=dict)  # type-checked values, forced keys out


@dataclass
class Axis:
    """A grid key, a zip group or the seeds: runs take one of its variants each."""

    path: str
    keys: tuple[str, ...]  # config keys or section names, as written
    variants: list[Variant]

    def owns(self, key: str) -> bool:
        return any(key == k or key.startswith(k + ".") or k.startswith(key + ".")
                   for k in self.keys)


@dataclass
class ExecutorSpec:
    """How runs are dispatched; `params` go to submitit's AutoExecutor.update_parameters."""

    cluster: str = "local"
    timeout_min: float = DEFAULT_TIMEOUT_MIN
    max_parallel: int | None = None
    max_num_timeout: int = 3
    poll_s: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


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
    where: _Where = field(repr=False)

    def error(self, path: str, message: str) -> ConfigError:
        return self.where.error(path, message)


class _Where:
    """Maps a spec key path to the file and line it was written at: the spec itself, a base
    file, a profile, or a command-line override."""

    def __init__(self, source: str, lines: KeyLines):
        self.source = source
        self.lines = lines
        self.origins: dict[str, tuple[str, str | None, KeyLines | None]] = {}
        self.base_file: tuple[str, KeyLines] | None = None

    def redirect(self, path: str, shown: str, source: str | None, lines: KeyLines | None):
        """Values at `path` (and below) came from `shown` in `source` (None: an override)."""
        self.origins[path] = (shown, source, lines)

    def error(self, path: str, message: str) -> ConfigError:
        probe = path
        while probe:
            if probe in self.origins:
                shown, source, lines = self.origins[probe]
                shown = shown + path[len(probe):]
                if source is None:
                    return ConfigError(shown, message, source="override")
                return ConfigError(shown, message, source=source,
                                   line=lines.line(shown) if lines else None)
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        if self.base_file and (path == "base" or path.startswith("base.")) and path != "base":
            source, lines = self.base_file
            key = path[len("base."):]
            return ConfigError(key, message, source=source, line=lines.line(key))
        return ConfigError(path, message, source=self.source, line=self.lines.line(path))


# ----------------------------------------------------------------------------------------------
# loading


def load_spec(
    path: str | Path,
    overrides: list[str] | None = None,
    profile: str | None = None,
    out: str | Path | None = None,
) -> SweepSpec:
    """Read a sweep spec, apply a profile and `key=value` overrides, and type-check every value."""
    path = Path(path)
    tree, lines = load_yaml(path)
    where = _Where(str(path), lines)
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
        force_sources.append((_mapping(tree.pop("force"), "force", where), "force",
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
    base_cfg = _coerce_config(_apply(base, [force]), [("base", base), force], where)
    force.coerced = {k: v for k, v in base_cfg.flat().items() if k in force.flat}
    if "seed" in force.flat:
        force.coerced["seed"] = base_cfg.seed

    axes = _parse_axes(tree, where)
    seeds = _parse_seeds(tree.get("seeds"), where)
    if seeds is not None:
        for axis in axes:
            if "seed" in axis.keys:
                raise where.error("seeds", f"{axis.path} already varies seed; drop one of them")
        axes.append(seeds)
    for axis in axes:
        for variant in axis.variants:
            variant.coerced = _coerce_values(variant, base, force, where)
    exclude = _parse_entries(tree.get("exclude"), "exclude", axes, where)
    include = _parse_entries(tree.get("include"), "include", axes, where)
    executor = _parse_executor(tree.get("executor"), where)
    max_runs = tree.get("max_runs", DEFAULT_MAX_RUNS)
    if not isinstance(max_runs, int) or isinstance(max_runs, bool) or max_runs < 1:
        raise where.error("max_runs", f"expected a positive integer, got {max_runs!r}")
    report = tree.get("report") or {}
    if not isinstance(report, dict):
        raise where.error("report", f"expected a mapping, got {report!r}")

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
        overrides=list(overrides or []), resolved=resolved, where=where,
    )
    for entry in include:
        entry.coerced = _coerce_values(entry, base, force, where)
    return spec


def sweep_dir(
    spec_path: str | Path, overrides: list[str] | None = None, profile: str | None = None
) -> Path:
    """The folder a spec's runs and parquet files live in (`out_dir`, default results/<name>)."""
    return load_spec(spec_path, overrides, profile).out_dir


def _check_spec_keys(tree: dict, prefix: str, where: _Where, profile: bool = False) -> None:
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


def _mapping(value: Any, path: str, where: _Where) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.error(path, f"expected a mapping, got {value!r}")
    return value


def _apply_spec_override(
    tree: dict, key: str, value: Any, shown: str, source: str | None, lines: KeyLines | None,
    where: _Where, base_overrides: list[tuple[str, Any]],
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
    if head in ("grid", "executor", "report") and not rest and isinstance(value, dict):
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
    if head == "report" and rest:
        current = tree.get("report")
        current = dict(current) if isinstance(current, dict) else {}
        set_dotted(current, rest, value)
        tree["report"] = current
        where.redirect(key, shown, source, lines)
        return
    if rest:
        raise where.error(shown, f"{head} takes a whole value, not {key}")
    tree[head] = value
    where.redirect(head, shown, source, lines)


def _load_base(value: Any, spec_path: Path, where: _Where) -> dict:
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
                   where: _Where) -> Variant:
    """All config keys fixed over every run: the spec's `force:`, the profile, then `-o`."""
    flat: dict[str, Any] = {}
    paths: dict[str, str] = {}
    for mapping, prefix, source, lines in sources:
        for key, value in _flatten_config(mapping).items():
            shown = f"{prefix}.{key}" if prefix else key
            flat[key] = value
            paths[key] = f"force:{key}"
            where.redirect(f"force:{key}", shown, source, lines)
    return Variant(path="force", flat=flat, paths=paths)


def _flatten_config(mapping: dict) -> dict[str, Any]:
    """Nested or dotted config keys -> dotted keys (free-form `kwargs` mappings stay whole)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        key = str(key)
        if isinstance(value, dict) and key in SECTIONS:
            for sub, sub_value in flatten(value).items():
                out[f"{key}.{sub}"] = sub_value
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------------------------
# axes, seeds, include / exclude, executor


def _axis_key_error(key: str, path: str, where: _Where) -> ConfigError:
    hint = closest(key, [*LEAF_KEYS, *SECTIONS])
    extra = f"; did you mean {hint}?" if hint else ""
    return where.error(path, f"unknown config key{extra}")


def _axis_variants(key: str, values: Any, path: str, where: _Where) -> list[Variant]:
    if key not in LEAF_KEYS and key not in SECTIONS:
        raise _axis_key_error(key, path, where)
    if not isinstance(values, list):
        raise where.error(path, f"expected a list of values, got {values!r}")
    if not values:
        raise where.error(path, "empty axis: give at least one value")
    variants = []
    for i, value in enumerate(values):
        item = f"{path}[{i}]"
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise where.error(item, f"expected a mapping of {key} keys, got {value!r}")
            flat = {f"{key}.{sub}": v for sub, v in flatten(value).items()}
            paths = {k: f"{item}.{k[len(key) + 1:]}" for k in flat}
        else:
            flat, paths = {key: value}, {key: item}
        variants.append(Variant(path=item, flat=flat, paths=paths))
    return variants


def _parse_axes(tree: dict, where: _Where) -> list[Axis]:
    axes: list[Axis] = []
    seen: dict[str, str] = {}

    def claim(key: str, path: str) -> None:
        if key in seen:
            raise where.error(path, f"{key} is already an axis at {seen[key]}")
        seen[key] = path

    grid = _mapping(tree.get("grid"), "grid", where)
    for key, values in grid.items():
        key = str(key)
        path = f"grid.{key}"
        claim(key, path)
        axes.append(Axis(path=path, keys=(key,), variants=_axis_variants(key, values, path, where)))
    zips = tree.get("zip")
    if zips is None:
        groups: list[tuple[str, Any]] = []
    elif isinstance(zips, dict):
        groups = [("zip", zips)]
    elif isinstance(zips, list):
        groups = [(f"zip[{i}]", group) for i, group in enumerate(zips)]
    else:
        raise where.error("zip", f"expected a mapping (or a list of mappings), got {zips!r}")
    for group_path, group in groups:
        if not isinstance(group, dict) or not group:
            raise where.error(group_path, "expected a mapping of key -> list of values")
        columns = []
        for key, values in group.items():
            key = str(key)
            path = f"{group_path}.{key}"
            claim(key, path)
            columns.append((key, path, _axis_variants(key, values, path, where)))
        lengths = {key: len(variants) for key, _, variants in columns}
        if len(set(lengths.values())) > 1:
            first_key = columns[0][0]
            odd = next(k for k, n in lengths.items() if n != lengths[first_key])
            detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise where.error(f"{group_path}.{odd}",
                              f"zip axes must have the same number of values ({detail})")
        variants = []
        for i in range(lengths[columns[0][0]]):
            flat: dict[str, Any] = {}
            paths: dict[str, str] = {}
            for _, _, column in columns:
                flat.update(column[i].flat)
                paths.update(column[i].paths)
            variants.append(Variant(path=f"{group_path}[{i}]", flat=flat, paths=paths))
        axes.append(Axis(path=group_path, keys=tuple(k for k, _, _ in columns), variants=variants))
    return axes


def _parse_seeds(value: Any, where: _Where) -> Axis | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise where.error("seeds", f"expected a count or a list of integers, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise where.error("seeds", f"expected a count >= 1, got {value}")
        seeds = [(s, "seeds") for s in range(value)]
    elif isinstance(value, list):
        if not value:
            raise where.error("seeds", "empty axis: give a count or at least one seed")
        for i, s in enumerate(value):
            if not isinstance(s, int) or isinstance(s, bool):
                raise where.error(f"seeds[{i}]", f"expected an integer, got {s!r}")
        seeds = [(s, f"seeds[{i}]") for i, s in enumerate(value)]
    else:
        raise where.error("seeds", f"expected a count or a list of integers, got {value!r}")
    variants = [Variant(path=p, flat={"seed": s}, paths={"seed": p}) for s, p in seeds]
    return Axis(path="seeds", keys=("seed",), variants=variants)


def _parse_entries(value: Any, kind: str, axes: list[Axis], where: _Where) -> list[Variant]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(kind, f"expected a list of mappings, got {value!r}")
    entries = []
    for i, entry in enumerate(value):
        path = f"{kind}[{i}]"
        if not isinstance(entry, dict) or not entry:
            raise where.error(path, f"expected a mapping of axis key -> value, got {entry!r}")
        flat = _flatten_config(entry)
        paths = {}
        for key in flat:
            paths[key] = f"{path}.{key}"
            if key not in LEAF_KEYS:  # a typo would otherwise match, or exclude, nothing
                raise _axis_key_error(key, paths[key], where)
            if not any(axis.owns(key) for axis in axes):
                axis_keys = ", ".join(k for axis in axes for k in axis.keys) or "none"
                raise where.error(paths[key], f"no axis varies {key} (axes: {axis_keys})")
        entries.append(Variant(path=path, flat=flat, paths=paths))
    return entries


def _submitit_parameters() -> dict[str, Any]:
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


def _parse_executor(value: Any, where: _Where) -> ExecutorSpec:
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
        typed = _submitit_parameters()
        for key, v in others.items():
            if key not in typed:
                hint = closest(key, [*own, *typed])
                extra = f"; did you mean {hint}?" if hint else ""
                raise where.error(f"executor.{key}", f"unknown executor key{extra}")
            if not _type_ok(v, typed[key]):
                raise where.error(f"executor.{key}", f"wrong type for {key}: {v!r}")
        spec.params = others
    return spec


# ----------------------------------------------------------------------------------------------
# type-checking values (per value) and checking runs (per combination)


def _apply(base: dict, variants: list[Variant]) -> dict:
    tree = copy.deepcopy(base)
    for variant in variants:
        for key, value in variant.flat.items():
            set_dotted(tree, key, copy.deepcopy(value))
    return tree


def _source_path(key: str, sources: list[tuple[str, dict] | Variant]) -> str:
    """The spec key path that set config `key` in a run built from `sources` (last wins)."""
    for source in reversed(sources):
        if isinstance(source, Variant):
            for written, path in source.paths.items():
                if written == key or key.startswith(written + "."):
                    return path + key[len(written):]
                if written.startswith(key + "."):
                    return path[: len(path) - len(written) + len(key)]
        else:
            prefix, tree = source
            node: Any = tree
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    break
                node = node[part]
            else:
                return f"{prefix}.{key}"
    return f"base.{key}"


def _attribute(err: ConfigError, sources: list, where: _Where) -> ConfigError:
    path = _source_path(err.key, sources) if err.key else "base"
    return where.error(path, err.message)


def _raw_error(key: str, message: str) -> ConfigError:
    return ConfigError(key, message)


def _coerce_config(tree: dict, sources: list, where: _Where) -> RunConfig:
    """A RunConfig with every value type-checked, before the cross-key checks (which need a
    whole run: the base alone may rightly lack a key an axis provides)."""
    try:
        for key in tree:
            if key not in CONFIG_TOP:
                hint = closest(str(key), list(CONFIG_TOP))
                extra = f"; did you mean {hint}?" if hint else ""
                raise ConfigError(str(key), f"unknown key{extra}")
        seed = run_config.coerce_value("seed", tree.get("seed", 0), int, _raw_error)
        sections = {
            name: run_config.section_from_dict(name, cls, tree.get(name), _raw_error, None, None)
            for name, cls in SECTIONS.items()
        }
    except ConfigError as err:
        raise _attribute(err, sources, where) from None
    return RunConfig(seed=seed, **sections)


def _coerce_values(variant: Variant, base: dict, force: Variant, where: _Where) -> dict:
    cfg = _coerce_config(_apply(base, [variant, force]), [("base", base), variant, force], where)
    flat = cfg.flat()
    flat["seed"] = cfg.seed
    return {k: flat[k] for k in flat
            if k not in force.flat and any(k == w or k.startswith(w + ".") or w.startswith(k + ".")
                                           for w in variant.flat)}


# ----------------------------------------------------------------------------------------------
# expansion


class PlannedRun:
    """One run of a sweep: its id, directory name and which variant of each axis it takes."""

    __slots__ = ("run_id", "name", "choice", "include")

    def __init__(self, run_id: str, name: str, choice: tuple[int, ...], include: int):
        self.run_id = run_id
        self.name = name
        self.choice = choice  # variant index per axis; -1: the axis is not applied
        self.include = include  # index into spec.include, or -1

    def __repr__(self) -> str:
        return f"PlannedRun({self.name!r})"


@dataclass
class Sweep:
    """A spec expanded into runs (ids, names, which variants), configs built on demand."""

    spec: SweepSpec
    runs: list[PlannedRun]
    varying: list[str]  # config keys whose value differs between runs, in axis order
    short: dict[str, str]  # varying key -> short column name
    duplicates: int  # runs asked for more than once (same id), dropped
    warnings: list[str] = field(default_factory=list)  # e.g. an exclude entry matching no run

    def sources(self, run: PlannedRun) -> list:
        spec = self.spec
        out: list = [("base", spec.base)]
        out += [axis.variants[i] for axis, i in zip(spec.axes, run.choice, strict=True) if i >= 0]
        if run.include >= 0:
            out.append(spec.include[run.include])
        out.append(spec.force)
        return out

    def values(self, run: PlannedRun) -> dict[str, Any]:
        """Each varying key's checked value in this run."""
        flat = self.spec.base_cfg.flat()
        flat["seed"] = self.spec.base_cfg.seed
        values = {k: flat.get(k) for k in self.varying}
        for source in self.sources(run)[1:-1]:
            for key in self.varying:
                if key in source.coerced:
                    values[key] = source.coerced[key]
        return values

    def tree(self, run: PlannedRun) -> dict:
        """The run's config as nested data, ready for `config_from_dict`."""
        return _apply(self.spec.base, [s for s in self.sources(run)[1:]])

    def config(self, run: PlannedRun) -> RunConfig:
        """The run's config through `config_from_dict` itself; its id must match the plan's."""
        try:
            cfg = run_config.config_from_dict(self.tree(run))
        except ConfigError as err:
            raise _attribute(err, self.sources(run), self.spec.where) from None
        rid = run_config.run_id(cfg)
        if rid != run.run_id:
            raise RuntimeError(f"run id mismatch for {run.name}: planned {run.run_id}, "
                               f"config_from_dict gives {rid} (sweep ids out of step with "
                               f"gsam_repro.train.config.run_id)")
        return cfg


@dataclass
class _Prepared:
    """Per-variant data for the expansion loop."""

    fragments: list[tuple[int, str]]
    sections: dict[str, dict[str, Any]]
    seed: Any
    lr: Any
    lr_min: Any
    names: dict[str, str]


def _prepare(variant: Variant, idb: ids.IdBuilder, varying: set[str], short: dict[str, str]):
    fragments = []
    sections: dict[str, dict[str, Any]] = {}
    for key, value in variant.coerced.items():
        frag = idb.fragment(key, value)
        if frag:
            fragments.append(frag)
        if key != "seed":
            section, _, name = key.partition(".")
            sections.setdefault(section, {})[name] = value
    names = {k: ids.name_piece(short[k], variant.coerced[k])
             for k in variant.coerced if k in varying}
    return _Prepared(
        fragments=fragments, sections=sections, seed=variant.coerced.get("seed", _MISSING),
        lr=variant.coerced.get("optimizer.lr", _MISSING),
        lr_min=variant.coerced.get("schedule.lr_min", _MISSING), names=names,
    )


def _loose_equal(a: Any, b: Any) -> bool:
    """Equality for include/exclude values written by hand: 5e-4 (read as text) equals 0.0005."""
    if a == b:
        return True
    try:
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _varying_keys(spec: SweepSpec) -> list[str]:
    """Identifying config keys that take more than one value across the runs."""
    base = spec.base_cfg.flat()
    values: dict[str, set[str]] = {}
    always_set: set[str] = set()
    for axis in spec.axes:
        for key in dict.fromkeys(k for v in axis.variants for k in v.coerced):
            values.setdefault(key, set()).update(
                ids._dump(v.coerced[key]) for v in axis.variants if key in v.coerced)
            if all(key in v.coerced for v in axis.variants):
                always_set.add(key)
    for entry in spec.include:
        for key, value in entry.coerced.items():
            values.setdefault(key, set()).add(ids._dump(value))
        for axis in spec.axes:
            if any(axis.owns(k) for k in entry.flat):  # skipped in this include's runs
                for key in {k for v in axis.variants for k in v.coerced} - set(entry.coerced):
                    values[key].add(ids._dump(base.get(key)))
    for key in values:
        if key not in always_set:
            values[key].add(ids._dump(base.get(key)))
    keys = [k for k, v in values.items() if len(v) > 1 and k not in run_config.NON_IDENTIFYING]
    return sorted(keys, key=lambda k: k == "seed")  # seed last: runs of one setting sort together


def expand(spec: SweepSpec, *, yes: bool = False) -> Sweep:
    """Expand a spec into its runs, checking each as `config_from_dict` would.

    Raises ConfigError for a run that fails a check (naming the spec key that set the value),
    for a spec with no runs, and for more than `max_runs` runs unless `yes`."""
    grid = count_distinct_grid(spec)
    if not yes and grid is not None and grid > spec.max_runs:  # refused before any run id
        raise _too_many(spec, grid, exact=not spec.include)
    idb = ids.IdBuilder(spec.base_cfg.flat() | {"seed": spec.base_cfg.seed})
    varying = _varying_keys(spec)
    short = ids.short_keys(varying)
    varying_set = set(varying)
    prepared = [[_prepare(v, idb, varying_set, short) for v in axis.variants]
                for axis in spec.axes]
    prepared_include = [_prepare(e, idb, varying_set, short) for e in spec.include]
    base_cfg = spec.base_cfg
    base_flat = base_cfg.flat() | {"seed": base_cfg.seed}
    base_names = {k: ids.name_piece(short[k], base_flat.get(k)) for k in varying}
    # the cross-key checks do not depend on the seed: check each combination of the rest once
    non_seed = [j for j, axis in enumerate(spec.axes) if axis.keys != ("seed",)]
    checked: set[tuple] = set()
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    duplicates = 0
    excluded = 0

    def build(choice: tuple[int, ...], include: int) -> None:
        nonlocal duplicates
        parts = [prepared[j][i] for j, i in enumerate(choice) if i >= 0]
        if include >= 0:
            parts.append(prepared_include[include])
        memo = (tuple([choice[j] for j in non_seed]), include)
        if memo not in checked:
            _check_run(spec, choice, include, parts)
            checked.add(memo)
        fragments = idb.fragments()
        lr, lr_min = base_cfg.optimizer.lr, base_cfg.schedule.lr_min
        names = dict(base_names)
        for part in parts:
            for pos, text in part.fragments:
                fragments[pos] = text
            if part.lr is not _MISSING:
                lr = part.lr
            if part.lr_min is not _MISSING:
                lr_min = part.lr_min
            names.update(part.names)
        rid = idb.finish(fragments, lr, lr_min)
        if rid in seen:
            duplicates += 1
            return
        seen.add(rid)
        runs.append(PlannedRun(rid, ids.run_dir_name([names[k] for k in varying if names[k]], rid),
                               choice, include))

    def check_count() -> None:  # stop as soon as the runs exceed max_runs: O(max_runs)
        if not yes and len(runs) > spec.max_runs:
            raise _too_many(spec, len(runs), exact=False)

    matchers = [_exclude_matcher(spec, entry) for entry in spec.exclude]
    unmatched = list(range(len(matchers)))  # exclude entries that have matched nothing yet
    for choice in itertools.product(*(range(len(axis.variants)) for axis in spec.axes)):
        if matchers:
            hits = [k for k in unmatched if matchers[k](choice)]
            if hits:
                unmatched = [k for k in unmatched if k not in hits]
            if hits or any(match(choice) for match in matchers):
                excluded += 1
                continue
        build(choice, -1)
        check_count()
    for k, entry in enumerate(spec.include):
        named = [any(axis.owns(key) for key in entry.flat) for axis in spec.axes]
        ranges = [range(-1, 0) if n else range(len(axis.variants))
                  for axis, n in zip(spec.axes, named, strict=True)]
        for choice in itertools.product(*ranges):
            build(choice, k)
            check_count()
    notes = [str(spec.error(f"exclude[{k}]", "matches no run of the grid: it excludes nothing"))
             for k in unmatched]
    if not runs:
        if spec.exclude:
            raise spec.error("exclude", "the spec expands to zero runs: every combination is "
                             "excluded")
        raise spec.error("grid", "the spec expands to zero runs")
    if not yes and len(runs) > spec.max_runs:
        raise _too_many(spec, len(runs), exact=True)
    return Sweep(spec=spec, runs=runs, varying=varying, short=short, duplicates=duplicates,
                 warnings=notes)


def count_distinct_grid(spec: SweepSpec) -> int | None:
    """The exact number of distinct runs of the grid alone (axes, no exclude or include), from
    the axes' values without building a run id; None when it cannot be told that way (exclude
    entries, axes setting overlapping keys, or schedule.lr_min, whose default depends on lr)."""
    if spec.exclude:
        return None
    keys_seen: list[str] = []
    base = spec.base_cfg.flat() | {"seed": spec.base_cfg.seed}
    total = 1
    for axis in spec.axes:
        keys = sorted({k for v in axis.variants for k in v.coerced}
                      - run_config.NON_IDENTIFYING)
        for key in keys:
            if key == "schedule.lr_min" or any(
                    key == o or key.startswith(o + ".") or o.startswith(key + ".")
                    for o in keys_seen):
                return None
        keys_seen += keys
        total *= len({ids._dump([v.coerced.get(k, base.get(k)) for k in keys])
                      for v in axis.variants})
    return total


def _too_many(spec: SweepSpec, count: int, exact: bool) -> ConfigError:
    what = f"{count:,} runs" if exact else f"at least {count:,} runs"
    return spec.error("max_runs", f"the spec expands to {what}, more than max_runs "
                      f"{spec.max_runs:,}; raise max_runs or pass --yes")


def _exclude_matcher(spec: SweepSpec, entry: Variant):
    base = spec.base_cfg.flat() | {"seed": spec.base_cfg.seed}
    checks = []
    for key, wanted in entry.flat.items():
        setters = [(j, [v.coerced.get(key, _MISSING) for v in axis.variants])
                   for j, axis in enumerate(spec.axes)
                   if any(key in v.coerced for v in axis.variants)]
        checks.append((key, wanted, setters[::-1], base.get(key)))

    def match(choice: tuple[int, ...]) -> bool:
        for _key, wanted, setters, default in checks:
            value = default
            for j, by_variant in setters:
                got = by_variant[choice[j]]
                if got is not _MISSING:
                    value = got
                    break
            if not _loose_equal(value, wanted):
                return False
        return True

    return match


def _check_run(spec: SweepSpec, choice: tuple[int, ...], include: int,
               parts: list[_Prepared]) -> None:
    """The cross-key checks of `config_from_dict` on a config assembled from checked parts."""
    base = spec.base_cfg
    merged: dict[str, dict[str, Any]] = {}
    seed = base.seed
    for part in parts:
        for section, values in part.sections.items():
            merged.setdefault(section, {}).update(values)
        if part.seed is not _MISSING:
            seed = part.seed
    sections = {name: dataclasses.replace(getattr(base, name), **merged[name])
                if name in merged else getattr(base, name) for name in SECTIONS}
    cfg = RunConfig(seed=seed, **sections)
    try:
        run_config.check_config(cfg, _raw_error)
    except ConfigError as err:
        run = PlannedRun("", "", choice, include)
        sweep = Sweep(spec=spec, runs=[], varying=[], short={}, duplicates=0)
        raise _attribute(err, sweep.sources(run), spec.where) from None


def iter_axes_summary(sweep: Sweep) -> Iterator[tuple[str, list[str]]]:
    """(varying key, its distinct values in run order) for the plan's header."""
    columns: dict[str, list[str]] = {k: [] for k in sweep.varying}
    seen: dict[str, set[str]] = {k: set() for k in sweep.varying}
    for run in sweep.runs[:10_000]:
        for key, value in sweep.values(run).items():
            text = ids.format_value(value)
            if text not in seen[key]:
                seen[key].add(text)
                columns[key].append(text)
    yield from columns.items()
