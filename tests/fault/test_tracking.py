"""Tracking faults: a tracking server killed mid-training and started again, a job with no route
to the server (``tracking.mode=offline``) sent later by ``jobs.sync``, and eight jobs started at
once on a new SQLite store. Real ``mlflow server`` processes, real jobs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, free_port
from tests.fault.procs import (
    SLOW_TINY,
    Server,
    journal_epochs,
    output,
    start_job,
    stop_all,
    wait_for,
)
from tests.fault.report import record

pytestmark = pytest.mark.slow
MODEL = "credit-risk-synthetic_sme"


def _sync(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.sync", str(path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _only_run(client: MlflowClient):
    experiment = client.get_experiment_by_name("riskbrain")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path, free_port())
    srv.start()
    yield srv
    srv.stop()


def test_server_killed_mid_training_loses_nothing(server, tmp_path):
    run_dir = tmp_path / "run"
    job = start_job(
        run_dir, *SLOW_TINY, f"tracking.uri={server.uri}", "tracking.sync_timeout_s=240"
    )
    try:
        wait_for("epoch 2 in the journal", lambda: journal_epochs(run_dir) >= 2, 240, job)
        server.kill()
        killed_at, epoch_at_kill = time.monotonic(), journal_epochs(run_dir)
        detect = wait_for("the job noticing", lambda: "did not answer" in output(run_dir), 120, job)
        # Training goes on while the server is down: two more epochs, not minutes of retries.
        wait_for("2 more epochs", lambda: journal_epochs(run_dir) >= epoch_at_kill + 2, 120, job)
        # Down long enough that the job's retries back off (5 s, then 10 s) before it answers.
        time.sleep(max(0.0, 20 - (time.monotonic() - killed_at)))
        server.start()
        down_s = time.monotonic() - killed_at
        assert job.wait(timeout=400) == 0, output(run_dir)[-3000:]
    finally:
        stop_all(job)
    log = output(run_dir)
    assert "answers again" in log, log[-3000:]
    client = MlflowClient(server.uri, server.uri)
    run = _only_run(client)
    history = client.get_metric_history(run.info.run_id, "valid_auc")
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in history) == list(range(1, len(history) + 1)), history
    assert len(history) >= epoch_at_kill + 2
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [v.run_id for v in versions] == [run.info.run_id]  # registered once, from this run
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"evaluation.json", "plots"}

    again = _sync(run_dir)  # idempotent: the job sent everything; a sync adds nothing
    assert again.returncode == 0 and "nothing new to send" in again.stdout, again.stdout
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert len(client.get_metric_history(run.info.run_id, "valid_auc")) == len(history)
    record(
        "tracking server SIGKILLed after epoch 2, started again ~"
        f"{down_s:.0f} s later (online job)",
        f"training went on ({len(history)} epochs, none lost); records kept in the run folder's "
        "journal, sent when the server answered; one run, one version",
        detect,
        "0 epochs",
    )


def test_offline_job_synced_later_once(server, tmp_path):
    run_dir = tmp_path / "run"
    job = start_job(run_dir, "debug=tiny", f"tracking.uri={server.uri}", "tracking.mode=offline")
    assert job.wait(timeout=300) == 0, output(run_dir)[-3000:]
    client = MlflowClient(server.uri, server.uri)
    assert client.get_experiment_by_name("riskbrain") is None  # nothing was sent
    assert "python -m jobs.sync" in output(run_dir)

    t0 = time.monotonic()
    first = _sync(tmp_path)  # a folder of run folders, as outputs/ would be
    sync_s = time.monotonic() - t0
    assert first.returncode == 0, first.stdout + first.stderr
    run = _only_run(client)
    assert run.info.status == "FINISHED" and run.data.params["tracking.mode"] == "offline"
    assert len(client.get_metric_history(run.info.run_id, "valid_auc")) == 3
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [v.run_id for v in versions] == [run.info.run_id] and "version 1" in first.stdout

    second = _sync(run_dir)
    assert second.returncode == 0 and "nothing new to send" in second.stdout, second.stdout
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert len(client.get_metric_history(run.info.run_id, "valid_auc")) == 3
    _only_run(client)
    record(
        "compute node with no route to the server (tracking.mode=offline), then jobs.sync twice",
        "job trained without contacting the server; the first sync created the run and version 1, "
        f"the second sent nothing ({sync_s:.0f} s for the first sync)",
        None,
        "0",
    )


def test_eight_jobs_at_once_on_a_new_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"  # does not exist yet
    one_epoch = ["debug=tiny", "data.n_rows=2000", "trainer.max_epochs=1", f"tracking.uri={uri}"]
    t0 = time.monotonic()
    jobs = [start_job(tmp_path / f"job{i}", *one_epoch) for i in range(8)]
    try:
        codes = [j.wait(timeout=600) for j in jobs]
    finally:
        stop_all(*jobs)
    wall = time.monotonic() - t0
    assert codes == [0] * 8, [
        output(tmp_path / f"job{i}")[-2000:] for i, c in enumerate(codes) if c
    ]
    # Not one failed attempt: without the lock, jobs collide in MLflow's migration of the new
    # store ("table _alembic_tmp_params already exists") and only the journal's retries save them.
    refused = [i for i in range(8) if "did not answer" in output(tmp_path / f"job{i}")]
    assert not refused, output(tmp_path / f"job{refused[0]}")[-2000:]
    client = MlflowClient(uri, uri)
    runs = client.search_runs([client.get_experiment_by_name("riskbrain").experiment_id])
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert sorted(int(v.version) for v in versions) == list(range(1, 9))  # unique, no gap
    assert {v.run_id for v in versions} == {r.info.run_id for r in runs}
    record(
        "8 jobs started at once on a new SQLite store (a Slurm array's first run)",
        "store created and migrated once under a file lock; 8 runs, versions 1-8, none lost",
        None,
        f"0 ({wall:.0f} s for all 8 on 2 cores)",
    )
