"""Fault-suite fixtures: the real tracking server and Slurm fixtures of the integration tests, and
the fault table printed at the end of the session (``report.py``)."""

from __future__ import annotations

import os

import pytest

from tests.fault import report
from tests.integration.conftest import mlflow_server  # noqa: F401 - shared fixture

report.reset()  # imported once per session, at collection: this session's rows only


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


def pytest_terminal_summary(terminalreporter) -> None:
    rows = report.rows()
    if not rows:
        return
    tr = terminalreporter
    tr.section("fault table (docs/reliability.md)")
    tr.write_line("| fault | what happened | time to detect | work lost |")
    tr.write_line("|---|---|---|---|")
    for r in rows:
        detect = "-" if r["detect_s"] is None else f"{r['detect_s']} s"
        tr.write_line(f"| {r['fault']} | {r['happened']} | {detect} | {r['work_lost']} |")
