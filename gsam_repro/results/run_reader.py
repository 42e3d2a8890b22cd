"""Read one run directory into its runs.parquet row and its history rows, trusting only what
the files say: a config.yaml whose values no longer give the run's id is refused (`Unreadable`),
a run that failed before its config is kept as failed, and a malformed metrics.jsonl line is
skipped with a note naming file and line. gather.py decides which directories to read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gsam_repro.errors import UsageError
from gsam_repro.results.schema import run_columns as summary_columns
from gsam_repro.train import config as run_config
from gsam_repro.train import rundir
from gsam_repro.train.config import PROBE_PREFIX, flatten
from gsam_repro.train.rundir import first_line
from gsam_repro.train.rundir import run_id_from_dir_name as id_from_dir_name

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Unreadable(Exception):
    pass


def _load_json(path: Path, required: bool = False) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        if required:
            raise Unreadable(f"no {path.name}") from None
        return None
    except (OSError, ValueError) as err:
        raise Unreadable(f"{path.name}: {err}") from None


def _failed_error(run_dir: Path) -> str | None:
    """failed.json's error (first line), "" when it has none, None when there is no file."""
    try:
        failed = _load_json(run_dir / rundir.FAILED)
    except Unreadable as err:
        return f"unreadable {err}"
    if failed is None:
        return None
    return first_line(failed.get("error") if isinstance(failed, dict) else None) or ""


def _check_config_unchanged(run_dir: Path, config: dict, summary: dict | None) -> None:
    """Raise Unreadable when config.yaml no longer describes the run that trained: the run id
    recomputed from its values must be the one recorded (its header, summary.json, the
    directory name), or an edited file would put its values on another run's results."""
    try:
        actual = run_config.run_id(run_config.config_from_dict(config))
    except UsageError as err:
        raise Unreadable(f"{rundir.CONFIG} is not a valid run config ({err})") from None
    recorded = {rid for rid in (_header_run_id(run_dir / rundir.CONFIG),
                                (summary or {}).get("run_id"), id_from_dir_name(run_dir.name))
                if rid}
    if recorded - {actual}:
        raise Unreadable(f"{rundir.CONFIG} was edited after the run: its values give run id "
                          f"{actual}, but the run is {', '.join(sorted(recorded))}; restore "
                          "the file (or move the run out of the sweep)")


def _read_history(run_dir: Path, notes: list[str]) -> list[dict]:
    """metrics.jsonl's epochs; a line that is not a JSON mapping is skipped with a note."""
    history: list[dict] = []
    with open(run_dir / rundir.METRICS, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as err:
                notes.append(f"{rundir.METRICS} line {number} is not JSON ({err}): skipped")
                continue
            if not isinstance(entry, dict):
                notes.append(f"{rundir.METRICS} line {number} is not a mapping: skipped")
                continue
            history.append(entry)
    return history


def read_run(run_dir: Path, sweep: str,
             notes: list[str] | None = None) -> tuple[dict, list[dict]]:
    """One run directory -> (its runs.parquet row, its history rows). Status is read from the
    files only (done, diverged, failed or pending); raises Unreadable for a directory with no
    trustworthy config. What was kept despite a problem (a malformed metrics line, a missing
    metrics.jsonl) is appended to `notes`."""
    notes = [] if notes is None else notes
    try:
        with open(run_dir / rundir.CONFIG, encoding="utf-8") as handle:
            config = yaml.load(handle, Loader=YAML_LOADER)
    except FileNotFoundError:
        error = _failed_error(run_dir)
        if error is None:
            raise Unreadable(f"no {rundir.CONFIG} (the run has not started)") from None
        rid = id_from_dir_name(run_dir.name) or run_dir.name  # failed before its config
        return {"run_id": rid, "sweep": sweep, "run_dir": f"runs/{run_dir.name}",
                "status": "failed", "error": error or f"see {rundir.FAILED}"}, []
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise Unreadable(f"{rundir.CONFIG}: {err}") from None
    if not isinstance(config, dict):
        raise Unreadable(f"{rundir.CONFIG} is not a mapping")
    summary_error = None
    try:
        summary = _load_json(run_dir / rundir.SUMMARY)
    except Unreadable as err:  # the run finished, but how is lost: failed, and says why
        summary, summary_error = None, f"unreadable {err}"
    if summary is not None and not isinstance(summary, dict):
        summary, summary_error = None, f"unreadable {rundir.SUMMARY}: not a mapping"
    _check_config_unchanged(run_dir, config, summary)
    failed = _failed_error(run_dir)
    try:
        history = _read_history(run_dir, notes)
    except FileNotFoundError:
        history = []
        if failed is None:
            notes.append(f"no {rundir.METRICS}: the run has no history rows")
    run_id = ((summary or {}).get("run_id") or _header_run_id(run_dir / rundir.CONFIG)
              or id_from_dir_name(run_dir.name) or run_dir.name)
    row: dict[str, Any] = {"run_id": run_id, "sweep": sweep, "run_dir": f"runs/{run_dir.name}"}
    row.update(flatten(config))
    if summary_error is not None:
        row["status"] = "failed"
        row["error"] = summary_error
    elif summary is not None:
        known = summary_columns()
        row.update({k: v for k, v in summary.items()
                    if (k in known or k.startswith(PROBE_PREFIX)) and k not in row})
        status = summary.get("status", "done")
        row["status"] = status if status in ("done", "diverged") else "failed"
    elif failed is not None:
        row["status"] = "failed"
        row["error"] = failed or None
    else:
        row["status"] = "pending"
        row["epochs_completed"] = len(history)
    if summary is None or not summary.get("torch_version"):
        env = _load_json(run_dir / rundir.ENV) or {}
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
