"""Real services for integration tests: an ``mlflow server`` process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.integration.slurm import cluster_problem

BIN = Path(sys.executable).parent


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real tracking server with a temporary SQLite store and artifact folder; yields its URI."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{root}/mlflow.db",
                "--artifacts-destination",
                str(root / "artifacts"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", proc)
        yield uri
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Skip when there is no usable cluster; fail instead when RISKBRAIN_REQUIRE_SLURM=1."""
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("RISKBRAIN_REQUIRE_SLURM") == "1":
        pytest.fail(f"RISKBRAIN_REQUIRE_SLURM=1 but {problem}")
    pytest.skip(problem)
