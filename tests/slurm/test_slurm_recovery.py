"""Jobs that do not end normally on a live SLURM cluster: a job cancelled with scancel is a
failed run (the waiting `sweep run` notices, it does not hang) that --retry-failed resumes; a
preempted job is requeued by submitit, resumes from its checkpoint and ends exactly as a run that
was never interrupted."""

from __future__ import annotations

import json
import re

import pytest
import submitit
from slurm_testkit import (
    LONG_BASE,
    NOT_RESULT_KEYS,
    BackgroundSweep,
    cli,
    ended_rows,
    epochs_written,
    job_ids,
    job_log,
    only_run_dir,
    sacct_rows,
    slurm,
    squeue,
    wait_until,
    write_spec,
)

from gsam_repro.sweep import store

pytestmark = pytest.mark.slurm

EPOCHS = 40  # LONG_BASE's schedule.epochs
RESUMED = re.compile(r"resuming after epoch (\d+)/(\d+)")


def first_epoch_done(sweep_dir):
    """The run directory once its first epoch is checkpointed, else None."""
    runs = sweep_dir / store.RUNS
    if runs.is_dir() and any(runs.iterdir()):
        run_dir = only_run_dir(sweep_dir)
        if epochs_written(run_dir) >= 1:
            return run_dir
    return None


def resumed_after(log: str) -> list[int]:
    return [int(done) for done, total in RESUMED.findall(log) if int(total) == EPOCHS]


def test_a_cancelled_job_is_failed_not_a_hang_and_retry_failed_resumes_it(tmp_path, capsys):
    out = tmp_path / "out"
    spec = write_spec(tmp_path, "slurm-cancel", "", base=LONG_BASE)
    sweep = BackgroundSweep(spec, "--out", out)
    run_dir = wait_until(lambda: first_epoch_done(out), 180, "the first epoch", [out])
    (cancelled,) = job_ids(out).values()
    slurm("scancel", cancelled)

    assert sweep.join(90, [out]) == 1
    # SLURM kills the job's processes KillWait seconds after scancel's SIGTERM (which submitit
    # ignores): the run must not have finished meanwhile
    wait_until(lambda: squeue(cancelled) is None, 60, "the cancelled job to leave the queue")
    state = store.finished_state(run_dir)
    assert state is not None and state.state == "failed", \
        f"the run ended {state} after scancel: is the cluster's KillWait longer than the run?"
    assert f"SLURM job {cancelled} ended CANCELLED" in state.error
    assert sacct_rows(cancelled)[0]["State"].startswith("CANCELLED")
    assert epochs_written(run_dir) < EPOCHS
    capsys.readouterr()
    assert cli("sweep", "status", spec, "--out", out) == 0
    assert "1 failed" in capsys.readouterr().out

    assert cli("sweep", "run", spec, "--out", out) == 1  # failed runs wait for --retry-failed
    assert list(job_ids(out).values()) == [cancelled]
    assert cli("sweep", "run", spec, "--out", out, "--retry-failed") == 0
    (retried,) = job_ids(out).values()
    assert retried != cancelled
    assert store.finished_state(run_dir).state == "done"
    assert (run_dir / "failed.json.prev").exists()
    (resumed,) = resumed_after(job_log(out, retried))
    assert 1 <= resumed < EPOCHS
    assert epochs_written(run_dir) == EPOCHS


def test_a_preempted_job_is_requeued_and_ends_as_if_never_interrupted(tmp_path):
    spec = write_spec(tmp_path, "slurm-requeue", "", base=LONG_BASE)
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    assert cli("sweep", "run", spec, "--out", reference, "--no-wait") == 0
    sweep = BackgroundSweep(spec, "--out", interrupted)
    run_dir = wait_until(lambda: first_epoch_done(interrupted), 180, "the first epoch",
                         [interrupted])
    ((run_id, job_id),) = job_ids(interrupted).items()
    # Preemption as SLURM does it (SIGTERM, then the USR2 warning): submitit checkpoints the
    # job and requeues it with `scontrol requeue`.
    submitit.SlurmJob(folder=interrupted / store.SUBMITIT / "%j", job_id=job_id)._interrupt()

    held_states = []

    def requeued_and_released() -> bool:
        """SLURM holds a requeued job for about two minutes (BeginTime) before it may start
        again; release it so the tier stays short. Done once it runs its second attempt."""
        if squeue(job_id) == ("PENDING", "BeginTime"):
            held_states.append(store.run_states(interrupted, [run_id])[run_id].state)
            slurm("scontrol", "update", f"JobId={job_id}", "StartTime=now")
        return bool(resumed_after(job_log(interrupted, job_id)))

    wait_until(requeued_and_released, 120, "the requeued job to start again", [interrupted],
               every_s=0.5)
    assert set(held_states) <= {"pending"}, held_states  # what `sweep status` shows meanwhile
    assert sweep.join(180, [interrupted]) == 0
    assert list(job_ids(interrupted).values()) == [job_id]  # requeued, not resubmitted
    attempts = [r["State"] for r in ended_rows(job_id, 2, every_attempt=True)]
    assert attempts == ["REQUEUED", "COMPLETED"], attempts
    (resumed,) = resumed_after(job_log(interrupted, job_id))
    assert 1 <= resumed < EPOCHS

    reference_dir = wait_until(lambda: first_epoch_done(reference), 180, "the reference run",
                               [reference])
    wait_until(lambda: store.finished_state(reference_dir), 180, "the reference run to end",
               [reference])
    assert store.finished_state(reference_dir).state == "done"
    ran, never_stopped = (json.loads((d / store.SUMMARY).read_text())
                          for d in (run_dir, reference_dir))
    assert ran["epochs_completed"] == EPOCHS
    assert {k: v for k, v in ran.items() if k not in NOT_RESULT_KEYS} == \
        {k: v for k, v in never_stopped.items() if k not in NOT_RESULT_KEYS}
    history, reference_history = (
        [{k: v for k, v in json.loads(line).items() if k not in NOT_RESULT_KEYS}
         for line in (d / store.METRICS).read_text().splitlines()]
        for d in (run_dir, reference_dir))
    assert len(history) == EPOCHS and history == reference_history
