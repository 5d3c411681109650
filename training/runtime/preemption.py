"""Preemption: the signal handler only sets a flag; the loop checkpoints at the next step and stops."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class Preempted(Exception):  # noqa: N818 - a request, not an error
    """Raised by the loop after the checkpoint is written; the job exits with ``EXIT_PREEMPTED``."""


class StopFlag:
    """Callable: True once the configured signal has arrived, or once ``stop_file`` exists.

    The file is for processes that cannot take the signal themselves (Ray workers run the loop in
    a thread): the Ray driver takes the signal and creates the file. It is looked for every
    ``check_every`` calls, so the per-step cost stays a counter increment.
    """

    def __init__(self, stop_file: Path | None = None, check_every: int = 16) -> None:
        self.requested = False
        self.stop_file, self.check_every, self._calls = stop_file, check_every, 0

    def install(self, name: str) -> StopFlag:
        """Handle ``SIG<name>``; only possible in the main thread (Ray runs workers in threads:
        there the stop file alone asks)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(getattr(signal, f"SIG{name}"), self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __call__(self) -> bool:
        self._calls += 1
        if (
            not self.requested
            and self.stop_file is not None
            and self._calls % self.check_every == 0
        ):
            self.requested = self.stop_file.exists()
        return self.requested
