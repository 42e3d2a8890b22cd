"""Gather a sweep's run directories into `runs.parquet` (one row a run) and `history.parquet`
(one row a run and epoch), the only files reports read.

Columns and dtypes come from `schema.py` and, for the config, from the RunConfig dataclasses, so
an empty sweep has the same schema as a big one. Gathering is incremental: `.gather.json` in the
sweep directory records each run directory's file sizes and times, and a run whose files have not
changed is taken from the previous parquet files instead of being read again. A run directory
that cannot be read (no config.yaml yet, a truncated JSON file) is listed in one warning and
left out; it never stops the gather.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gsam_repro.errors import UsageError
from gsam_repro.results.schema import HISTORY_COLUMNS, PROBE_DTYPE, RUN_COLUMNS
from gsam_repro.sweep import store
from gsam_repro.sweep.ids import id_from_dir_name
from gsam_repro.train.config import PROBE_PREFIX, SECTIONS, flatten

RUNS_PARQUET = "runs.parquet"
HISTORY_PARQUET = "history.parquet"
INDEX = ".gather.json"
GATHER_VERSION = 1
_FILES = (store.CONFIG, store.SUMMARY, store.FAILED, store.METRICS, store.ENV)
_UNFINISHED = ("pending", "running")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            columns[f"{section}.{f.name}"] = _dtype(hints[f.name])
    return columns


def run_columns() -> dict[str, str]:
    """Every column of runs.parquet, in order: run identity and status, config, metrics."""
    head = ("run_id", "sweep", "run_dir", "status", "error")
    columns = {k: RUN_COLUMNS[k] for k in head}
    columns.update(config_columns())
    columns.update({k: v for k, v in RUN_COLUMNS.items() if k not in head})
    return columns


def probe_columns(names) -> dict[str, str]:
    """The sharpness-probe columns among `names` (one per radius a sweep probed), sorted by
    radius."""
    probes = [n for n in names if str(n).startswith(PROBE_PREFIX)]
    return {n: PROBE_DTYPE for n in sorted(probes, key=lambda n: float(n[len(PROBE_PREFIX):]))}


def _schema_hash() -> str:
    text = json.dumps([GATHER_VERSION, run_columns(), HISTORY_COLUMNS], sort_keys=True)
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


class _Unreadable(Exception):
    pass


def _signature(run_dir: Path) -> list:
    sig = []
    for name in _FILES:
        try:
            st = os.stat(run_dir / name)
            sig.append([st.st_mtime_ns, st.st_size])
        except FileNotFoundError:
            sig.append(None)
    return sig


def _load_json(path: Path, required: bool = False) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        if required:
            raise _Unreadable(f"no {path.name}") from None
        return None
    except (OSError, ValueError) as err:
        raise _Unreadable(f"{path.name}: {err}") from None


def read_run(run_dir: Path, sweep: str) -> tuple[dict, list[dict]]:
    """One run directory -> (its runs.parquet row, its history rows). Status is read from the
    files only (done, diverged, failed or pending); raises _Unreadable."""
    try:
        with open(run_dir / store.CONFIG) as handle:
            config = yaml.load(handle, Loader=_Loader)
    except FileNotFoundError:
        raise _Unreadable(f"no {store.CONFIG} (the run has not started)") from None
    except (OSError, yaml.YAMLError) as err:
        raise _Unreadable(f"{store.CONFIG}: {err}") from None
    if not isinstance(config, dict):
        raise _Unreadable(f"{store.CONFIG} is not a mapping")
    summary = _load_json(run_dir / store.SUMMARY)
    if summary is not None and not isinstance(summary, dict):
        raise _Unreadable(f"{store.SUMMARY} is not a mapping")
    failed = _load_json(run_dir / store.FAILED)
    history: list[dict] = []
    try:
        with open(run_dir / store.METRICS) as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        history.append(json.loads(line))
                    except ValueError as err:
                        raise _Unreadable(f"{store.METRICS} line {number}: {err}") from None
    except FileNotFoundError:
        pass
    run_id = ((summary or {}).get("run_id") or _header_run_id(run_dir / store.CONFIG)
              or id_from_dir_name(run_dir.name) or run_dir.name)
    row: dict[str, Any] = {"run_id": run_id, "sweep": sweep, "run_dir": f"runs/{run_dir.name}"}
    row.update(flatten(config))
    if summary is not None:
        row.update({k: v for k, v in summary.items()
                    if (k in RUN_COLUMNS or k.startswith(PROBE_PREFIX)) and k not in row})
        status = summary.get("status", "done")
        row["status"] = status if status in ("done", "diverged") else "failed"
    elif failed is not None:
        row["status"] = "failed"
        row["error"] = store.first_line(failed.get("error") if isinstance(failed, dict) else None)
    else:
        row["status"] = "pending"
        row["epochs_completed"] = len(history)
    if summary is None or not summary.get("torch_version"):
        env = _load_json(run_dir / store.ENV) or {}
        if isinstance(env, dict):
            row.setdefault("torch_version", env.get("torch"))
            row.setdefault("device", env.get("device_name") or env.get("device"))
            row.setdefault("git_sha", env.get("git_sha"))
            row.setdefault("hostname", env.get("hostname"))
    epochs = []
    for entry in history:
        if not isinstance(entry, dict):
            raise _Unreadable(f"{store.METRICS} holds a line that is not a mapping")
        epochs.append({**entry, "run_id": run_id, "sweep": sweep})
    return row, epochs


def _header_run_id(path: Path) -> str | None:
    with open(path) as handle:
        for line in handle:
            if line.startswith("# run_id:"):
                return line.split(":", 1)[1].strip()
            if not line.startswith("#"):
                return None
    return None


def _sweep_name(sweep_dir: Path) -> str:
    try:
        spec = yaml.load((sweep_dir / store.SPEC_FILE).read_text(), Loader=_Loader)
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            return spec["name"]
    except (OSError, yaml.YAMLError):
        pass
    return sweep_dir.resolve().name


def _file_stat(path: Path) -> list | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _live_statuses(sweep_dir: Path, run_ids: dict[str, str]) -> dict[str, tuple]:
    """run dir -> (pending / running / failed, error) for unfinished runs, from the recorded
    jobs (a SLURM job that ended without a summary makes its run failed)."""
    if not run_ids:
        return {}
    jobs = store.load_jobs(sweep_dir)
    known = {rid: jobs[rid] for rid in run_ids.values() if rid in jobs}
    live = store.job_states(known) if known else {}
    out = {}
    for name, rid in run_ids.items():
        state, error = live.get(rid, ("pending", None))
        out[name] = ("pending" if state == "queued" else state, error)
    return out


def gather(sweep_dir: str | Path, *, full: bool = False) -> GatherResult:
    """Write `runs.parquet` and `history.parquet` for a sweep directory (see module docstring).

    `full=True` reads every run directory again instead of reusing the previous gather."""
    sweep_dir = Path(sweep_dir)
    runs_dir = sweep_dir / store.RUNS
    if not runs_dir.is_dir() and not (sweep_dir / store.SPEC_FILE).is_file():
        raise UsageError(f"{sweep_dir}: not a sweep directory (no {store.RUNS}/ folder and no "
                         f"{store.SPEC_FILE})")
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
        try:
            row, epochs = read_run(runs_dir / name, sweep)
        except _Unreadable as err:
            entries[name] = {"sig": signatures[name], "skip": str(err)}
            continue
        new_rows.append(row)
        new_epochs.extend(epochs)
        entries[name] = {"sig": signatures[name], "status": row["status"],
                         "run_id": row["run_id"]}
    for name in unchanged:
        entries[name] = previous[name]
    result.read = len(changed)
    result.reused = len(unchanged)
    result.skipped = {f"{store.RUNS}/{n}": e["skip"] for n, e in sorted(entries.items())
                      if e.get("skip")}

    unfinished = {n: e["run_id"] for n, e in entries.items()
                  if not e.get("skip") and e.get("status") in _UNFINISHED}
    for row in new_rows:
        if row["status"] == "pending":
            unfinished[row["run_dir"][len(store.RUNS) + 1:]] = row["run_id"]
    live = _live_statuses(sweep_dir, unfinished)
    status_changed = {n: s for n, s in live.items()
                      if n in previous and n not in changed and previous[n].get("status") != s[0]}
    for row in new_rows:
        name = row["run_dir"][len(store.RUNS) + 1:]
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

    if previous and not changed and not removed and not status_changed:
        result.runs = sum(1 for e in entries.values() if not e.get("skip"))
        result.epochs = index.get("epochs", 0)
        return result

    import pandas as pd  # only now: an up-to-date gather stays fast as a command

    new_probes = probe_columns({k for row in new_rows for k in row})
    runs = frame(new_rows, run_columns() | new_probes)
    history = frame(new_epochs, HISTORY_COLUMNS)
    if previous:
        keep = {f"{store.RUNS}/{n}" for n in unchanged if not entries[n].get("skip")}
        old_runs = pd.read_parquet(result.runs_path)
        old_runs = old_runs[old_runs["run_dir"].isin(keep)]
        for name, (status, error) in status_changed.items():
            where = old_runs["run_dir"] == f"{store.RUNS}/{name}"
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
    history = history.astype(HISTORY_COLUMNS)
    _write_parquet(runs, result.runs_path)
    _write_parquet(history, result.history_path)
    store.atomic_write_json(sweep_dir / INDEX, {
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
        data = store.read_json(Path(sweep_dir) / INDEX)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_parquet(df, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        df.to_parquet(tmp, index=False, engine="pyarrow")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def empty_runs():
    """An empty runs table with the full schema (what gather writes for a sweep with no runs)."""
    return frame([], run_columns())

