"""A rank killed with SIGKILL (rank 0 or rank 1 of a real ``mpirun`` job): the job ends within
60 s, and its MLflow run, which no process could end, is marked FAILED with the reason by
``jobs.doctor --repair`` or by the next job in the folder, which resumes it to FINISHED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT
from tests.fault.procs import (
    SLOW_TINY,
    journal_epochs,
    output,
    rank_pids,
    start_job,
    stop_all,
    wait_for,
)
from tests.fault.report import record

pytestmark = pytest.mark.slow


def _kill_rank_after_epoch_2(run_dir: Path, uri: str, rank: int) -> tuple[float, int]:
    """Start the 2-rank job, SIGKILL ``rank`` once epoch 2 is logged; returns (seconds until the
    job ended, the epoch it had reached)."""
    job = start_job(run_dir, *SLOW_TINY, f"tracking.uri={uri}", mpi=True)
    try:
        wait_for("epoch 2", lambda: journal_epochs(run_dir) >= 2, 300, job)
        pids = rank_pids(job.pid)
        assert set(pids) == {0, 1}, pids
        epoch, t0 = journal_epochs(run_dir), time.monotonic()
        os.kill(pids[rank], signal.SIGKILL)
        code = job.wait(timeout=60)  # the job must end within 60 s
        ended = time.monotonic() - t0
    finally:
        stop_all(job)
    assert code != 0, output(run_dir)[-2000:]
    return ended, epoch


def _one_run(client: MlflowClient):
    runs = client.search_runs([client.get_experiment_by_name("riskbrain").experiment_id])
    assert len(runs) == 1, [(r.info.run_id, r.info.status) for r in runs]
    return runs[0]


def _resume(run_dir: Path, uri: str) -> str:
    """The same command in the same folder: resumes from the latest checkpoint and finishes."""
    job = start_job(run_dir, *SLOW_TINY, f"tracking.uri={uri}", mpi=True)
    assert job.wait(timeout=400) == 0, output(run_dir)[-3000:]
    log = output(run_dir)
    assert "resuming from" in log, log[-3000:]
    return log


def test_rank_0_killed_then_doctor_repair(tmp_path):
    uri, run_dir = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "run"
    ended, epoch = _kill_rank_after_epoch_2(run_dir, uri, rank=0)
    client = MlflowClient(uri, uri)
    assert _one_run(client).info.status == "RUNNING"  # nothing could end it

    doctor = subprocess.run(
        [sys.executable, "-m", "jobs.doctor", "--repair", f"tracking.uri={uri}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    said = " ".join(doctor.stdout.split())  # rich wraps lines to the terminal
    assert doctor.returncode == 0 and "marked FAILED" in said, doctor.stdout[-2000:]
    run = _one_run(client)
    assert run.info.status == "FAILED" and "jobs.doctor --repair" in run.data.tags["last_failure"]

    _resume(run_dir, uri)
    resumed = _one_run(client)  # the same run, reopened and finished
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    record(
        "rank 0 of 2 SIGKILLed after epoch 2 (mpirun)",
        f"job ended in {ended:.1f} s; run left RUNNING, marked FAILED by jobs.doctor --repair; "
        "rerun resumed it from the last checkpoint to FINISHED",
        ended,
        "the epoch in progress (resumed from the epoch-2 checkpoint)",
    )


def test_rank_1_killed_then_next_job_marks_and_resumes(tmp_path):
    uri, run_dir = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "run"
    ended, epoch = _kill_rank_after_epoch_2(run_dir, uri, rank=1)
    client = MlflowClient(uri, uri)
    stale = _one_run(client)
    assert stale.info.status == "RUNNING"

    log = _resume(run_dir, uri)
    assert "left open by a job that died: marked FAILED" in log, log[-3000:]
    run = _one_run(client)
    assert run.info.run_id == stale.info.run_id and run.info.status == "FINISHED"
    assert "found by the next job" in run.data.tags["last_failure"]
    history = client.get_metric_history(run.info.run_id, "valid_auc")
    assert {m.step for m in history} == set(range(1, max(m.step for m in history) + 1))
    record(
        "rank 1 of 2 SIGKILLed after epoch 2 (mpirun)",
        f"job ended in {ended:.1f} s; the next job in the folder marked the run FAILED "
        "(reason kept in the run's tags), resumed it and finished it",
        ended,
        "the epoch in progress",
    )
