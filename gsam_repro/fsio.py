"""Atomic file writes: the one way the package replaces a file that others may read.

A reader (a resuming run, `sweep status`, gather, a report) sees the old content or the new,
never a part: the new content goes to a unique temporary name in the same folder, is flushed to
disk, given the mode open() would give a new file, and renamed over the target; the folder is
then synced so the rename itself survives a crash. A failed write removes its temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The mode open() would give a new file (0644 under umask 022): others on a shared cluster may
# read results. mkstemp creates 0600, so every atomic write sets this before its rename.
FILE_MODE = 0o666 & ~_umask()


def _fsync_path(path: str | Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; some filesystems (and all of Windows) cannot open a folder."""
    with contextlib.suppress(OSError):
        _fsync_path(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a unique temporary path next to `path` for a writer that wants a file name (a
    figure, a parquet file); when the block ends without error it replaces `path` atomically.
    `suffix` keeps a library that picks the format from the name (np.savez) on its name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _fsync_path(temporary, os.O_RDONLY)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (see the module docstring)."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path` with UTF-8 `text` atomically."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Bookkeeping JSON (jobs.json, the gather index): sorted keys, values JSON cannot hold
    written as text."""
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


def save_figure(fig: Any, out_dir: str | Path, name: str,
                formats: tuple[str, ...] = ("png", "pdf"), dpi: int = 200) -> list[Path]:
    """Write a matplotlib figure as `out_dir/name.<format>` for each format, each atomically
    (a reader never sees half a PNG). Returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in formats:
        path = out_dir / f"{name}.{suffix}"
        with atomic_path(path, suffix=f".{suffix}") as tmp:
            fig.savefig(tmp, format=suffix, dpi=dpi)
        written.append(path)
    return written
