"""Preemption: the signal handler only sets a flag; the loop checkpoints at the next step and stops."""

from __future__ import annotations

import signal
import threading

PREEMPTED_EXIT_CODE = 3  # the job checkpointed and stopped on request: requeue it


class Preempted(Exception):  # noqa: N818 - a request, not an error
    """Raised by the loop after the checkpoint is written; the job exits with PREEMPTED_EXIT_CODE."""


class StopFlag:
    """Callable: True once the configured signal has arrived."""

    def __init__(self) -> None:
        self.requested = False

    def install(self, name: str) -> bool:
        """Handle ``SIG<name>``; only possible in the main thread (Ray runs workers in threads)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        signal.signal(getattr(signal, f"SIG{name}"), self._handle)
        return True

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested
