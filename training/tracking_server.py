"""A local ``mlflow server`` over a SQLite store, for many concurrent writers (sweeps)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

from training.process import free_port

log = logging.getLogger("riskbrain")


@contextlib.contextmanager
def serve(backend_uri: str, root: Path, timeout: float = 120) -> Iterator[str]:
    """Serve ``backend_uri`` on a free local port until the block ends; yields the HTTP URI."""
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    with open(root / "mlflow-server.log", "a") as out:
        proc = subprocess.Popen(
            [
                str(mlflow_bin),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                backend_uri,
                "--artifacts-destination",
                str(root / "mlartifacts"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mlflow server for {backend_uri} did not start; see {root / 'mlflow-server.log'}"
                    ) from None
                time.sleep(0.5)
        log.info("tracking server %s over %s", uri, backend_uri)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
