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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gsam_repro.errors import UsageError
from gsam_repro.results.schema import HISTORY_COLUMNS, PROBE_DTYPE, RUN_COLUMNS
from gsam_repro.sweep import store
from gsam_repro.sweep.ids import id_from_dir_name
from gsam_repro.train import config as run_config
from gsam_repro.train.config import PROBE_PREFIX, SECTIONS, flatten

RUNS_PARQUET = "runs.parquet"
HISTORY_PARQUET = "history.parquet"
INDEX = ".gather.json"
GATHER_VERSION = 3  # 2: config.yaml checked against the run id; run notes in the index;
# 3: the optimizer file and its hash in the index (to flag stale runs without reading them)
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


def _failed_error(run_dir: Path) -> str | None:
    """failed.json's error (first line), "" when it has none, None when there is no file."""
    try:
        failed = _load_json(run_dir / store.FAILED)
    except _Unreadable as err:
        return f"unreadable {err}"
    if failed is None:
        return None
    return store.first_line(failed.get("error") if isinstance(failed, dict) else None) or ""


def _check_config_unchanged(run_dir: Path, config: dict, summary: dict | None) -> None:
    """Raise _Unreadable when config.yaml no longer describes the run that trained: the run id
    recomputed from its values must be the one recorded (its header, summary.json, the
    directory name), or an edited file would put its values on another run's results."""
    try:
        actual = run_config.run_id(run_config.config_from_dict(config))
    except UsageError as err:
        raise _Unreadable(f"{store.CONFIG} is not a valid run config ({err})") from None
    recorded = {rid for rid in (_header_run_id(run_dir / store.CONFIG),
                                (summary or {}).get("run_id"), id_from_dir_name(run_dir.name))
                if rid}
    if recorded - {actual}:
        raise _Unreadable(f"{store.CONFIG} was edited after the run: its values give run id "
                          f"{actual}, but the run is {', '.join(sorted(recorded))}; restore "
                          "the file (or move the run out of the sweep)")


def _read_history(run_dir: Path, notes: list[str]) -> list[dict]:
    """metrics.jsonl's epochs; a line that is not a JSON mapping is skipped with a note."""
    history: list[dict] = []
    with open(run_dir / store.METRICS, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as err:
                notes.append(f"{store.METRICS} line {number} is not JSON ({err}): skipped")
                continue
            if not isinstance(entry, dict):
                notes.append(f"{store.METRICS} line {number} is not a mapping: skipped")
                continue
            history.append(entry)
    return history


def read_run(run_dir: Path, sweep: str,
             notes: list[str] | None = None) -> tuple[dict, list[dict]]:
    """One run directory -> (its runs.parquet row, its history rows). Status is read from the
    files only (done, diverged, failed or pending); raises _Unreadable for a directory with no
    trustworthy config. What was kept despite a problem (a malformed metrics line, a missing
    metrics.jsonl) is appended to `notes`."""
    notes = [] if notes is None else notes
    try:
        with open(run_dir / store.CONFIG, encoding="utf-8") as handle:
            config = yaml.load(handle, Loader=_Loader)
    except FileNotFoundError:
        error = _failed_error(run_dir)
        if error is None:
            raise _Unreadable(f"no {store.CONFIG} (the run has not started)") from None
        rid = id_from_dir_name(run_dir.name) or run_dir.name  # failed before its config
        return {"run_id": rid, "sweep": sweep, "run_dir": f"runs/{run_dir.name}",
                "status": "failed", "error": error or f"see {store.FAILED}"}, []
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise _Unreadable(f"{store.CONFIG}: {err}") from None
    if not isinstance(config, dict):
        raise _Unreadable(f"{store.CONFIG} is not a mapping")
    summary_error = None
    try:
        summary = _load_json(run_dir / store.SUMMARY)
    except _Unreadable as err:  # the run finished, but how is lost: failed, and says why
        summary, summary_error = None, f"unreadable {err}"
    if summary is not None and not isinstance(summary, dict):
        summary, summary_error = None, f"unreadable {store.SUMMARY}: not a mapping"
    _check_config_unchanged(run_dir, config, summary)
    failed = _failed_error(run_dir)
    try:
        history = _read_history(run_dir, notes)
    except FileNotFoundError:
        history = []
        if failed is None:
            notes.append(f"no {store.METRICS}: the run has no history rows")
    run_id = ((summary or {}).get("run_id") or _header_run_id(run_dir / store.CONFIG)
              or id_from_dir_name(run_dir.name) or run_dir.name)
    row: dict[str, Any] = {"run_id": run_id, "sweep": sweep, "run_dir": f"runs/{run_dir.name}"}
    row.update(flatten(config))
    if summary_error is not None:
        row["status"] = "failed"
        row["error"] = summary_error
    elif summary is not None:
        row.update({k: v for k, v in summary.items()
                    if (k in RUN_COLUMNS or k.startswith(PROBE_PREFIX)) and k not in row})
        status = summary.get("status", "done")
        row["status"] = status if status in ("done", "diverged") else "failed"
    elif failed is not None:
        row["status"] = "failed"
        row["error"] = failed or None
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
    epochs = [{**entry, "run_id": run_id, "sweep": sweep} for entry in history]
    return row, epochs


def _header_run_id(path: Path) -> str | None:
    with open(path, encoding="utf-8", errors="replace") as handle:
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
    except (OSError, ValueError, yaml.YAMLError):
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


def stale_runs(entries: dict[str, dict]) -> dict[str, str]:
    """runs/<dir> -> why, for finished runs whose optimizer file changed since they ran
    (store.optimizer_file_change), from the index entries: checked on every gather, since the
    file can change while the run directory does not."""
    seen: dict[tuple, str | None] = {}
    out = {}
    for name, entry in sorted(entries.items()):
        recorded = entry.get("optimizer_file")
        if entry.get("skip") or entry.get("status") not in ("done", "diverged") or not recorded:
            continue
        key = tuple(recorded)
        if key not in seen:
            seen[key] = store.optimizer_file_change(*key)
        if seen[key]:
            out[f"{store.RUNS}/{name}"] = seen[key]
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
        notes: list[str] = []
        try:
            row, epochs = read_run(runs_dir / name, sweep, notes)
        except _Unreadable as err:
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
    result.skipped = {f"{store.RUNS}/{n}": e["skip"] for n, e in sorted(entries.items())
                      if e.get("skip")}
    result.notes = {f"{store.RUNS}/{n}": e["notes"] for n, e in sorted(entries.items())
                    if e.get("notes")}

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

