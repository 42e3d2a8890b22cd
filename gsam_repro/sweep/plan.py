"""A spec expanded into runs: each run's id, directory name and variants (`expand`), and its
config built on demand through `config_from_dict` itself (`Sweep.config`).

Expansion checks every run as `config_from_dict` would, but in two stages so that a 100,000-run
grid expands in about a second: each written value was type-checked once when the spec was read,
and each combination of values gets the cross-key checks (ranges, choices, rho_min <= rho_max, ...)
on a config assembled from the already-checked parts.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gsam_repro.errors import ConfigError
from gsam_repro.sweep import ids
from gsam_repro.sweep.grid import count_distinct_grid, exclude_matcher, varying_keys
from gsam_repro.sweep.runcheck import DROPPABLE, RunChecker
from gsam_repro.sweep.spec import SweepSpec
from gsam_repro.sweep.values import MISSING, Variant, apply_variants, attribute, raw_error
from gsam_repro.train import config as run_config
from gsam_repro.train.config import SECTIONS, RunConfig

__all__ = ["PlannedRun", "Sweep", "count_distinct_grid", "expand", "iter_axes_summary"]


class PlannedRun:
    """One run of a sweep: its id, directory name and which variant of each axis it takes."""

    __slots__ = ("run_id", "name", "choice", "include", "dropped")

    def __init__(self, run_id: str, name: str, choice: tuple[int, ...], include: int,
                 dropped: tuple[str, ...] = ()):
        self.run_id = run_id
        self.name = name
        self.choice = choice  # variant index per axis; -1: the axis is not applied
        self.include = include  # index into spec.include, or -1
        self.dropped = dropped  # optimizer keys its optimizer does not take (see runcheck.py)

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
        for key in run.dropped:
            if key in values:
                values[key] = _default(key)
        return values

    def tree(self, run: PlannedRun) -> dict:
        """The run's config as nested data, ready for `config_from_dict` (the keys its optimizer
        does not take, when they come from the base config, left out)."""
        tree = apply_variants(self.spec.base, [s for s in self.sources(run)[1:]])
        for key in run.dropped:
            section, _, name = key.partition(".")
            node = tree.get(section)
            if isinstance(node, dict):
                node.pop(name, None)
        return tree

    def config(self, run: PlannedRun) -> RunConfig:
        """The run's config through `config_from_dict` itself (its `run_id` is the plan's: both
        come from the trainer's id functions)."""
        try:
            cfg = run_config.config_from_dict(self.tree(run))
        except ConfigError as err:
            raise attribute(err, self.sources(run), self.spec.where) from None
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
        fragments=fragments, sections=sections, seed=variant.coerced.get("seed", MISSING),
        lr=variant.coerced.get("optimizer.lr", MISSING),
        lr_min=variant.coerced.get("schedule.lr_min", MISSING), names=names,
    )




def expand(spec: SweepSpec, *, yes: bool = False) -> Sweep:
    """Expand a spec into its runs, checking each as `config_from_dict` would.

    Raises ConfigError for a run that fails a check (naming the spec key that set the value),
    for a spec with no runs, and for more than `max_runs` runs unless `yes`."""
    grid = count_distinct_grid(spec)
    if not yes and grid is not None and grid > spec.max_runs:  # refused before any run id
        raise _too_many(spec, grid, exact=not spec.include)
    idb = ids.IdBuilder(spec.base_cfg.flat() | {"seed": spec.base_cfg.seed})
    varying = varying_keys(spec)
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
    checked: dict[tuple, tuple[str, ...]] = {}  # combination -> optimizer keys it drops
    checker = RunChecker()
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
            checked[memo] = _check_run(spec, choice, include, parts, checker)
        dropped = checked[memo]
        fragments = idb.fragments()
        lr, lr_min = base_cfg.optimizer.lr, base_cfg.schedule.lr_min
        names = dict(base_names)
        for part in parts:
            for pos, text in part.fragments:
                fragments[pos] = text
            if part.lr is not MISSING:
                lr = part.lr
            if part.lr_min is not MISSING:
                lr_min = part.lr_min
            names.update(part.names)
        for key in dropped:
            frag = idb.fragment(key, _default(key))
            if frag:
                fragments[frag[0]] = frag[1]
            if key in names:
                names[key] = ids.name_piece(short[key], _default(key))
        rid = idb.finish(fragments, lr, lr_min)
        if rid in seen:
            duplicates += 1
            return
        seen.add(rid)
        runs.append(PlannedRun(rid, ids.run_dir_name([names[k] for k in varying if names[k]], rid),
                               choice, include, dropped))

    def check_count() -> None:  # stop as soon as the runs exceed max_runs: O(max_runs)
        if not yes and len(runs) > spec.max_runs:
            raise _too_many(spec, len(runs), exact=False)

    matchers = [exclude_matcher(spec, entry) for entry in spec.exclude]
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


def _too_many(spec: SweepSpec, count: int, exact: bool) -> ConfigError:
    what = f"{count:,} runs" if exact else f"at least {count:,} runs"
    return spec.error("max_runs", f"the spec expands to {what}, more than max_runs "
                      f"{spec.max_runs:,}; raise max_runs or pass --yes")



def _default(key: str) -> Any:
    return DROPPABLE[key.partition(".")[2]]


def _check_run(spec: SweepSpec, choice: tuple[int, ...], include: int,
               parts: list[_Prepared], checker: RunChecker) -> tuple[str, ...]:
    """The cross-key checks of `config_from_dict` on a config assembled from checked parts, and
    the model and optimizer checks of runcheck.py; returns the optimizer keys the run drops."""
    base = spec.base_cfg
    merged: dict[str, dict[str, Any]] = {}
    seed = base.seed
    for part in parts:
        for section, values in part.sections.items():
            merged.setdefault(section, {}).update(values)
        if part.seed is not MISSING:
            seed = part.seed
    sections = {name: dataclasses.replace(getattr(base, name), **merged[name])
                if name in merged else getattr(base, name) for name in SECTIONS}
    cfg = RunConfig(seed=seed, **sections)
    written = {f"optimizer.{k}" for part in parts for k in part.sections.get("optimizer", {})}
    try:
        run_config.check_config(cfg, raw_error)
        return checker.check(cfg, written)
    except ConfigError as err:
        run = PlannedRun("", "", choice, include)
        sweep = Sweep(spec=spec, runs=[], varying=[], short={}, duplicates=0)
        raise attribute(err, sweep.sources(run), spec.where) from None


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
