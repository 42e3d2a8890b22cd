"""Warm local workers (sweep/pool.py): runs reuse a worker, a run that raises or a worker that
dies fails only that run, overdue runs are restarted then failed, and `auto` picks the pool
only for short runs. (Ctrl-C and kill-then-resume: test_sweep_run.py, both local modes.)"""

from __future__ import annotations

import json
import textwrap

import pytest
from sweep_testkit import cli, write_spec

from gsam_repro.sweep import dispatch, pool, store
from gsam_repro.sweep.plan import expand
from gsam_repro.sweep.spec import load_spec

# A user's optimizer that kills its own process (lr 0.05) or raises (lr 0.02): a hard crash and
# an ordinary failing run. Any other lr is plain SGD.
CRASHING = textwrap.dedent("""
    import os
    import signal

    import torch


    class Crashing(torch.optim.SGD):
        def __init__(self, params, lr, momentum=None, weight_decay=None):
            if lr == 0.05:
                os.kill(os.getpid(), signal.SIGKILL)
            if lr == 0.02:
                raise RuntimeError("bad optimizer")
            super().__init__(params, lr=lr)
""")


def states(spec, out) -> dict[float, str]:
    sweep = expand(load_spec(spec, out=out))
    found = store.run_states(out, [r.run_id for r in sweep.runs])
    return {sweep.config(r).optimizer.lr: found[r.run_id].state for r in sweep.runs}


@pytest.mark.slow
def test_a_dead_worker_or_failing_run_fails_only_that_run_and_workers_are_reused(tmp_path,
                                                                                 capsys):
    (tmp_path / "crash.py").write_text(CRASHING)
    spec = write_spec(tmp_path, f"""
        executor: {{cluster: local, max_parallel: 1, poll_s: 0.05}}
        grid:
          optimizer.name: ["{tmp_path / 'crash.py'}:Crashing"]
          optimizer.lr: [0.1, 0.05, 0.02, 0.01]
    """)
    out = tmp_path / "out"
    assert cli("sweep", "run", spec, "--out", out, "--local-mode", "pool") == 1
    assert states(spec, out) == {0.1: "done", 0.05: "failed", 0.02: "failed", 0.01: "done"}
    failures = {json.loads(p.read_text())["error"] for p in (out / "runs").glob("*/failed.json")}
    assert "job ended without writing summary.json (its worker was killed by signal 9)" \
        in failures
    assert any("bad optimizer" in error for error in failures)
    # one worker did 0.1 and then (the kill) 0.05; its replacement did 0.02 and 0.01
    jobs = store.load_jobs(out)
    sweep = expand(load_spec(spec, out=out))
    pid = {sweep.config(r).optimizer.lr: jobs[r.run_id]["job_id"] for r in sweep.runs}
    assert pid[0.1] == pid[0.05] != pid[0.02] == pid[0.01]
    assert "sweep directory:" in capsys.readouterr().out


@pytest.mark.slow
def test_an_overdue_run_is_restarted_then_failed(tmp_path, monkeypatch):
    started = []

    class CountedWorker(pool.Worker):
        def __init__(self, env):
            super().__init__(env)
            started.append(self.pid)

    monkeypatch.setattr(pool, "Worker", CountedWorker)
    spec = write_spec(tmp_path, """
        executor: {cluster: local, max_parallel: 1, poll_s: 0.05, timeout_min: 0.0001,
                   max_num_timeout: 1}
        grid:
          optimizer.lr: [0.1]
    """)
    out = tmp_path / "out"
    assert cli("sweep", "run", spec, "--out", out, "--local-mode", "pool") == 1
    (failed,) = (out / "runs").glob("*/failed.json")
    assert json.loads(failed.read_text())["error"].endswith("(timed out after 0.0001 min)")
    assert len(started) == 2  # the first attempt's worker was killed, one restart, no more


def test_auto_picks_the_pool_only_when_every_run_is_short(tmp_path, monkeypatch):
    chosen = []
    monkeypatch.setattr(dispatch, "_run_pool", lambda *a: chosen.append("pool"))
    monkeypatch.setattr(dispatch, "_run_local", lambda *a: chosen.append("process"))
    spec = load_spec(write_spec(tmp_path, "grid:\n  data.train_size: [32, 2000000]\n"))
    sweep = expand(spec)
    tasks = [dispatch.Task(r.run_id, tmp_path / r.name, sweep.config(r)) for r in sweep.runs]
    for subset, mode in (([tasks[0]], "auto"), (tasks, "auto"), (tasks, "pool"),
                         ([tasks[0]], "process")):
        dispatch.run_tasks(subset, sweep_dir=tmp_path, executor=spec.executor, job_name="t",
                           local_mode=mode)
    assert chosen == ["pool", "process", "pool", "process"]


def test_short_means_train_images_times_epochs_within_the_limit(tmp_path):
    sweep = expand(load_spec(write_spec(tmp_path, "grid:\n  schedule.epochs: [1]\n")))
    config = sweep.config(sweep.runs[0])
    assert pool.is_short(config)  # 32 synthetic images, 1 epoch
    config.data.train_size = None
    config.data.name = "imagefolder"  # size unknown until read: not short
    assert not pool.is_short(config)
    config.data.name, config.schedule.epochs = "cifar10", 20  # 50,000 x 20
    assert config.data.train_size is None and pool.is_short(config)
    config.schedule.epochs = 21
    assert not pool.is_short(config)


def test_a_worker_running_a_run_reads_as_running(tmp_path):
    # store.pid_alive knows warm workers by their command line
    import subprocess
    import sys
    import time

    worker = subprocess.Popen([sys.executable, "-m", pool.WORKER_MODULE],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while not store.pid_alive(worker.pid) and time.time() < deadline:
            time.sleep(0.01)
        assert store.pid_alive(worker.pid)
        assert store.job_states({"r": store.job_record("local", str(worker.pid))}) == {
            "r": ("running", None)}
    finally:
        worker.stdin.close()  # no work: it exits
        assert worker.wait(timeout=120) == 0


def test_longest_runs_start_first(tmp_path):
    """Two-pass optimizers and longer runs go to the workers first, so the sweep does not end
    waiting on a long run started last; equals keep the spec's order."""
    spec = write_spec(tmp_path, """
        grid:
          optimizer:
            - {name: sgd}
            - {name: sam, rho: 0.05}
            - {name: gsam, rho_max: 0.05, rho_min: 0.01, alpha: 0.1}
          schedule.epochs: [1, 3]
        """)
    sweep = expand(load_spec(spec))
    tasks = [dispatch.Task(r.run_id, tmp_path / r.name, sweep.config(r)) for r in sweep.runs]
    order = [(t.config.optimizer.name, t.config.schedule.epochs) for t in pool.start_order(tasks)]
    expected = [("sam", 3), ("gsam", 3), ("sgd", 3), ("sam", 1), ("gsam", 1), ("sgd", 1)]
    assert sorted(order, key=expected.index) == order == expected


def test_a_warm_worker_imports_nothing_inside_its_first_run(tmp_path):
    """What a fresh process would import during its first run, warm_up imported before it."""
    import subprocess
    import sys

    script = textwrap.dedent("""
        import sys
        from gsam_repro.sweep.dispatch import RunJob
        from gsam_repro.sweep.pool import warm_up
        from gsam_repro.train.config import config_from_dict
        warm_up()
        config = config_from_dict({
            "data": {"name": "synthetic", "train_size": 32, "test_size": 16, "image_size": 8,
                     "batch_size": 16, "eval_batch_size": 16},
            "model": {"name": "small_cnn"}, "schedule": {"epochs": 1},
            "optimizer": {"name": "gsam", "lr": 0.05, "rho_max": 0.05, "rho_min": 0.01}})
        before = set(sys.modules)
        RunJob(config, sys.argv[1], 1)()
        print("new:", sorted(set(sys.modules) - before))
        """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "new: []"
