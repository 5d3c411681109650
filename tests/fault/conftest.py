"""Fault-suite fixtures: the real tracking server of the integration tests, MLflow's globals
restored. The fault table (``report.py``) is printed by ``tests/conftest.py``."""

from __future__ import annotations

import os

import pytest

from tests.integration.conftest import mlflow_server  # noqa: F401 - shared fixture


@pytest.fixture(autouse=True)
def _mlflow_globals_restored():
    """A test that points MLflow's globals at its own server must not point later tests there:
    ``set_registry_uri`` / ``set_tracking_uri`` also export ``MLFLOW_REGISTRY_URI`` /
    ``MLFLOW_TRACKING_URI`` (a later client, or job, would retry a server long gone)."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
    mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
