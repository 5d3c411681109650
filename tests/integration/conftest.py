"""Real services for integration tests: an ``mlflow server`` process on a free port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.slurm import cluster_problem, multi_problem

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


@contextlib.contextmanager
def served_model(model: str, tracking_uri: str, log: Path) -> Iterator[str]:
    """``mlflow models serve`` of ``model`` (a models:/ URI in ``tracking_uri``) in this venv,
    its output in ``log``; yields its /invocations URL and stops it after."""
    from tests.conftest import free_port

    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                model,
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env={
                **os.environ,
                "MLFLOW_TRACKING_URI": tracking_uri,
                "PATH": f"{BIN}:{os.environ['PATH']}",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip  (serve execs `uvicorn` from PATH)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=180)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real tracking server process with a temporary SQLite store and artifact folder; yields its URI."""
    from training.tracking.server import serve

    root = tmp_path_factory.mktemp("mlflow-server")
    with serve(f"sqlite:///{root}/mlflow.db", root) as uri:
        yield uri


def _skip_or_fail(problem: str | None) -> None:
    """Skip when there is no usable cluster; fail instead when RISKBRAIN_REQUIRE_SLURM=1."""
    if problem is None:
        return
    if os.environ.get("RISKBRAIN_REQUIRE_SLURM") == "1":
        pytest.fail(f"RISKBRAIN_REQUIRE_SLURM=1 but {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A Slurm cluster with an up node (``bash .ci/slurm.sh start``)."""
    _skip_or_fail(cluster_problem())


@pytest.fixture(scope="session")
def multi_nodes(slurm_cluster) -> None:
    """The cluster's partition of namespace nodes, two of them up."""
    _skip_or_fail(multi_problem())
