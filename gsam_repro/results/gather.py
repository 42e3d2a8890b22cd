"""Gather a sweep's run directories into `runs.parquet` (one row a run) and `history.parquet`
(one row a run and epoch), the only files reports read.

Columns and dtypes come from `schema.py` and, for the config, from the RunConfig dataclasses, so
an empty sweep has the same schema as a big one. Gathering is incremental: `.gather.json` in the
sweep directory records each run directory's file sizes and times, and a run whose files have not
changed is taken from the previous parquet files instead of being read again. A run directory
that cannot be trusted (no config.yaml yet, or a config.yaml whose values no longer give the
run's id: edited after the run) is listed in one warning and left out; it never stops the
gather. A run that failed before writing its config is kept as `failed` with failed.json's
error, one whose summary.json cannot be read as `failed` saying so, and a malformed
metrics.jsonl line or a missing metrics.jsonl is skipped with a warning naming file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gsam_repro.errors import UsageError
from gsam_repro.fsio import atomic_path, atomic_write_json, read_json
from gsam_repro.results.run_reader import YAML_LOADER, Unreadable, read_run
from gsam_repro.results.schema import PROBE_DTYPE, history_columns
from gsam_repro.results.schema import run_columns as summary_columns
from gsam_repro.train import rundir
from gsam_repro.train.config import PROBE_PREFIX, SECTIONS, field_types

RUNS_PARQUET = "runs.parquet"
HISTORY_PARQUET = "history.parquet"
INDEX = ".gather.json"
GATHER_VERSION = 3  # 2: config.yaml checked against the run id; run notes in the index;
# 3: the optimizer file and its hash in the index (to flag stale runs without reading them)
_FILES = (rundir.CONFIG, rundir.SUMMARY, rundir.FAILED, rundir.METRICS, rundir.ENV)
_UNFINISHED = ("pending", "running")


class GatherWarning(UserWarning):
    """Some run directories could not be read and were left out."""


@dataclass
class GatherResult:
    runs_path: Path
    history_path: Path
    runs: int = 0  # rows in runs.parquet
    epochs: int = 0  # rows in history.parquet
    read: int = 0  # run directories read this time
    reused: int = 0  # run directories taken from the previous gather unchanged
    written: bool = False  # False: nothing had changed, the files were left as they were
    skipped: dict[str, str] = field(default_factory=dict)  # run dir -> why it was left out
    notes: dict[str, list[str]] = field(default_factory=dict)  # run dir -> what was dropped
    stale: dict[str, str] = field(default_factory=dict)  # run dir -> how its optimizer changed


def _dtype(annotation: Any) -> str:
    """The pandas dtype for a RunConfig field annotation."""
    options = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(options) == 1:
        only = options[0]
        if only is bool:
            return "boolean"
        if only is int:
            return "Int64"
        if only is float:
            return "Float64"
    return "string"  # str, mixed (bool | str), lists and mappings (as JSON)


def config_columns() -> dict[str, str]:
    """Flattened config key -> pandas dtype, from the RunConfig dataclasses."""
    columns = {"seed": "Int64"}
    for section, cls in SECTIONS.items():
        hints = field_types(cls)
        for f in dataclasses.fields(cls):
            columns[f"{section}.{f.name}"] = _dtype(hints[f.name])
    return columns


def run_columns() -> dict[str, str]:
    """Every column of runs.parquet, in order: run identity and status, config, metrics."""
    head = ("run_id", "sweep", "run_dir", "status", "error")
    summary = summary_columns()
    columns = {k: summary[k] for k in head}
    columns.update(config_columns())
    columns.update({k: v for k, v in summary.items() if k not in head})
    return columns


def probe_columns(names) -> dict[str, str]:
    """The sharpness-probe columns among `names` (one per radius a sweep probed), sorted by
    radius."""
    probes = [n for n in names if str(n).startswith(PROBE_PREFIX)]
    return {n: PROBE_DTYPE for n in sorted(probes, key=lambda n: float(n[len(PROBE_PREFIX):]))}


def _schema_hash() -> str:
    text = json.dumps([GATHER_VERSION, run_columns(), history_columns()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _convert(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, dict)):
            return json.dumps(value, sort_keys=True)
        return str(value)
    if dtype == "Float64":
        if isinstance(value, bool):
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if dtype == "Int64":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return None
    if dtype == "boolean":
        return value if isinstance(value, bool) else None
    return value


def frame(rows: list[dict], columns: dict[str, str]):
    """A DataFrame with exactly `columns`, each of its declared dtype (missing values are NA)."""
    import pandas as pd

    data = {name: pd.array([_convert(row.get(name), dtype) for row in rows], dtype=dtype)
            for name, dtype in columns.items()}
    return pd.DataFrame(data, columns=list(columns))


def _signature(run_dir: Path) -> list:
    sig = []
    for name in _FILES:
        try:
            st = os.stat(run_dir / name)
            sig.append([st.st_mtime_ns, st.st_size])
        except FileNotFoundError:
            sig.append(None)
    return sig


def _sweep_name(sweep_dir: Path) -> str:
    try:
        spec = yaml.load((sweep_dir / rundir.SPEC_FILE).read_text(), Loader=YAML_LOADER)
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            return spec["name"]
    except (OSError, ValueError, yaml.YAMLError):
        pass
    return sweep_dir.resolve().name


def _file_stat(path: Path) -> list | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_mtime_ns, st.st_size]


# What the sweep knows of unfinished runs: (sweep dir, run ids) -> run id -> (running / queued /
# failed, error), from the jobs `sweep run` recorded. The gather command passes the sweep's
# (gsam_repro.sweep.store.recorded_job_states); results never import the sweep layer above.
JobStates = Callable[[Path, Iterable[str]], dict[str, tuple[str, str | None]]]


def _live_statuses(sweep_dir: Path, run_ids: dict[str, str],
                   job_states: JobStates | None) -> dict[str, tuple]:
    """run dir -> (pending / running / failed, error) for unfinished runs, from the recorded
    jobs (a SLURM job that ended without a summary makes its run failed)."""
    if not run_ids:
        return {}
    live = job_states(sweep_dir, run_ids.values()) if job_states is not None else {}
    out = {}
    for name, rid in run_ids.items():
        state, error = live.get(rid, ("pending", None))
        out[name] = ("pending" if state == "queued" else state, error)
    return out


def stale_runs(entries: dict[str, dict]) -> dict[str, str]:
    """runs/<dir> -> why, for finished runs whose optimizer file changed since they ran
    (rundir.optimizer_file_change), from the index entries: checked on every gather, since the
    file can change while the run directory does not."""
    seen: dict[tuple, str | None] = {}
    out = {}
    for name, entry in sorted(entries.items()):
        recorded = entry.get("optimizer_file")
        if entry.get("skip") or entry.get("status") not in ("done", "diverged") or not recorded:
            continue
        key = tuple(recorded)
        if key not in seen:
            seen[key] = rundir.optimizer_file_change(*key)
        if seen[key]:
            out[f"{rundir.RUNS}/{name}"] = seen[key]
    return out


def gather(sweep_dir: str | Path, *, full: bool = False,
           job_states: JobStates | None = None) -> GatherResult:
    """Write `runs.parquet` and `history.parquet` for a sweep directory (see module docstring).

    `full=True` reads every run directory again instead of reusing the previous gather.
    `job_states` tells running and queued runs from pending ones (None: all read pending)."""
    sweep_dir = Path(sweep_dir)
    runs_dir = sweep_dir / rundir.RUNS
    if not runs_dir.is_dir() and not (sweep_dir / rundir.SPEC_FILE).is_file():
        raise UsageError(f"{sweep_dir}: not a sweep directory (no {rundir.RUNS}/ folder and no "
                         f"{rundir.SPEC_FILE})")
    result = GatherResult(sweep_dir / RUNS_PARQUET, sweep_dir / HISTORY_PARQUET)
    names = sorted(n for n in (os.listdir(runs_dir) if runs_dir.is_dir() else [])
                   if (runs_dir / n).is_dir())
    signatures = {name: _signature(runs_dir / name) for name in names}

    index = None if full else store_index(sweep_dir)
    schema = _schema_hash()
    previous: dict[str, dict] = {}
    if (index and index.get("schema") == schema
            and index.get("runs_parquet") == _file_stat(result.runs_path)
            and index.get("history_parquet") == _file_stat(result.history_path)):
        previous = index.get("dirs", {})
    changed = [n for n in names if previous.get(n, {}).get("sig") != signatures[n]]
    removed = [n for n in previous if n not in signatures]
    unchanged = [n for n in names if n not in set(changed)]

    sweep = _sweep_name(sweep_dir)
    new_rows: list[dict] = []
    new_epochs: list[dict] = []
    entries: dict[str, dict] = {}
    for name in changed:
        notes: list[str] = []
        try:
            row, epochs = read_run(runs_dir / name, sweep, notes)
        except Unreadable as err:
            entries[name] = {"sig": signatures[name], "skip": str(err)}
            continue
        new_rows.append(row)
        new_epochs.extend(epochs)
        entries[name] = {"sig": signatures[name], "status": row["status"],
                         "run_id": row["run_id"]}
        if notes:
            entries[name]["notes"] = notes
        if row.get("optimizer_file_sha256"):
            entries[name]["optimizer_file"] = [row.get("optimizer.name"),
                                               row["optimizer_file_sha256"]]
    for name in unchanged:
        entries[name] = previous[name]
    result.read = len(changed)
    result.reused = len(unchanged)
    result.skipped = {f"{rundir.RUNS}/{n}": e["skip"] for n, e in sorted(entries.items())
                      if e.get("skip")}
    result.notes = {f"{rundir.RUNS}/{n}": e["notes"] for n, e in sorted(entries.items())
                    if e.get("notes")}

    unfinished = {n: e["run_id"] for n, e in entries.items()
                  if not e.get("skip") and e.get("status") in _UNFINISHED}
    for row in new_rows:
        if row["status"] == "pending":
            unfinished[row["run_dir"][len(rundir.RUNS) + 1:]] = row["run_id"]
    live = _live_statuses(sweep_dir, unfinished, job_states)
    status_changed = {n: s for n, s in live.items()
                      if n in previous and n not in changed and previous[n].get("status") != s[0]}
    for row in new_rows:
        name = row["run_dir"][len(rundir.RUNS) + 1:]
        if name in live:
            row["status"], row["error"] = live[name]
            entries[name]["status"] = live[name][0]
    for name, (status, _) in status_changed.items():
        entries[name] = {**entries[name], "status": status}

    if result.skipped:
        listed = "; ".join(f"{d} ({why})" for d, why in result.skipped.items())
        warnings.warn(f"left out {len(result.skipped)} unreadable run "
                      f"director{'y' if len(result.skipped) == 1 else 'ies'}: {listed}",
                      GatherWarning, stacklevel=2)
    result.stale = stale_runs(entries)
    if result.stale:
        listed = "; ".join(f"{d} ({why})" for d, why in result.stale.items())
        warnings.warn(f"{len(result.stale)} stale run director"
                      f"{'y' if len(result.stale) == 1 else 'ies'} (the optimizer file changed "
                      f"since the run; `sweep run` runs it again): {listed}",
                      GatherWarning, stacklevel=2)
    if result.notes:
        listed = "; ".join(f"{d} ({', '.join(why)})" for d, why in result.notes.items())
        warnings.warn(f"kept {len(result.notes)} run director"
                      f"{'y' if len(result.notes) == 1 else 'ies'} with problems: {listed}",
                      GatherWarning, stacklevel=2)

    if previous and not changed and not removed and not status_changed:
        result.runs = sum(1 for e in entries.values() if not e.get("skip"))
        result.epochs = index.get("epochs", 0)
        return result

    import pandas as pd  # only now: an up-to-date gather stays fast as a command

    new_probes = probe_columns({k for row in new_rows for k in row})
    runs = frame(new_rows, run_columns() | new_probes)
    history = frame(new_epochs, history_columns())
    if previous:
        keep = {f"{rundir.RUNS}/{n}" for n in unchanged if not entries[n].get("skip")}
        old_runs = pd.read_parquet(result.runs_path)
        old_runs = old_runs[old_runs["run_dir"].isin(keep)]
        for name, (status, error) in status_changed.items():
            where = old_runs["run_dir"] == f"{rundir.RUNS}/{name}"
            old_runs.loc[where, "status"] = status
            old_runs.loc[where, "error"] = error
        kept_ids = set(old_runs["run_id"].dropna())
        old_history = pd.read_parquet(result.history_path)
        old_history = old_history[old_history["run_id"].isin(kept_ids)]
        runs = pd.concat([old_runs, runs], ignore_index=True) if len(runs) else old_runs
        history = pd.concat([old_history, history], ignore_index=True) if len(history) \
            else old_history
    runs_columns = run_columns() | probe_columns(runs.columns)
    runs = runs.reindex(columns=list(runs_columns))
    runs = runs.sort_values("run_dir", kind="stable").reset_index(drop=True)
    history = history.sort_values(["run_id", "epoch"], kind="stable").reset_index(drop=True)
    runs = runs.astype(runs_columns)
    history = history.astype(history_columns())
    _write_parquet(runs, result.runs_path)
    _write_parquet(history, result.history_path)
    atomic_write_json(sweep_dir / INDEX, {
        "schema": schema,
        "runs_parquet": _file_stat(result.runs_path),
        "history_parquet": _file_stat(result.history_path),
        "epochs": len(history),
        "dirs": entries,
    })
    result.runs = len(runs)
    result.epochs = len(history)
    result.written = True
    return result


def store_index(sweep_dir: Path) -> dict | None:
    try:
        data = read_json(Path(sweep_dir) / INDEX)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_parquet(df, path: Path) -> None:
    with atomic_path(path) as temporary:
        df.to_parquet(temporary, index=False, engine="pyarrow")


def empty_runs():
    """An empty runs table with the full schema (what gather writes for a sweep with no runs)."""
    return frame([], run_columns())

