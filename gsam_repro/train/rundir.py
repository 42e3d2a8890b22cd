"""The run directory: which files a run writes, how they are written, and whose run it is.

Every file is written through gsam_repro.fsio (a temporary name in the same folder, renamed
into place), so a killed run never leaves a half-written file; `summary.json` is written last
and its presence means the run is finished.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from gsam_repro.errors import UsageError
from gsam_repro.fsio import atomic_write_text, read_json

# The files of a run directory: defined here only, imported by the sweep, gather and reports.
CONFIG = "config.yaml"
ENV = "env.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
FAILED = "failed.json"
LOCK = ".run.lock"
RUN_ID_HEADER = "# run_id: "
# A sweep directory keeps its run directories under runs/, each named `<readable values>-<run
# id>` (the id suffix alone identifies the run), and the spec as run in spec.yaml.
RUNS = "runs"
SPEC_FILE = "spec.yaml"


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(record: dict) -> str:
    return json.dumps({k: finite_or_none(v) for k, v in record.items()}, allow_nan=False)


def atomic_write_json(path: Path, record: dict) -> None:
    atomic_write_text(path, json.dumps({k: finite_or_none(v) for k, v in record.items()},
                                       indent=2, allow_nan=False) + "\n")


def write_metrics(out_dir: Path, rows: list[dict]) -> None:
    """Rewrite metrics.jsonl with one line an epoch (so it always matches the checkpoint)."""
    atomic_write_text(out_dir / METRICS, "".join(to_json(row) + "\n" for row in rows))


def read_summary(out_dir: Path) -> dict | None:
    path = Path(out_dir) / SUMMARY
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def recorded_run_id(out_dir: Path) -> str | None:
    """The run id a directory already holds (from config.yaml's header or summary.json)."""
    out_dir = Path(out_dir)
    config = out_dir / CONFIG
    if config.is_file():
        with open(config) as handle:
            for line in handle:
                if line.startswith(RUN_ID_HEADER):
                    return line[len(RUN_ID_HEADER):].strip()
                if not line.startswith("#"):
                    break
    summary = read_summary(out_dir)
    if summary and summary.get("run_id"):
        return str(summary["run_id"])
    return None


def checkpoint_run_id(out_dir: Path) -> str | None:
    """The run id inside checkpoint.pt, read without loading its tensors (memory-mapped); None
    when there is no checkpoint or it cannot be read (resuming then says why)."""
    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        return None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any unreadable checkpoint: resume() reports it
        return None
    rid = state.get("run_id") if isinstance(state, dict) else None
    return str(rid) if rid is not None else None


def check_owner(out_dir: Path, run_id: str) -> None:
    """Refuse a directory that holds a run of a different config: runs are never mixed. Its
    config.yaml, summary.json and checkpoint.pt are all asked, before anything is written."""
    other = recorded_run_id(out_dir)
    if other is None or other == run_id:
        other = checkpoint_run_id(out_dir)
    if other is not None and other != run_id:
        raise UsageError(
            f"{out_dir} holds run {other}, not this config's run {run_id}; choose another "
            "--out directory (runs are never mixed)"
        )


@contextlib.contextmanager
def hold_lock(path: Path, busy: Callable[[str], str]) -> Iterator[None]:
    """Hold an exclusive flock on `path` (released when the process dies, so a killed holder
    never leaves a stale lock); a held lock raises UsageError(busy(who holds it))."""
    import fcntl

    handle = open(path, "a+")  # noqa: SIM115 - held for the duration of the context
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise UsageError(busy(handle.read().strip() or "another process")) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()


@contextlib.contextmanager
def run_lock(out_dir: Path) -> Iterator[bool]:
    """One process trains into a run directory at a time (the lock kind `sweep run` takes on a
    sweep). Yields whether the directory was created here; if so and nothing but the lock was
    written to it (the run stopped before starting), it is removed again."""
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK
    try:
        with hold_lock(
            path, lambda holder: f"{out_dir}: another process is training into this run "
            f"directory ({holder})"):
            yield created
    finally:
        if created and [p.name for p in out_dir.iterdir()] == [LOCK]:
            with contextlib.suppress(OSError):
                path.unlink()
                out_dir.rmdir()


def config_text(config_dict: dict, run_id: str) -> str:
    """config.yaml: the resolved config, loadable by `gsam-repro train`, with its run id."""
    header = (
        f"{RUN_ID_HEADER}{run_id}\n"
        "# The resolved config of this run. `gsam-repro train config.yaml --out <this folder>`\n"
        "# resumes or re-runs it.\n"
    )
    return header + yaml.safe_dump(config_dict, sort_keys=False, default_flow_style=False)


def git_sha() -> str | None:
    """The commit of the checkout this package runs from, or None outside a git checkout."""
    package_dir = Path(__file__).resolve().parents[1]
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package_dir,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and sha else None


def git_dirty() -> bool | None:
    """Whether the checkout this package runs from has uncommitted changes to tracked files
    (None outside a git checkout): a result from a dirty tree is not reproducible from its sha."""
    package_dir = Path(__file__).resolve().parents[1]
    try:
        result = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=package_dir, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(result.stdout.strip()) if result.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def file_sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def optimizer_file(name: str) -> str | None:
    """The file of a `path/to/file.py:Class` optimizer name, else None."""
    target = name.rpartition(":")[0]
    return target if target.endswith(".py") else None


def optimizer_file_change(name: Any, recorded: Any) -> str | None:
    """Why a run of optimizer `name` that recorded file hash `recorded` is out of date: its
    `file.py` (read from the current directory, as the trainer reads it) now hashes to something
    else or is gone. None when it is unchanged or the run used no optimizer file."""
    if not isinstance(name, str) or not isinstance(recorded, str) or not recorded:
        return None
    path = optimizer_file(name)
    if path is None:
        return None
    current = file_sha256(path)
    if current is None:
        return f"optimizer file {path} is gone (the run used sha256 {recorded[:12]})"
    if current != recorded:
        return (f"optimizer file {path} changed since the run (sha256 {recorded[:12]} then, "
                f"{current[:12]} now)")
    return None


def stale_reason(run_dir: Path) -> str | None:
    """optimizer_file_change for a finished run directory, from its summary.json and
    config.yaml (read only when the summary recorded an optimizer file)."""
    try:
        summary = read_json(Path(run_dir) / SUMMARY)
    except (OSError, ValueError):
        return None
    recorded = summary.get("optimizer_file_sha256") if isinstance(summary, dict) else None
    if not recorded:
        return None
    try:
        config = yaml.safe_load((Path(run_dir) / CONFIG).read_text())
        name = config["optimizer"]["name"]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return f"{CONFIG} does not name the optimizer whose file the run recorded"
    return optimizer_file_change(name, recorded)


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def environment(device, optimizer_name: str | None = None) -> dict:
    """What env.json records: versions, device, host, CPU and instruction set torch uses, the
    commit and whether the tree was dirty, and the hash of a user's optimizer file, so results
    can be traced and mixed provenance flagged."""
    from importlib import metadata

    import numpy
    import torch

    try:  # the installed version, without importing timm (slow) when the run does not use it
        timm_version = metadata.version("timm")
    except metadata.PackageNotFoundError:
        timm_version = None
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm_version,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "optimizer_file_sha256": (file_sha256(optimizer_file(optimizer_name))
                                  if optimizer_name and optimizer_file(optimizer_name) else None),
    }


def write_failed(out_dir: Path, error: BaseException | str, detail: str | None = None) -> None:
    """failed.json: the error and its traceback, so sweeps can mark the run failed. The one
    writer of the file: the trainer passes the exception, `sweep run` the error of a job that
    ended without a summary (`detail`: what its log says)."""
    if isinstance(error, BaseException):
        if detail is None:
            detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        error = f"{type(error).__name__}: {error}"
    atomic_write_json(Path(out_dir) / FAILED, {"error": error, "traceback": detail or ""})


def first_line(text: Any) -> str | None:
    """The first line of an error (at most 300 characters), as runs.parquet and status show it."""
    if not text:
        return None
    return str(text).strip().splitlines()[0][:300] if str(text).strip() else None


def run_id_from_dir_name(name: str) -> str | None:
    """The run id at the end of a run directory name (`name=gsam,seed=1-3f2a9c01d7`), or None
    for a name that has none."""
    rid = name.rpartition("-")[2]
    return rid if _dir_run_id().match(rid) else None


@functools.cache
def _dir_run_id() -> re.Pattern:
    from gsam_repro.train.config import RunConfig, run_id

    return re.compile(rf"^[0-9a-f]{{{len(run_id(RunConfig()))}}}$")
