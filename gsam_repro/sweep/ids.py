"""Run ids and run directory names for sweeps.

A run id is `gsam_repro.train.config.run_id(cfg)`: a short hash of the canonical JSON of the
identifying part of the resolved config. A sweep of 100,000 runs cannot afford a RunConfig and a
full JSON dump per run, so `IdBuilder` keeps the base config's pieces of that JSON (one per key)
and swaps in only the pieces a run changes. The pieces, the lr_min default and the hash are the
trainer's own functions (`id_fragment`, `resolve_lr_min`, `id_from_fragments`), so the two cannot
drift apart.

A run directory name is the readable values of the keys that vary across the sweep plus the id,
e.g. `name=gsam,seed=1-3f2a9c01d7`. Only the id suffix identifies the run: names may change when a
spec grows a new axis, and the store finds existing directories by id.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from gsam_repro.train.config import (
    NON_IDENTIFYING,
    RUN_ID_LENGTH,
    id_fragment,
    id_from_fragments,
    resolve_lr_min,
)

MAX_NAME_CHARS = 80  # readable part of a run directory name; the id follows it
_ID_RE = re.compile(rf"^[0-9a-f]{{{RUN_ID_LENGTH}}}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


def value_key(value: Any) -> str:
    """A config value as canonical text, to compare or count values of any type."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class IdBuilder:
    """Computes `run_id` from flat config values, reusing the base config's JSON fragments.

    `fragments()` gives a copy of the base fragments; `set(fragments, key, value)` swaps one key;
    `finish(fragments, lr, lr_min)` resolves `schedule.lr_min` the way RunConfig.lr_min does and
    returns the id. Keys must be identifying config keys (non-identifying ones are ignored)."""

    def __init__(self, base_flat: dict[str, Any]):
        flat = {k: v for k, v in base_flat.items() if k not in NON_IDENTIFYING}
        flat["schedule.lr_min"] = None  # resolved per run in finish()
        self.keys = sorted(flat)
        self.position = {key: i for i, key in enumerate(self.keys)}
        self._base = [id_fragment(key, flat[key]) for key in self.keys]
        self._lr_min_pos = self.position["schedule.lr_min"]
        self._lr_min_text: dict[tuple, str] = {}

    def fragments(self) -> list[str]:
        return list(self._base)

    def fragment(self, key: str, value: Any) -> tuple[int, str] | None:
        """(position, text) for one key, or None for a key that is not part of the id."""
        pos = self.position.get(key)
        if pos is None or key == "schedule.lr_min":
            return None
        return pos, id_fragment(key, value)

    def finish(self, fragments: list[str], lr: float, lr_min: float | None) -> str:
        text = self._lr_min_text.get((lr, lr_min))
        if text is None:
            text = id_fragment("schedule.lr_min", resolve_lr_min(lr, lr_min))
            self._lr_min_text[(lr, lr_min)] = text
        fragments[self._lr_min_pos] = text
        return id_from_fragments(fragments)


def format_value(value: Any) -> str:
    """A config value as it appears in a run directory name or a plan table."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "_".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return "_".join(f"{k}{format_value(v)}" for k, v in sorted(value.items()))
    return str(value)


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that is unique among `keys` ("rho_max", "data.name"); a
    section's `name` goes by the section ("optimizer" for optimizer.name)."""
    keys = list(keys)
    out: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        section, _, leaf = key.partition(".")
        if leaf == "name" and not any(k == section or k.endswith("." + section) for k in keys):
            out[key] = section
            continue
        for n in range(1, len(parts) + 1):
            candidate = ".".join(parts[-n:])
            if not any(k != key and (k == candidate or k.endswith("." + candidate)) for k in keys):
                out[key] = candidate
                break
        else:
            out[key] = key
    return out


def safe_name(text: str) -> str:
    """Keep a name to characters every filesystem and shell takes without quoting."""
    return _UNSAFE.sub("_", text).strip("._") or "run"


def name_piece(short: str, value: Any) -> str:
    """One `key=value` piece of a run directory name, filesystem-safe; empty for an unset (None)
    value, which the name leaves out."""
    if value is None:
        return ""
    return safe_name(f"{short}={format_value(value)}")


def run_dir_name(pieces: list[str], rid: str) -> str:
    """Join `name_piece`s as `a=1,b=2-<id>`, cut at a piece boundary to stay short; just the id
    when nothing varies."""
    readable = ""
    for piece in pieces:
        candidate = f"{readable},{piece}" if readable else piece
        if len(candidate) > MAX_NAME_CHARS:
            if not readable:
                readable = candidate[:MAX_NAME_CHARS]
            break
        readable = candidate
    return f"{readable}-{rid}" if readable else rid


def id_from_dir_name(name: str) -> str | None:
    """The run id at the end of a run directory name, or None for a name that has none."""
    rid = name.rpartition("-")[2]
    return rid if _ID_RE.match(rid) else None
