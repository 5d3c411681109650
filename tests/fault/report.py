"""The fault table: each fault test records what it injected and what it measured.

``record`` appends one row to ``$RISKBRAIN_FAULT_TABLE`` (``tests/conftest.py`` names one file per
pytest session, shared by xdist's workers, and prints every row as a table at the end of the
session: the figures ``docs/reliability.md`` quotes).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

_FILE = Path(os.environ["RISKBRAIN_FAULT_TABLE"])  # named once per session by tests/conftest.py


def record(fault: str, happened: str, detect_s: float | None, work_lost: str) -> None:
    """One row: the fault injected, what the system did, seconds until it was detected (None:
    not applicable), and the work lost (e.g. "0 epochs", "1 checkpoint interval")."""
    row = {
        "fault": fault,
        "happened": happened,
        "detect_s": None if detect_s is None else round(detect_s, 1),
        "work_lost": work_lost,
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with _FILE.open("a") as f:
        f.write(json.dumps(row) + "\n")


def rows() -> list[dict]:
    if not _FILE.is_file():
        return []
    return [json.loads(line) for line in _FILE.read_text().splitlines() if line.strip()]
