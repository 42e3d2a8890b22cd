"""The SLURM path with fake `sbatch`, `sacct`, `scancel` and `srun` on PATH.

The fakes keep job states in a JSON file and run nothing: the test plays the cluster, running a
job's task in this process the way a node would (submitit's `_submit` entry point) and setting
the states sacct reports. A real single-node SLURM is tested in tests/slurm."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from sweep_testkit import cli, write_spec

from gsam_repro.sweep import store
from gsam_repro.sweep.plan import expand
from gsam_repro.sweep.spec import load_spec

GOLDEN = Path(__file__).parent / "golden" / "sbatch_array.sh"

FAKES = {
    "sbatch": r'''
import json, os, re, sys
state = load()
text = open(sys.argv[-1]).read()
job = state["next"]
state["next"] += 1
array = re.search(r"#SBATCH --array=0-(\d+)%(\d+)", text)
ids = [f"{job}_{i}" for i in range(int(array.group(1)) + 1)] if array else [str(job)]
for i in ids:
    state["jobs"][i] = "PENDING"
state["scripts"].append(text)
save(state)
print(f"Submitted batch job {job}")
''',
    "sacct": r'''
import sys
state = load()
wanted = {sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "-j"}
print("JobID|State|NodeList")
for job, st in state["jobs"].items():
    if job.split("_")[0] in wanted:
        print(f"{job}|{st}|node1")
''',
    "scancel": r'''
import sys
state = load()
for job in state["jobs"]:
    if job.split("_")[0] in sys.argv[1:] and state["jobs"][job] in ("PENDING", "RUNNING"):
        state["jobs"][job] = "CANCELLED"
save(state)
''',
    "srun": "",
}

PRELUDE = '''#!{python}
import json, os
PATH = os.environ["FAKE_SLURM_STATE"]
def load():
    try:
        with open(PATH) as f:
            return json.load(f)
    except FileNotFoundError:
        return {{"next": 4000, "jobs": {{}}, "scripts": []}}
def save(state):
    with open(PATH + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(PATH + ".tmp", PATH)
'''


class FakeSlurm:
    def __init__(self, folder: Path):
        self.state_path = folder / "slurm_state.json"

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {"next": 4000, "jobs": {}, "scripts": []}

    def set(self, job_id: str, state: str) -> None:
        data = self.state()
        data["jobs"][job_id] = state
        tmp = self.state_path.with_suffix(".tmp2")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_path)

    def execute(self, job_id: str, sweep_dir: Path) -> None:
        """Run one (array) job's task here, as srun on a node would, then mark it COMPLETED."""
        from submitit.core import submission

        self.set(job_id, "RUNNING")
        main, _, index = job_id.partition("_")
        env = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": str(int(main) + 100 + int(index or 0)),
               "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
               "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1"}
        if index:
            env.update(SLURM_ARRAY_JOB_ID=main, SLURM_ARRAY_TASK_ID=index)
        else:
            env["SLURM_JOB_ID"] = main
        saved_env = dict(os.environ)
        saved_signals = {s: signal.getsignal(s)
                         for s in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2)}
        os.environ.update(env)
        try:
            submission.process_job(str(sweep_dir.resolve() / store.SUBMITIT / "%j"))
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            for sig, handler in saved_signals.items():
                signal.signal(sig, handler)
        self.set(job_id, "COMPLETED")


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text(PRELUDE.format(python=sys.executable) + body)
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_STATE", str(tmp_path / "slurm_state.json"))
    return FakeSlurm(tmp_path)


SPEC = """
executor:
  cluster: slurm
  timeout_min: 90
  gpus_per_node: 1
  cpus_per_task: 4
  mem_gb: 16
  slurm_partition: gpu
  slurm_array_parallelism: 2
  slurm_signal_delay_s: 120
  slurm_setup: ["module load cuda"]
  poll_s: 0.2
grid:
  optimizer.lr: [0.1, 0.05, 0.02]
"""


def run_states(spec: Path, out: Path) -> list[tuple[str, str]]:
    sweep = expand(load_spec(spec, out=out))
    found = store.run_states(out, [r.run_id for r in sweep.runs])
    return [(found[r.run_id].state, found[r.run_id].error or "") for r in sweep.runs]


def normalized(script: str, out: Path) -> str:
    return script.replace(str(out.resolve()), "<SWEEP>").replace(sys.executable, "<PYTHON>")


def test_a_sweep_becomes_one_job_array_whose_jobs_status_follows(slurm, tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    assert cli("sweep", "run", spec, "--out", out, "--no-wait") == 0
    state = slurm.state()
    assert len(state["scripts"]) == 1 and sorted(state["jobs"]) == ["4000_0", "4000_1", "4000_2"]
    script = normalized(state["scripts"][0], out)
    if os.environ.get("GSAM_REPRO_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(script)
    assert script == GOLDEN.read_text(), "sbatch script changed; GSAM_REPRO_UPDATE_GOLDEN=1 " \
        "rewrites tests/sweep/golden/sbatch_array.sh"
    sweep = expand(load_spec(spec, out=out))
    jobs = store.load_jobs(out)
    assert [jobs[r.run_id]["job_id"] for r in sweep.runs] == ["4000_0", "4000_1", "4000_2"]

    assert [s for s, _ in run_states(spec, out)] == ["pending"] * 3  # queued
    slurm.set("4000_0", "RUNNING")
    assert [s for s, _ in run_states(spec, out)] == ["running", "pending", "pending"]
    capsys.readouterr()
    assert cli("sweep", "run", spec, "--out", out, "--no-wait") == 0  # queued jobs: no resubmit
    assert len(slurm.state()["scripts"]) == 1

    slurm.execute("4000_0", out)
    slurm.execute("4000_1", out)
    slurm.set("4000_2", "CANCELLED")  # scancel'ed before it ran
    found = run_states(spec, out)
    assert [s for s, _ in found] == ["done", "done", "failed"]
    assert "CANCELLED" in found[2][1]
    assert cli("sweep", "status", spec, "--out", out) == 0
    assert "SLURM job 4000_2 ended CANCELLED" in capsys.readouterr().out

    assert cli("sweep", "run", spec, "--out", out, "--no-wait") == 1  # failed: not without retry
    assert len(slurm.state()["scripts"]) == 1
    assert cli("sweep", "run", spec, "--out", out, "--no-wait", "--retry-failed") == 0
    state = slurm.state()
    assert len(state["scripts"]) == 2 and "--array" not in state["scripts"][1]
    assert store.load_jobs(out)[sweep.runs[2].run_id]["job_id"] == "4001"
    slurm.execute("4001", out)
    assert [s for s, _ in run_states(spec, out)] == ["done"] * 3


def test_waiting_sweep_sees_jobs_finish_and_a_cancelled_job_fail(slurm, tmp_path):
    spec = write_spec(tmp_path, SPEC.replace("[0.1, 0.05, 0.02]", "[0.1, 0.05]"))
    out = tmp_path / "out"
    result = {}
    sweeper = threading.Thread(target=lambda: result.update(
        code=cli("sweep", "run", spec, "--out", out)))
    sweeper.start()
    deadline = time.time() + 60
    while len(store.load_jobs(out)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    slurm.execute("4000_0", out)
    slurm.set("4000_1", "CANCELLED")
    sweeper.join(timeout=60)
    assert not sweeper.is_alive()
    assert result["code"] == 1
    found = run_states(spec, out)
    assert [s for s, _ in found] == ["done", "failed"]
    failed = next((out / "runs").glob("*/failed.json"))
    assert "CANCELLED" in json.loads(failed.read_text())["error"]


def test_a_refused_submission_is_one_clear_error(slurm, tmp_path, capsys):
    sbatch = Path(os.environ["PATH"].split(os.pathsep)[0]) / "sbatch"
    sbatch.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\n"
                      "exit 1\n")
    spec = write_spec(tmp_path, SPEC)
    assert cli("sweep", "run", spec, "--out", tmp_path / "out", "--no-wait") == 2
    err = capsys.readouterr().err
    assert "submitting to SLURM failed after 0 of 3 runs" in err
    assert "invalid partition specified" in err
