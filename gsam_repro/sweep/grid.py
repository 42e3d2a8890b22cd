"""A spec's axes (`grid`, `zip`, `seeds`) and `include`/`exclude` entries: parsing them, and the
facts about their product that need no run config (which keys vary, how many runs, which
combinations an exclude entry drops)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from gsam_repro.errors import ConfigError
from gsam_repro.sweep import ids
from gsam_repro.sweep.values import LEAF_KEYS, MISSING, Variant, flatten_config
from gsam_repro.sweep.where import Where, mapping
from gsam_repro.train import config as run_config
from gsam_repro.train.config import SECTIONS, closest, flatten

if typing.TYPE_CHECKING:
    from gsam_repro.sweep.spec import SweepSpec


@dataclass
class Axis:
    """A grid key, a zip group or the seeds: runs take one of its variants each."""

    path: str
    keys: tuple[str, ...]  # config keys or section names, as written
    variants: list[Variant]

    def owns(self, key: str) -> bool:
        return any(key == k or key.startswith(k + ".") or k.startswith(key + ".")
                   for k in self.keys)



def axis_key_error(key: str, path: str, where: Where) -> ConfigError:
    hint = closest(key, [*LEAF_KEYS, *SECTIONS])
    extra = f"; did you mean {hint}?" if hint else ""
    return where.error(path, f"unknown config key{extra}")


def _axis_variants(key: str, values: Any, path: str, where: Where) -> list[Variant]:
    if key not in LEAF_KEYS and key not in SECTIONS:
        raise axis_key_error(key, path, where)
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


def parse_axes(tree: dict, where: Where) -> list[Axis]:
    axes: list[Axis] = []
    seen: dict[str, str] = {}

    def claim(key: str, path: str) -> None:
        if key in seen:
            raise where.error(path, f"{key} is already an axis at {seen[key]}")
        seen[key] = path

    grid = mapping(tree.get("grid"), "grid", where)
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


def parse_seeds(value: Any, where: Where) -> Axis | None:
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


def parse_entries(value: Any, kind: str, axes: list[Axis], where: Where) -> list[Variant]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(kind, f"expected a list of mappings, got {value!r}")
    entries = []
    for i, entry in enumerate(value):
        path = f"{kind}[{i}]"
        if not isinstance(entry, dict) or not entry:
            raise where.error(path, f"expected a mapping of axis key -> value, got {entry!r}")
        flat = flatten_config(entry)
        paths = {}
        for key in flat:
            paths[key] = f"{path}.{key}"
            if key not in LEAF_KEYS:  # a typo would otherwise match, or exclude, nothing
                raise axis_key_error(key, paths[key], where)
            if not any(axis.owns(key) for axis in axes):
                axis_keys = ", ".join(k for axis in axes for k in axis.keys) or "none"
                raise where.error(paths[key], f"no axis varies {key} (axes: {axis_keys})")
        entries.append(Variant(path=path, flat=flat, paths=paths))
    return entries



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


def varying_keys(spec: SweepSpec) -> list[str]:
    """Identifying config keys that take more than one value across the runs."""
    base = spec.base_cfg.flat()
    values: dict[str, set[str]] = {}
    always_set: set[str] = set()
    for axis in spec.axes:
        for key in dict.fromkeys(k for v in axis.variants for k in v.coerced):
            values.setdefault(key, set()).update(
                ids.value_key(v.coerced[key]) for v in axis.variants if key in v.coerced)
            if all(key in v.coerced for v in axis.variants):
                always_set.add(key)
    for entry in spec.include:
        for key, value in entry.coerced.items():
            values.setdefault(key, set()).add(ids.value_key(value))
        for axis in spec.axes:
            if any(axis.owns(k) for k in entry.flat):  # skipped in this include's runs
                for key in {k for v in axis.variants for k in v.coerced} - set(entry.coerced):
                    values[key].add(ids.value_key(base.get(key)))
    for key in values:
        if key not in always_set:
            values[key].add(ids.value_key(base.get(key)))
    keys = [k for k, v in values.items() if len(v) > 1 and k not in run_config.NON_IDENTIFYING]
    return sorted(keys, key=lambda k: k == "seed")  # seed last: runs of one setting sort together



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
        total *= len({ids.value_key([v.coerced.get(k, base.get(k)) for k in keys])
                      for v in axis.variants})
    return total


def _too_many(spec: SweepSpec, count: int, exact: bool) -> ConfigError:
    what = f"{count:,} runs" if exact else f"at least {count:,} runs"
    return spec.error("max_runs", f"the spec expands to {what}, more than max_runs "
                      f"{spec.max_runs:,}; raise max_runs or pass --yes")


def exclude_matcher(spec: SweepSpec, entry: Variant):
    base = spec.base_cfg.flat() | {"seed": spec.base_cfg.seed}
    checks = []
    for key, wanted in entry.flat.items():
        setters = [(j, [v.coerced.get(key, MISSING) for v in axis.variants])
                   for j, axis in enumerate(spec.axes)
                   if any(key in v.coerced for v in axis.variants)]
        checks.append((key, wanted, setters[::-1], base.get(key)))

    def match(choice: tuple[int, ...]) -> bool:
        for _key, wanted, setters, default in checks:
            value = default
            for j, by_variant in setters:
                got = by_variant[choice[j]]
                if got is not MISSING:
                    value = got
                    break
            if not _loose_equal(value, wanted):
                return False
        return True

    return match

