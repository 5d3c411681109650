"""``python -m jobs.doctor``: a clear report, exit 0 when the job can run, 1 when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import BIN
from training.constants import EXIT_REFUSED

pytestmark = pytest.mark.slow


def _doctor(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RISKBRAIN_RUN_DIR": str(tmp_path / "run"),
        "COLUMNS": "200",
    }
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "jobs.doctor", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_healthy_setup_passes(tmp_path):
    proc = _doctor(tmp_path, "launcher=mpi", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("tracking store", "checkpoint folder", "data", "mpi", "ray", "slurm", "torch"):
        assert name in proc.stdout
    assert "FAIL" not in proc.stdout


def test_unreachable_tracking_server_fails_and_is_named(tmp_path):
    proc = _doctor(tmp_path, "tracking.uri=http://127.0.0.1:9")
    assert proc.returncode == EXIT_REFUSED and "FAIL" in proc.stdout and "http://127.0.0.1:9" in proc.stdout


def test_bad_config_fails(tmp_path):
    proc = _doctor(tmp_path, "optim.lr=-1")
    assert proc.returncode == EXIT_REFUSED and "optim.lr" in proc.stdout
