"""Ray restarts (``launcher.max_failures``): a Ray worker SIGKILLed mid-training.

With ``launcher.max_failures=1`` Ray Train restarts the worker group, which resumes from the
latest checkpoint into the same MLflow run and finishes; with 0 the job fails fast. The kill is
real (``tests/fault/sitecustomize.py``: rank 1 sends itself SIGKILL at its step ``KILL_STEP``,
once) and lands after the epoch-2 checkpoint, in epoch 4: a restart redoes epoch 3 and part of 4.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest

from tests.conftest import faults, run_job
from tests.fault.report import record
from training.constants import EXIT_FAILED

pytestmark = pytest.mark.slow

EVERY, EPOCHS, BATCH = 2, 6, 256  # checkpoint.every_epochs: the most a restart may lose
JOB = ["debug=tiny", "launcher=ray", "launcher.num_workers=2", f"trainer.max_epochs={EPOCHS}",
       f"trainer.patience={EPOCHS}", f"checkpoint.every_epochs={EVERY}",
       f"optim.batch_size={BATCH}"]  # fmt: skip
KILL_STEP = 38  # 11 steps an epoch (2800 training rows): step 5 of epoch 4


def _job(tmp_path: Path, max_failures: int) -> tuple[int, str, dict, float]:
    """The job with rank 1 killed once; returns its exit code, log, the kill (time, pid, rank,
    step) and when the job's process had exited."""
    marker = tmp_path / "killed"
    env = faults(kill_rank="1", kill_at_step=str(KILL_STEP), kill_marker=str(marker))
    overrides = [f"launcher.max_failures={max_failures}", f"tracking.uri={_uri(tmp_path)}"]
    proc = run_job(*JOB, *overrides, cwd=tmp_path, env=env, timeout=240)
    ended, log = time.time(), proc.stdout + proc.stderr
    assert marker.is_file(), f"rank 1 was not killed:\n{log[-5000:]}"
    return proc.returncode, log, json.loads(marker.read_text()), ended


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def _runs(tmp_path: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=_uri(tmp_path), registry_uri=_uri(tmp_path))
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def _attempts(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "ray_attempts.jsonl").read_text().splitlines()]


def test_a_killed_worker_restarts_from_the_latest_checkpoint_into_the_same_run(tmp_path):
    code, log, kill, _ = _job(tmp_path, max_failures=1)
    assert code == 0, log[-5000:]
    out = tmp_path / "outputs" / "run"
    report = json.loads((out / "evaluation.json").read_text())
    assert (out / "DONE").is_file() and report["training"]["epochs_run"] == EPOCHS
    attempts = _attempts(out)
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert "worker group restarted, attempt 2 of at most 2" in log, log[-5000:]
    assert "ray: the job finished after 2 attempts" in log

    # Resumed from the epoch-2 checkpoint: epoch 3, step 0.
    found = re.search(r"resuming from ckpt-\S+: epoch (\d+), step (\d+), mlflow run", log)
    assert found, log[-5000:]
    epoch, step = map(int, found.groups())
    per_epoch = math.ceil(report["split"]["train"]["rows"] / BATCH)
    lost_steps = (kill["step"] - 1) - ((epoch - 1) * per_epoch + step)
    assert 0 <= lost_steps <= EVERY * per_epoch

    # One MLflow run, reopened and finished; each epoch logged, the redone ones twice.
    client, runs = _runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED", runs
    assert report["run_id"] == runs[0].info.run_id
    logged = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")]
    assert sorted(set(logged)) == list(range(1, EPOCHS + 1))
    assert len(logged) - EPOCHS <= EVERY, logged

    restart_s = attempts[1]["started"] - kill["time"]
    record(
        "ray worker SIGKILLed mid-epoch (launcher.max_failures=1)",
        f"worker group restarted in {restart_s:.0f} s, resumed from the epoch-{epoch - 1} "
        "checkpoint into the same MLflow run, which ended FINISHED",
        restart_s,
        f"{lost_steps / per_epoch:.1f} epochs ({lost_steps} steps; checkpoint every {EVERY})",
    )


def test_without_restarts_a_killed_worker_fails_the_job_fast(tmp_path):
    code, log, kill, ended = _job(tmp_path, max_failures=0)
    out = tmp_path / "outputs" / "run"
    assert code == EXIT_FAILED, log[-5000:]  # a crash, not bad input
    # The driver names the rank that died, not rank 0 whose collective failed with it.
    failed = re.search(r"ray job failed: (.*)", log)
    assert failed and failed.group(1).startswith("rank 1 failed Ray's health check"), log[-5000:]
    assert [a["attempt"] for a in _attempts(out)] == [1]
    assert not (out / "evaluation.json").exists()
    seconds = ended - kill["time"]
    assert seconds < 60, seconds
    _, runs = _runs(tmp_path)
    status = ", ".join(r.info.status for r in runs)
    record(
        "ray worker SIGKILLed mid-epoch (launcher.max_failures=0)",
        f"job failed (exit {code}) without a restart; MLflow run left {status}",
        seconds,
        "the job (resume by running it again)",
    )
