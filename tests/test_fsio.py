"""gsam_repro.fsio: the package's one atomic writer."""

from __future__ import annotations

import os
import stat

import pytest

from gsam_repro import fsio


def test_a_write_replaces_the_file_whole_with_the_umask_mode(tmp_path):
    path = tmp_path / "sub" / "summary.json"  # the folder is created
    fsio.atomic_write_text(path, "old")
    fsio.atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == fsio.FILE_MODE
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "runs.parquet"
    fsio.atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), fsio.atomic_path(path) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("the writer died")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.parquet"]


def test_the_file_and_then_its_folder_are_synced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd")
                      else fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "jobs.json"
    fsio.atomic_write_json(path, {"b": 1, "a": float("nan")})
    assert len(synced) == 2
    if isinstance(synced[0], str):  # Linux: the temporary file, then the folder
        assert synced[0].startswith(str(tmp_path / ".jobs.json.")) and synced[1] == str(tmp_path)
    assert fsio.read_json(path) == {"a": pytest.approx(float("nan"), nan_ok=True), "b": 1}


def test_temporary_names_are_unique_and_keep_the_suffix(tmp_path):
    target = tmp_path / "cache.npz"
    with fsio.atomic_path(target, suffix=".npz") as first, \
            fsio.atomic_path(target, suffix=".npz") as second:
        assert first != second and first.parent == second.parent == tmp_path
        assert first.name.endswith(".npz") and first.name.startswith(".cache.npz.")
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert target.read_bytes() == b"1"  # the outer block ends last
