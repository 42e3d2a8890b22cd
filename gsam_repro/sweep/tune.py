"""Equal tuning budgets: a spec's `tune:` section gives every method the same number of trials
over the ranges it declares, selects each method's best trial on a validation metric, then runs
the chosen setting of each method for the final seeds.

A comparison in which one method was tried at ten settings and another at one rewards the
budget, not the method; so the number of trials is one figure for all methods, and only the
ranges may differ. Trial k of a method is the same setting whatever the budget (random search
draws trials one after another from a generator seeded by `tune.seed` and the method's name), so
raising `trials` keeps the finished trials, and selection looks at the first `trials` trials
only, however many a sweep directory holds. docs/sweeps.md is the user's reference.

This module parses and checks the section, lists the trial and confirmation runs, and makes the
selection; the sweep's spec and command line hook it in.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gsam_repro.errors import ConfigError
from gsam_repro.train.config import SECTIONS, TUNE_PHASES, closest, field_types, valid_keys

TUNE_KEYS = ("trials", "search", "seed", "metric", "final_seeds", "methods")
SEARCHES = ("random", "grid")
# summary.json metrics a trial may be chosen on (validation only), and whether higher is better
SELECT_METRICS = {"best_val_acc": True, "val_acc": True, "val_loss": False}
DISTRIBUTIONS = ("uniform", "loguniform")
SIGNIFICANT_DIGITS = 4  # sampled values are rounded so run names and ids stay readable
TRIAL, CONFIRM = TUNE_PHASES
TAG_KEYS = ("tuning.method", "tuning.phase", "tuning.trial")  # set by the sweep, not the spec
ErrorAt = Callable[[str, str], ConfigError]  # (spec key path, message) -> the error to raise


@dataclass
class Range:
    """One searched key of a method: a list of values, or a distribution over [low, high]."""

    key: str
    path: str
    values: list | None = None
    dist: str | None = None
    low: float = 0.0
    high: float = 0.0


@dataclass
class Method:
    """A method under `tune.methods`: keys it fixes and keys it searches."""

    name: str
    path: str
    fixed: dict[str, Any]
    ranges: list[Range]
    paths: dict[str, str] = field(default_factory=dict)  # config key -> spec key path


@dataclass
class TuneSpec:
    """The parsed `tune:` section."""

    trials: int
    search: str
    seed: int
    metric: str
    final_seeds: list[int]
    methods: list[Method]

    @property
    def higher_is_better(self) -> bool:
        return SELECT_METRICS[self.metric]


@dataclass
class Entry:
    """One run the section asks for: its config keys, where each was written, and its tags."""

    method: str
    phase: str
    index: int  # trial index (trial phase) or seed (confirmation phase)
    flat: dict[str, Any]
    paths: dict[str, str]


# ---------------------------------------------------------------------------------- parsing
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_tune(value: Any, error: ErrorAt) -> TuneSpec:
    """Check the `tune:` mapping; every mistake is a ConfigError naming its key path."""
    if not isinstance(value, dict):
        raise error("tune", f"expected a mapping with {', '.join(TUNE_KEYS)}, got {value!r}")
    for key in value:
        if key not in TUNE_KEYS:
            hint = closest(str(key), list(TUNE_KEYS))
            extra = f"; did you mean {hint}?" if hint else f" (keys: {', '.join(TUNE_KEYS)})"
            raise error(f"tune.{key}", f"unknown key{extra}")
    for key in ("trials", "methods", "final_seeds"):
        if key not in value:
            raise error("tune", f"missing tune.{key}")
    trials = value["trials"]
    if not _is_int(trials) or trials < 1:
        raise error("tune.trials", f"expected an integer >= 1 (trials per method), got {trials!r}")
    search = value.get("search", "random")
    if search not in SEARCHES:
        raise error("tune.search", f"{search!r} is not one of {', '.join(SEARCHES)}")
    seed = value.get("seed", 0)
    if not _is_int(seed):
        raise error("tune.seed", f"expected an integer, got {seed!r}")
    metric = value.get("metric", "best_val_acc")
    if metric not in SELECT_METRICS:
        why = " (test metrics are never used to choose: that would tune on the test set)" \
            if "test" in str(metric) else ""
        raise error("tune.metric", f"{metric!r} is not a validation metric{why}; one of "
                    f"{', '.join(SELECT_METRICS)}")
    final_seeds = value["final_seeds"]
    if _is_int(final_seeds) and final_seeds >= 1:  # a count: seeds after the trials' seed
        final_seeds = [seed + 1 + i for i in range(final_seeds)]
    if not isinstance(final_seeds, list) or not final_seeds or \
            not all(_is_int(s) for s in final_seeds):
        raise error("tune.final_seeds", f"expected a count or a non-empty list of integers, got "
                    f"{final_seeds!r}")
    if len(set(final_seeds)) != len(final_seeds):
        raise error("tune.final_seeds", f"seeds repeat: {final_seeds}")
    if seed in final_seeds:
        raise error("tune.final_seeds", f"holds the trials' training seed {seed} (tune.seed): "
                    "that run would repeat the trial chosen for scoring high, biasing the final "
                    "table upward; use other seeds")
    methods = value["methods"]
    if not isinstance(methods, dict) or not methods:
        raise error("tune.methods", "expected a mapping of method name -> config keys")
    parsed = [_parse_method(str(name), body, search, error) for name, body in methods.items()]
    tune = TuneSpec(trials=trials, search=search, seed=seed, metric=metric,
                    final_seeds=list(final_seeds), methods=parsed)
    for method in parsed:
        if search == "random" and not method.ranges and trials > 1:
            raise error(method.path, f"declares no range to search, so its {trials} trials "
                        "would be one run repeated; give it a list or a distribution (or "
                        "tune.trials: 1 for untuned methods)")
    if search == "grid":
        for method in parsed:
            points = math.prod(len(r.values or []) for r in method.ranges)
            if points != trials:
                sizes = " x ".join(str(len(r.values or [])) for r in method.ranges)
                raise error(method.path, f"a grid of {points} point{'s' if points != 1 else ''}"
                            f" ({sizes or 'no ranges'}); tune.trials is {trials}: every method "
                            "gets exactly that many")
    return tune


def _parse_method(name: str, body: Any, search: str, error: ErrorAt) -> Method:
    path = f"tune.methods.{name}"
    if not name.replace("_", "").replace("-", "").isalnum():
        raise error(path, "a method name takes letters, digits, - and _ only")
    if not isinstance(body, dict):
        raise error(path, f"expected a mapping of config key -> value or range, got {body!r}")
    flat = _flatten(body)
    if "optimizer.name" not in flat:
        raise error(path, "missing optimizer.name: each method names its optimizer")
    keys = set(valid_keys()) | {"seed"}
    fixed: dict[str, Any] = {}
    ranges: list[Range] = []
    paths: dict[str, str] = {}
    for key, value in flat.items():
        key_path = f"{path}.{key}"
        paths[key] = key_path
        if key == "seed" or key.startswith("tuning."):
            raise error(key_path, "set by the tune section itself (tune.seed, final_seeds)")
        if key not in keys:
            hint = closest(key, sorted(keys))
            raise error(key_path, f"unknown config key{f'; did you mean {hint}?' if hint else ''}")
        if isinstance(value, list) and key not in _LIST_VALUED:
            if not value:
                raise error(key_path, "empty list: give at least one value")
            ranges.append(Range(key, key_path, values=list(value)))
        elif _is_distribution(value):
            ranges.append(_parse_distribution(key, key_path, value, search, error))
        elif isinstance(value, dict) and key not in _MAPPING_VALUED:
            raise error(key_path, f"expected a value, a list of values or one of "
                        f"{{{', '.join(f'{d}: [low, high]' for d in DISTRIBUTIONS)}}}, got "
                        f"{value!r}")
        else:
            fixed[key] = value
    if any(r.key == "optimizer.name" for r in ranges):
        raise error(paths["optimizer.name"], "one optimizer per method: declare another method "
                    "to tune another optimizer")
    return Method(name=name, path=path, fixed=fixed, ranges=ranges, paths=paths)


def _typed_keys(kind: type) -> frozenset[str]:
    """Config keys whose declared type admits `kind` (list: a list is their value, not a range
    of values; dict: a mapping is their value, not a distribution)."""
    out = set()
    for section, cls in SECTIONS.items():
        hints = field_types(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if hint is kind or kind in typing.get_args(hint):
                out.add(f"{section}.{f.name}")
    return frozenset(out)


_LIST_VALUED = _typed_keys(list)  # eval.probe_rhos, optimizer.betas, train.loggers
_MAPPING_VALUED = _typed_keys(dict)  # model.kwargs, optimizer.kwargs


def _is_distribution(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def _flatten(body: dict) -> dict[str, Any]:
    """Nested (`optimizer: {lr: ...}`) or dotted (`optimizer.lr`) keys -> dotted keys."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        key = str(key)
        if key in SECTIONS and isinstance(value, dict):
            for sub, sub_value in value.items():
                out[f"{key}.{sub}"] = sub_value
        else:
            out[key] = value
    return out


def _parse_distribution(key: str, path: str, value: dict, search: str, error: ErrorAt) -> Range:
    dist, bounds = next(iter(value.items()))
    where = f"{path}.{dist}"
    if search == "grid":
        raise error(where, "a grid search takes lists of values, not distributions")
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(map(_is_number, bounds))):
        raise error(where, f"expected [low, high], got {bounds!r}")
    low, high = (float(b) for b in bounds)
    if not low < high:
        raise error(where, f"low {low:g} must be below high {high:g}")
    if dist == "loguniform" and low <= 0:
        raise error(where, f"loguniform needs low > 0, got {low:g}")
    return Range(key, path, dist=dist, low=low, high=high)


# ------------------------------------------------------------------------------- the trials
def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _generator(seed: int, method: str) -> np.random.Generator:
    """One random stream per (seed, method), the same on every machine and Python."""
    return np.random.default_rng([seed, zlib.crc32(method.encode())])


def trial_settings(tune: TuneSpec, method: Method) -> list[dict[str, Any]]:
    """The searched keys' values of each of the method's `tune.trials` trials, in trial order."""
    if tune.search == "grid":
        ranges = method.ranges
        product = itertools.product(*(r.values or [] for r in ranges))
        return [dict(zip((r.key for r in ranges), point, strict=True)) for point in product]
    rng = _generator(tune.seed, method.name)
    settings = []
    for _ in range(tune.trials):
        setting: dict[str, Any] = {}
        for r in method.ranges:  # in the order written: draws do not depend on the budget
            if r.values is not None:
                setting[r.key] = r.values[int(rng.integers(len(r.values)))]
            elif r.dist == "uniform":
                setting[r.key] = _round(float(rng.uniform(r.low, r.high)))
            else:
                setting[r.key] = _round(math.exp(rng.uniform(math.log(r.low),
                                                             math.log(r.high))))
        settings.append(setting)
    return settings


def trial_entries(tune: TuneSpec) -> list[Entry]:
    """Every trial run: each method's fixed keys, its trial's values, the trials' seed, tags."""
    entries = []
    for method in tune.methods:
        for index, setting in enumerate(trial_settings(tune, method)):
            flat = {**method.fixed, **setting, "seed": tune.seed,
                    "tuning.method": method.name, "tuning.phase": TRIAL, "tuning.trial": index}
            paths = {**method.paths, "seed": "tune.seed",
                     **{k: method.path for k in TAG_KEYS}}
            entries.append(Entry(method.name, TRIAL, index, flat, paths))
    return entries


def confirmation_entries(tune: TuneSpec, chosen: dict[str, Entry]) -> list[Entry]:
    """The final-seed runs of each method's chosen trial (`chosen`: method -> its trial)."""
    entries = []
    for method in tune.methods:
        trial = chosen[method.name]
        for seed in tune.final_seeds:
            flat = {**trial.flat, "seed": seed, "tuning.phase": CONFIRM, "tuning.trial": None}
            paths = {**trial.paths, "seed": "tune.final_seeds"}
            entries.append(Entry(method.name, CONFIRM, seed, flat, paths))
    return entries


# ----------------------------------------------------------------------------- the selection
@dataclass
class TrialResult:
    """A finished trial: its method, index and the value of the selection metric (None when
    the run recorded none, e.g. it diverged)."""

    method: str
    trial: int
    value: float | None


def select(results: Iterable[TrialResult], trials: int, higher_is_better: bool = True
           ) -> dict[str, TrialResult]:
    """Each method's best trial among its first `trials` (the equal budget; any further trials
    are ignored), ties to the earlier trial. A method whose budgeted trials recorded no value is
    left out of the answer: it cannot be confirmed."""
    best: dict[str, TrialResult] = {}
    for result in sorted(results, key=lambda r: (r.method, r.trial)):
        if result.trial >= trials or result.value is None or not math.isfinite(result.value):
            continue
        current = best.get(result.method)
        better = current is None or (result.value > current.value if higher_is_better
                                     else result.value < current.value)
        if better:
            best[result.method] = result
    return best


def best_so_far(values: list[float | None], higher_is_better: bool = True) -> list[float | None]:
    """The best value among the first k trials, for k = 1..len(values) (None until one has a
    value): what the method would have chosen with a budget of k."""
    out: list[float | None] = []
    current: float | None = None
    for value in values:
        if value is not None and math.isfinite(value):
            if current is None or (value > current if higher_is_better else value < current):
                current = value
        out.append(current)
    return out


# ------------------------------------------------------------------- hooks into the sweep spec
CONFLICTS = ("grid", "zip", "seeds", "include", "exclude")  # a tune: spec's runs are its trials


def parse_section(tree: dict, error: ErrorAt) -> TuneSpec | None:
    """The spec's `tune:` section, parsed (None without one); refuses the axes that would make
    the trials' count differ between methods."""
    if tree.get("tune") is None:
        return None
    for key in CONFLICTS:
        if tree.get(key) is not None:
            raise error(key, "a spec with tune: takes its runs from tune.methods (trials, then "
                        "final seeds); fix shared keys under base: or force:, and give "
                        "differing ones to each method")
    return parse_tune(tree["tune"], error)


def _variant(entry: Entry, base: dict, force: Any, where: Any) -> Any:
    from gsam_repro.sweep.values import Variant, coerce_values

    path = f"tune.methods.{entry.method}"
    variant = Variant(path=path, flat=dict(entry.flat), paths=dict(entry.paths))
    variant.coerced = coerce_values(variant, base, force, where)
    return variant


def trial_axis(tune: TuneSpec, base: dict, force: Any, where: Any) -> Any:
    """The one axis of a tune: spec: a variant per trial run (confirmation runs join it once
    they are decided, see `plan`)."""
    from gsam_repro.sweep.grid import Axis
    from gsam_repro.sweep.values import apply_variants, coerce_config

    variants = [_variant(e, base, force, where) for e in trial_entries(tune)]
    for variant in variants:  # choosing on validation needs a validation set in every trial
        cfg = coerce_config(apply_variants(base, [variant, force]), [("base", base), variant,
                                                                     force], where)
        if cfg.data.val_size <= 0:
            raise where.error("tune.metric", f"{tune.metric} needs a validation set, and "
                              f"{variant.flat['tuning.method']}'s trials have data.val_size "
                              f"{cfg.data.val_size}: set data.val_size > 0 under base:")
    keys = tuple(dict.fromkeys(k for v in variants for k in v.flat))
    return Axis(path="tune", keys=keys, variants=variants)


def _entry_of(variant: Any) -> Entry:
    flat = variant.flat
    phase = flat["tuning.phase"]
    index = flat["tuning.trial"] if phase == TRIAL else flat["seed"]
    return Entry(flat["tuning.method"], phase, index, dict(flat), dict(variant.paths))


@dataclass
class Decision:
    """Where a tune: sweep stands: trials finished, each method's chosen trial once all are."""

    trials: int  # trial runs planned
    finished: int  # of them done or diverged
    chosen: dict[str, Entry]  # method -> its chosen trial (empty until every trial finished)
    no_score: list[str]  # methods whose trials all lack a score (cannot be confirmed)

    @property
    def decided(self) -> bool:
        return self.finished == self.trials


def plan(spec: Any, *, yes: bool = False) -> tuple[Any, Decision]:
    """Expand a tune: spec: its trials, plus the confirmation runs of each method's best trial
    once every trial has finished (chosen from their summary.json on `tune.metric`)."""
    from gsam_repro.sweep import store
    from gsam_repro.sweep.plan import expand

    tune: TuneSpec = spec.tune
    axis = spec.axes[0]
    axis.variants = [v for v in axis.variants if v.flat["tuning.phase"] == TRIAL]
    sweep = expand(spec, yes=yes)
    states = store.run_states(spec.out_dir, [r.run_id for r in sweep.runs])
    results, finished, entries = [], 0, {}
    for run in sweep.runs:
        entry = _entry_of(axis.variants[run.choice[0]])
        entries[(entry.method, entry.index)] = entry
        state = states[run.run_id]
        if state.state not in ("done", "diverged"):
            continue
        finished += 1
        value = None
        try:
            summary = store.read_json(state.run_dir / store.SUMMARY)
            value = summary.get(tune.metric) if isinstance(summary, dict) else None
        except (OSError, ValueError):
            pass
        results.append(TrialResult(entry.method, entry.index,
                                   float(value) if _is_number(value) else None))
    decision = Decision(trials=len(sweep.runs), finished=finished, chosen={}, no_score=[])
    if not decision.decided:
        return sweep, decision
    best = select(results, tune.trials, tune.higher_is_better)
    decision.chosen = {m.name: entries[(m.name, best[m.name].trial)]
                       for m in tune.methods if m.name in best}
    decision.no_score = [m.name for m in tune.methods if m.name not in best]
    confirm = confirmation_entries(_only(tune, decision.chosen), decision.chosen)
    axis.variants += [_variant(e, spec.base, spec.force, spec.where) for e in confirm]
    return expand(spec, yes=yes), decision


def _only(tune: TuneSpec, methods: dict[str, Entry]) -> TuneSpec:
    return TuneSpec(trials=tune.trials, search=tune.search, seed=tune.seed, metric=tune.metric,
                    final_seeds=tune.final_seeds,
                    methods=[m for m in tune.methods if m.name in methods])


def describe(tune: TuneSpec, decision: Decision) -> str:
    """What `sweep plan|status|run` says about the two phases."""
    methods = len(tune.methods)
    head = (f"tune: {tune.trials} trials per method, the same for all {methods} methods "
            f"({tune.search} search, seed {tune.seed}), chosen on {tune.metric}; "
            f"{decision.finished} of {decision.trials} trials finished")
    seeds = len(tune.final_seeds)
    if not decision.decided:
        return (f"{head}\n  confirmation phase ({seeds} seeds x {methods} methods = "
                f"{seeds * methods} runs): decided after every trial has finished")
    lines = [head]
    for method in tune.methods:
        entry = decision.chosen.get(method.name)
        if entry is None:
            lines.append(f"  {method.name}: no trial recorded {tune.metric}; not confirmed")
            continue
        searched = ", ".join(f"{r.key}={entry.flat[r.key]}" for r in method.ranges)
        lines.append(f"  {method.name}: trial {entry.index} chosen ({searched or 'one setting'})"
                     f"; confirmed on seeds {', '.join(map(str, tune.final_seeds))}")
    return "\n".join(lines)
