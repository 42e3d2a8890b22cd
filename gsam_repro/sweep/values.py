"""The config values a spec writes, and type-checking them with the run config's own rules.

A `Variant` is one value of an axis (or an include/exclude entry, or the forced keys): the config
keys it sets and the spec key path of each. Checking happens per value (`coerce_values`); an
error is attributed to the spec key that set the offending value (`attribute`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from gsam_repro.errors import ConfigError
from gsam_repro.sweep.where import Where
from gsam_repro.train import config as run_config
from gsam_repro.train.config import SECTIONS, RunConfig, closest, flatten, valid_keys
from gsam_repro.yamlio import set_dotted

CONFIG_TOP = ("seed", *SECTIONS)
LEAF_KEYS = frozenset([*valid_keys(), "seed"])
MISSING = object()  # "this variant does not set the key" (None is a value)


@dataclass
class Variant:
    """One value of an axis (or one include/exclude entry, or the forced keys): the config keys it
    sets, each with the spec key path it was written at."""

    path: str
    flat: dict[str, Any]
    paths: dict[str, str]
    coerced: dict[str, Any] = field(default_factory=dict)  # type-checked values, forced keys out



def flatten_config(mapping: dict) -> dict[str, Any]:
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



def apply_variants(base: dict, variants: list[Variant]) -> dict:
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


def attribute(err: ConfigError, sources: list, where: Where) -> ConfigError:
    path = _source_path(err.key, sources) if err.key else "base"
    return where.error(path, err.message)


def raw_error(key: str, message: str) -> ConfigError:
    return ConfigError(key, message)


def coerce_config(tree: dict, sources: list, where: Where) -> RunConfig:
    """A RunConfig with every value type-checked, before the cross-key checks (which need a
    whole run: the base alone may rightly lack a key an axis provides)."""
    try:
        for key in tree:
            if key not in CONFIG_TOP:
                hint = closest(str(key), list(CONFIG_TOP))
                extra = f"; did you mean {hint}?" if hint else ""
                raise ConfigError(str(key), f"unknown key{extra}")
        seed = run_config.coerce_value("seed", tree.get("seed", 0), int, raw_error)
        sections = {
            name: run_config.section_from_dict(name, cls, tree.get(name), raw_error, None, None)
            for name, cls in SECTIONS.items()
        }
    except ConfigError as err:
        raise attribute(err, sources, where) from None
    return RunConfig(seed=seed, **sections)


def coerce_values(variant: Variant, base: dict, force: Variant, where: Where) -> dict:
    cfg = coerce_config(apply_variants(base, [variant, force]), [("base", base), variant, force],
                        where)
    flat = cfg.flat()
    flat["seed"] = cfg.seed
    return {k: flat[k] for k in flat
            if k not in force.flat and any(k == w or k.startswith(w + ".") or w.startswith(k + ".")
                                           for w in variant.flat)}

