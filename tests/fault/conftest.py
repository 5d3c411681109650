"""Fault-suite fixtures: the real tracking server and Slurm fixtures of the integration tests, and
the fault table printed at the end of the session (``report.py``)."""

from __future__ import annotations

from tests.fault import report
from tests.integration.conftest import mlflow_server  # noqa: F401 - shared fixture

report.reset()  # imported once per session, at collection: this session's rows only


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
