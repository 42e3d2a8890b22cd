"""Small specs and helpers shared by the sweep tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from gsam_repro.cli import main

# A base run that trains in well under a second once torch is imported: tiny synthetic data.
BASE_YAML = """\
base:
  data: {name: synthetic, train_size: 32, test_size: 16, image_size: 8, batch_size: 16,
         eval_batch_size: 16}
  model: {name: small_cnn}
  optimizer: {lr: 0.05, momentum: 0.9}
  schedule: {epochs: 1}
  train: {threads: 1}
"""


def write_spec(folder: Path, body: str, name: str = "spec.yaml", base: bool = True) -> Path:
    """Write a spec file: the tiny base (unless base=False) followed by `body`."""
    text = (BASE_YAML if base else "") + textwrap.dedent(body)
    path = Path(folder) / name
    path.write_text(text)
    return path


def cli(*args: str) -> int:
    """Run `gsam-repro ARGS...` in this process and return its exit code."""
    return main([str(a) for a in args])


def fake_local_job():
    """A process that looks like a local submitit job (its command line names submitit), started
    and past its exec, so liveness checks see it."""
    import subprocess
    import sys
    import time

    from gsam_repro.sweep.store import pid_alive

    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "submitit"])
    deadline = time.time() + 10
    while not pid_alive(job.pid) and time.time() < deadline:
        time.sleep(0.01)
    return job
