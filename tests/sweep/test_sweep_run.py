"""`sweep run` with real runs: local processes through submitit, and in-process (debug)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sweep_testkit import cli, write_spec

import gsam_repro.train as train
from gsam_repro.sweep import dispatch, store
from gsam_repro.sweep.executor import ExecutorSpec
from gsam_repro.sweep.plan import expand
from gsam_repro.sweep.spec import load_spec


def summaries(out: Path) -> dict[str, float]:
    """run dir name -> mtime of its summary.json, for the runs that have one."""
    found = {}
    for path in (out / "runs").glob("*/summary.json"):
        found[path.parent.name] = path.stat().st_mtime_ns
    return found


def states(spec: Path, out: Path) -> dict[str, str]:
    sweep = expand(load_spec(spec, out=out))
    found = store.run_states(out, [r.run_id for r in sweep.runs])
    return {r.run_id: found[r.run_id].state for r in sweep.runs}


def test_a_failing_run_never_stops_the_others_and_retry_failed_reruns_it(tmp_path, monkeypatch,
                                                                         capsys):
    spec = write_spec(tmp_path, "executor: debug\ngrid:\n  optimizer.lr: [0.1, 0.05, 0.02]\n")
    out = tmp_path / "out"
    real_run = train.run

    def flaky(config, out_dir):
        if config.optimizer.lr == 0.05:
            raise RuntimeError("disk on fire")
        return real_run(config, out_dir)

    monkeypatch.setattr(train, "run", flaky)
    monkeypatch.setattr("pdb.post_mortem", lambda *a, **k: None)  # debug runs open pdb on errors
    assert cli("sweep", "run", spec, "--out", out) == 1
    assert sorted(states(spec, out).values()) == ["done", "done", "failed"]
    failed_dir = next(p.parent for p in (out / "runs").glob("*/failed.json"))
    assert json.loads((failed_dir / "failed.json").read_text())["error"] == \
        "RuntimeError: disk on fire"
    before = summaries(out)
    capsys.readouterr()

    # without --retry-failed nothing runs again
    monkeypatch.setattr(train, "run", real_run)
    assert cli("sweep", "run", spec, "--out", out) == 1
    assert "nothing to run" in capsys.readouterr().out
    assert summaries(out) == before

    assert cli("sweep", "run", spec, "--out", out, "--retry-failed") == 0
    assert sorted(states(spec, out).values()) == ["done"] * 3
    after = summaries(out)
    assert {k: after[k] for k in before} == before  # the finished runs were not touched
    assert (failed_dir / "failed.json.prev").exists()  # the old failure is kept aside


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["process", "pool"])
def test_local_sweep_killed_midway_reruns_only_what_is_missing_then_nothing(tmp_path, capsys,
                                                                             mode):
    # 30 epochs: long enough (~1 s) that the pool's second run is still going at the kill
    spec = write_spec(tmp_path, """
        executor: {cluster: local, max_parallel: 1, timeout_min: 10}
        force: {schedule.epochs: 30}
        grid:
          optimizer.lr: [0.1, 0.05]
    """)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sweeper = subprocess.Popen(
        [sys.executable, "-m", "gsam_repro", "sweep", "run", str(spec), "--out", str(out),
         "--local-mode", mode],
        start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not summaries(out) and sweeper.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # kill the sweep and every job it started (one process group), as a crash would
    os.killpg(sweeper.pid, signal.SIGKILL)
    sweeper.wait()
    first = summaries(out)
    assert len(first) == 1, sweeper.stderr.read().decode()
    assert sorted(states(spec, out).values()) == ["done", "pending"]
    jobs_before = store.load_jobs(out)

    assert cli("sweep", "run", spec, "--out", out, "--local-mode", mode) == 0
    after = summaries(out)
    assert len(after) == 2
    assert {k: after[k] for k in first} == first  # the finished run was left alone
    jobs = store.load_jobs(out)
    resubmitted = {rid for rid in jobs if jobs[rid] != jobs_before.get(rid)}
    assert len(resubmitted) == 1
    rid = resubmitted.pop()
    if mode == "process":
        log_folders = sorted(p.name for p in (out / "submitit").iterdir() if p.name != "%j")
        assert jobs[rid]["job_id"] in log_folders  # logs stay in the sweep's folder
    else:  # one log a run, in the sweep's folder
        assert list((out / "submitit").glob(f"pool-*/{rid}.log"))

    capsys.readouterr()
    assert cli("sweep", "run", spec, "--out", out) == 0  # everything is done: submits nothing
    assert "nothing to run: 2 of 2 runs finished" in capsys.readouterr().out
    assert store.load_jobs(out) == jobs


class FakeJob:
    """Stands in for a submitit LocalJob: 'runs' for a few polls, then writes its summary."""

    live = 0
    most = 0

    def __init__(self, task: dispatch.RunJob, polls: int):
        self.task = task
        self.polls_left = polls
        self.job_id = str(1000 + len(FakeExecutor.submitted))
        self.paths = type("Paths", (), {"stderr": None})()
        FakeJob.live += 1
        FakeJob.most = max(FakeJob.most, FakeJob.live)

    def done(self) -> bool:
        if self.polls_left > 0:
            self.polls_left -= 1
            return False
        if self.polls_left == 0:
            self.polls_left = -1
            FakeJob.live -= 1
            run_dir = Path(self.task.run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "summary.json").write_text('{"status": "done"}')
        return True


class FakeExecutor:
    submitted: list = []

    def submit(self, task):
        job = FakeJob(task, polls=1 + len(FakeExecutor.submitted) % 3)
        FakeExecutor.submitted.append(job)
        return job


def test_local_jobs_are_throttled_to_max_parallel(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "make_executor", lambda *a, **k: FakeExecutor())
    FakeExecutor.submitted = []
    FakeJob.live = FakeJob.most = 0
    spec = load_spec(write_spec(tmp_path, "grid:\n  optimizer.lr: [0.1, 0.2, 0.3, 0.4, 0.5]\n"))
    sweep = expand(spec)
    tasks = [dispatch.Task(r.run_id, tmp_path / "runs" / r.name, sweep.config(r))
             for r in sweep.runs]
    outcome = dispatch.run_tasks(tasks, sweep_dir=tmp_path, executor=ExecutorSpec(poll_s=0.001),
                                 job_name="t", max_parallel=2, local_mode="process")
    assert len(FakeExecutor.submitted) == 5 and FakeJob.most == 2
    assert sorted(outcome.done) == sorted(t.run_id for t in tasks)
    assert set(store.load_jobs(tmp_path)) == {t.run_id for t in tasks}


def test_default_parallelism_is_cores_over_threads(monkeypatch):
    monkeypatch.setattr(dispatch, "cpu_count", lambda: 16)
    assert dispatch.default_max_parallel(1) == 16
    assert dispatch.default_max_parallel(4) == 4
    assert dispatch.default_max_parallel(32) == 1


def test_jobs_are_checkpointable_and_requeue_the_same_run(tmp_path):
    spec = load_spec(write_spec(tmp_path, "grid:\n  optimizer.lr: [0.1]\n"))
    sweep = expand(spec)
    job = dispatch.RunJob(sweep.config(sweep.runs[0]), str(tmp_path / "run"), 1)
    again = job.checkpoint()  # what submitit calls on preemption or timeout
    assert again.function is job and not again.args and not again.kwargs


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["process", "pool"])
def test_ctrl_c_cancels_the_jobs_it_started_and_they_resume_later(tmp_path, mode):
    spec = write_spec(tmp_path, """
        executor: {cluster: local, max_parallel: 1}
        force: {schedule.epochs: 100000}
        grid:
          optimizer.lr: [0.1]
    """)  # a run far longer than the test: it is still training when Ctrl-C comes
    out = tmp_path / "out"
    sweeper = subprocess.Popen(
        [sys.executable, "-m", "gsam_repro", "sweep", "run", str(spec), "--out", str(out),
         "--local-mode", mode],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # A shell's background job (CI started with `&`) ignores SIGINT, and children inherit
        # that: give the sweep Ctrl-C's default action, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not store.load_jobs(out) and time.time() < deadline:
        time.sleep(0.1)
    (record,) = store.load_jobs(out).values()
    pid = int(record["job_id"])
    assert store.pid_alive(pid)
    sweeper.send_signal(signal.SIGINT)  # only the sweep process: it must stop its own jobs
    assert sweeper.wait(timeout=60) == 130, sweeper.stderr.read().decode()
    deadline = time.time() + 30
    while store.pid_alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not store.pid_alive(pid)
    assert store.load_jobs(out) == {}
    assert list(states(spec, out).values()) == ["pending"]


def test_a_rerun_waits_for_jobs_an_earlier_sweep_left_running_instead_of_resubmitting(
        tmp_path, monkeypatch):
    from sweep_testkit import fake_local_job

    spec = write_spec(tmp_path, "executor: {cluster: local, poll_s: 0.05}\n"
                                "grid:\n  optimizer.lr: [0.1]\n")
    out = tmp_path / "out"
    (run,) = expand(load_spec(spec, out=out)).runs
    run_dir = out / "runs" / run.name
    run_dir.mkdir(parents=True)
    orphan = fake_local_job()  # a job whose `sweep run` was killed, still training
    store.save_jobs(out, {run.run_id: store.job_record("local", str(orphan.pid))})
    monkeypatch.setattr(dispatch, "make_executor", lambda *a, **k: None)  # submitting would fail
    result = {}

    sweeper = threading.Thread(target=lambda: result.update(code=cli("sweep", "run", spec,
                                                                     "--out", out)))
    sweeper.start()
    time.sleep(0.5)
    assert sweeper.is_alive()  # waiting for the orphan
    (run_dir / "summary.json").write_text('{"status": "done"}')
    orphan.kill()
    orphan.wait()
    sweeper.join(timeout=30)
    assert result["code"] == 0
    assert list(states(spec, out).values()) == ["done"]


def test_a_full_disk_stops_sweep_run_cleanly_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    import errno

    from gsam_repro import fsio

    spec = write_spec(tmp_path, "executor: debug\ngrid:\n  optimizer.lr: [0.1]\n")
    out = tmp_path / "out"
    real_write = fsio.atomic_write_bytes  # every atomic text and JSON write goes through it

    def full(path: Path):  # the disk fills up once the checkpoint is written
        if Path(path).name in (store.SUMMARY, store.FAILED):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(fsio, "atomic_write_bytes",
                        lambda path, data: full(path) or real_write(path, data))
    monkeypatch.setattr("pdb.post_mortem", lambda *a, **k: None)  # debug runs open pdb on errors
    assert cli("sweep", "run", spec, "--out", out) == 1
    err = capsys.readouterr().err
    assert "error: No space left on device writing" in err and "Traceback" not in err
    assert "resumable" in err
    (run_dir,) = (out / "runs").iterdir()
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / store.FAILED).exists()
    assert list(states(spec, out).values()) == ["pending"]

    monkeypatch.undo()
    assert cli("sweep", "run", spec, "--out", out) == 0
    assert list(states(spec, out).values()) == ["done"]
    assert "resuming after epoch 1/1" in capsys.readouterr().err
