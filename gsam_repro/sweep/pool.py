"""Warm local workers: `--max-parallel` processes that import torch once and take runs one after
another, for local sweeps of short runs, where starting a process per run (and importing torch,
~10 s on a busy CPU) costs more than the runs themselves.

The guarantees are those of the process-per-run executor: each run is a `RunJob` call (a failing
run writes failed.json and the worker takes the next one); a worker that dies (a crash, the OOM
killer) fails only its current run and is replaced; a run over `executor.timeout_min` has its
worker killed and is started again from its checkpoint, at most `max_num_timeout` times;
Ctrl-C (or SIGTERM) stops every worker and its unfinished runs read as pending, resuming next
time. Each running run is recorded in jobs.json with its worker's pid, so `sweep status` sees it
running, and a later `sweep run` waits for it rather than starting it twice (a worker whose
`sweep run` died finishes its current run and exits).

Protocol: the parent writes one pickled job a frame (8-byte length, then the pickle) to a
worker's stdin; the worker answers one line `finished RUN_ID` on its stdout, which is kept free
of the runs' output (that goes to one log file a run, in the sweep's submitit/ folder).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsam_repro.sweep import store

# Runs whose training set times epochs is at most this many images are "short": a local
# sweep made only of such runs uses warm workers unless told otherwise.
SHORT_RUN_IMAGES = 1_000_000
KNOWN_TRAIN_SIZES = {"digits": 1437, "synthetic": 2048, "cifar10": 50_000, "cifar100": 50_000}
WORKER_MODULE = "gsam_repro.sweep.pool"  # in the workers' command line (store.pid_alive)
_FRAME = struct.Struct("<Q")


# Registered optimizers that take two forward/backward passes a step; used only to order runs
# (a wrong guess for a user's optimizer costs some balance, nothing else).
TWO_PASS_NAMES = frozenset({"sam", "gsam", "weighted"})


def is_short(config: Any) -> bool:
    """True when a run's training images (train set x epochs) are at most SHORT_RUN_IMAGES."""
    size = config.data.train_size or KNOWN_TRAIN_SIZES.get(config.data.name)
    return size is not None and size * config.schedule.epochs <= SHORT_RUN_IMAGES


def estimated_cost(config: Any) -> float:
    """Training images x epochs x passes a step: a run's relative length, to start the longest
    runs first so the sweep does not end waiting on one long run started last."""
    size = config.data.train_size or KNOWN_TRAIN_SIZES.get(config.data.name) or 0
    passes = 2 if str(config.optimizer.name).lower() in TWO_PASS_NAMES else 1
    return float(size * config.schedule.epochs * passes)


def start_order(tasks: list) -> list:
    """The tasks longest first (estimated_cost), in spec order among equals."""
    return sorted(tasks, key=lambda t: -estimated_cost(t.config))


def warm_up() -> None:
    """Import, before the first run, what a fresh process would import inside it (found with
    `python -X importtime`): the trainer's modules, and torch._dynamo, which torch's optimizers
    import on their first parameter group and which is most of that time. A worker pays it
    once, at start, not as a pause inside its first run."""
    import torch._dynamo  # noqa: F401 - torch.optim.Optimizer.add_param_group imports it
    import torch.utils.serialization  # noqa: F401 - torch.save's, on the first checkpoint

    import gsam_repro.data.loaders  # noqa: F401
    import gsam_repro.models.cifar  # noqa: F401 - the models, torch only
    import gsam_repro.optim.registry  # noqa: F401 - and through it every built-in optimizer
    import gsam_repro.train.loop  # noqa: F401


@dataclass
class _Job:
    """What a worker is asked to do: RunJob(config, run_dir, threads), logging into `log`."""

    run_id: str
    config: Any
    run_dir: str
    threads: int
    log: str


class Worker:
    """One warm worker process and the run it is doing (None when idle)."""

    def __init__(self, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env)  # in the sweep's process group, as submitit's local jobs are
        self.task: Any = None
        self.started = 0.0
        self.log: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, task: Any, threads: int, log: Path) -> None:
        data = pickle.dumps(_Job(task.run_id, task.config, str(task.run_dir), threads, str(log)))
        self.process.stdin.write(_FRAME.pack(len(data)) + data)
        self.process.stdin.flush()
        self.task, self.started, self.log = task, time.monotonic(), log

    def finished(self) -> str | None:
        """The run id the worker reports finished, None if it said nothing (or died)."""
        line = self.process.stdout.readline().decode(errors="replace").split()
        return line[1] if len(line) == 2 and line[0] == "finished" else None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """No more work: the worker exits when it reads the end of its input."""
        try:
            self.process.stdin.close()
        except OSError:
            pass


def run_pool(tasks: list, *, sweep_dir: Path, executor: Any, max_parallel: int,
             adopted: dict[str, Path], records: dict, progress: Any, outcome: Any,
             settle: Any, threads_of: Any) -> None:
    """Run `tasks` on at most `max_parallel` warm workers; wait for `adopted` runs too.
    `settle(item, outcome, progress, why)` reads how a run ended (dispatch._settle)."""
    from gsam_repro.sweep.dispatch import _Inflight

    sweep_dir = Path(sweep_dir)
    logs = sweep_dir / store.SUBMITIT / f"pool-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    queue = start_order(tasks)
    timeouts: dict[str, int] = {}
    timeout_s = executor.timeout_min * 60
    poll = executor.poll_s or 0.5
    workers = [Worker(env) for _ in range(min(max_parallel, len(queue)))]
    waiting = {rid: _Inflight(rid, run_dir, lambda pid=int(records[rid]["job_id"]):
                              store.pid_alive(pid)) for rid, run_dir in adopted.items()}
    try:
        while queue or any(w.task for w in workers) or waiting:
            for worker in workers:
                if worker.task is None and queue:
                    task = queue.pop(0)
                    worker.send(task, threads_of(task), logs / f"{task.run_id}.log")
                    records[task.run_id] = store.job_record("local", str(worker.pid))
                    store.save_jobs(sweep_dir, records)
            busy = {w.process.stdout: w for w in workers if w.task is not None}
            ready = select.select(list(busy), [], [], poll)[0] if busy else time.sleep(poll)
            for stream in ready or []:
                _collect(busy[stream], outcome, progress, settle, _Inflight)
            for i, worker in enumerate(workers):
                if worker.task is None:
                    continue
                died = worker.process.poll() is not None
                overdue = time.monotonic() - worker.started > timeout_s
                if not (died or overdue):
                    continue
                task, why = worker.task, _exit_reason(worker.process.returncode)
                worker.kill()
                worker.task = None
                if overdue and not died and timeouts.get(task.run_id, 0) < \
                        executor.max_num_timeout:
                    timeouts[task.run_id] = timeouts.get(task.run_id, 0) + 1
                    queue.insert(0, task)  # resumes from its last checkpoint
                else:
                    why = f"timed out after {executor.timeout_min:g} min" if overdue else why
                    settle(_Inflight(task.run_id, task.run_dir, lambda: False, log=worker.log),
                           outcome, progress, why)
                if queue:
                    workers[i] = Worker(env)
            for rid, item in list(waiting.items()):
                if not item.is_alive():
                    del waiting[rid]
                    settle(item, outcome, progress, "its process is gone")
    except KeyboardInterrupt:
        _stop(workers, sweep_dir, records)
        raise
    finally:
        for worker in workers:
            worker.close()
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()


def _collect(worker: Worker, outcome, progress, settle, inflight_cls) -> None:
    """A worker's stdout is readable: its run finished (or the worker died; handled later)."""
    task = worker.task
    if worker.finished() != task.run_id:
        return
    worker.task = None
    settle(inflight_cls(task.run_id, task.run_dir, lambda: False, log=worker.log), outcome,
           progress, "the run raised")


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "its worker is gone"
    if code < 0:
        return f"its worker was killed by signal {-code}"
    return f"its worker exited with code {code}"


def _stop(workers: list[Worker], sweep_dir: Path, records: dict) -> None:
    """Ctrl-C: kill every worker; their unfinished runs read as pending and resume next time."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
        if worker.task is not None:
            records.pop(worker.task.run_id, None)
    store.save_jobs(sweep_dir, records)


def _read_job(stream) -> _Job | None:
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None  # the parent closed our input (or died): no more work
    return pickle.loads(stream.read(_FRAME.unpack(header)[0]))


def worker_main() -> int:
    """A worker: import torch once, then run jobs until the input ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us (see _stop)
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    source = os.fdopen(os.dup(0), "rb")
    os.dup2(2, 1)  # nothing but answers on the pipe, whatever prints before the first job
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    import torch  # noqa: F401 - the point of a warm worker

    from gsam_repro.sweep.dispatch import RunJob

    warm_up()

    while (job := _read_job(source)) is not None:
        log = os.open(job.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        try:
            RunJob(job.config, job.run_dir, job.threads)()
        except Exception:  # noqa: S110 - RunJob wrote failed.json; the parent reads it
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        answers.write(f"finished {job.run_id}\n")
    return 0


if __name__ == "__main__":
    code = worker_main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown, which takes seconds after a run on digits while
    # `sweep run` waits for its workers to exit; every run's files are closed by now.
    os._exit(code)
