"""The run folder's tracking journal: every MLflow call of a job, written here first.

Training never waits on the tracking server. Rank 0 appends each call (params, metrics, tags,
artifacts, the model, the registration, the run's end) to ``<run folder>/tracking/journal.jsonl``
and ``training.tracking.tracker.replay`` applies the records to the store in order, now (``tracking.mode:
online``, when the server answers) or later (``python -m jobs.sync``, offline compute nodes). What
has been applied is kept in ``synced.json`` beside it (the store's run id of each run, the model
URI, the registered version), so a replay never applies a record twice: a second sync creates
nothing.

A run is named here by a key of our own (``run_key``), known before any server is reached; the
store's run id is learnt when the first record is applied. One journal can hold several runs (a
folder whose first job died before its first checkpoint starts a new run on its second attempt).

The job holds an exclusive lock on ``tracking/lock`` while it runs (released by the kernel when the
process dies, even on ``kill -9``): a folder whose lock can be taken has no live job, so its runs
without an ``end`` record belong to a dead job (``stale_runs``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from training.errors import ConfigError

FOLDER = "tracking"


class Journal:
    def __init__(self, run_folder: Path) -> None:
        self.run_folder = Path(run_folder).resolve()
        self.path = self.run_folder / FOLDER
        self.records_file = self.path / "journal.jsonl"
        self.state_file = self.path / "synced.json"
        self.files = self.path / "files"  # copies of what is not in the run folder already
        self._lock_fd: int | None = None

    @staticmethod
    def new_key() -> str:
        return uuid.uuid4().hex

    def exists(self) -> bool:
        return self.records_file.is_file()

    # -- the lock: one live job per folder -------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the folder's lock without waiting; False if a live process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.uname().nodename} {os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def lock(self) -> None:
        """Take the lock or say which job holds it."""
        if not self.try_lock():
            holder = (self.path / "lock").read_text().strip() or "another process"
            raise ConfigError(
                f"another job ({holder}: host pid) is running in {self.run_folder}: "
                "wait for it, or give this job its own folder (hydra.run.dir)"
            )

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- records -------------------------------------------------------------------------------

    def append(self, op: str, run: str, **fields: Any) -> None:
        """One record, flushed to disk before the call returns (a crash keeps what was appended)."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"op": op, "run": run, "time": time.time(), **fields}
        with self.records_file.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict]:
        """Every complete record, in order (a line cut short by a crash is the last and is skipped)."""
        if not self.exists():
            return []
        out = []
        for line in self.records_file.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return out

    def keep_file(self, source: Path, name: str) -> Path:
        """A copy of ``source`` under the journal (for what may change or vanish before a sync)."""
        self.files.mkdir(parents=True, exist_ok=True)
        dest = self.files / name
        shutil.copy2(source, dest)
        return dest

    def stale_runs(self) -> list[str]:
        """Runs whose last record is not their ``end`` (with the lock held: their job is dead)."""
        last = {r["run"]: r["op"] for r in self.records() if r["op"] in ("start", "resume", "end")}
        return [key for key, op in last.items() if op != "end"]

    def knows(self, key: str) -> bool:
        return any(r["run"] == key for r in self.records())

    # -- what has reached the store ------------------------------------------------------------

    def state(self) -> dict:
        if not self.state_file.is_file():
            return {"applied": 0, "runs": {}}
        return json.loads(self.state_file.read_text())

    def save_state(self, state: dict) -> None:
        """Written to a temporary file and renamed: never half written."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_file)

    def pending(self) -> int:
        """Records not yet applied to the store."""
        return len(self.records()) - self.state()["applied"]


def find_journals(path: Path) -> list[Journal]:
    """The journal of run folder ``path``, or of every run folder under it (``outputs/``)."""
    path = Path(path)
    if (path / FOLDER / "journal.jsonl").is_file():
        return [Journal(path)]
    return [Journal(p.parent.parent) for p in sorted(path.rglob(f"{FOLDER}/journal.jsonl"))]
