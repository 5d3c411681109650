"""A watchdog over a rank's MPI collectives: a rank that stops answering ends the job.

An MPI collective waits forever for a rank that stopped (SIGSTOP, a frozen node, a process stuck
in C code that holds the GIL); Open MPI has no timeout of its own. Each rank runs a ``Watchdog``
thread; the main thread only records what it waits in and since when (``enter``/``leave``: one
attribute write each, no system call). Live ranks cannot learn through MPI who is missing while
a collective is stuck, so the ranks tell each other through small files in the run folder
(``<run>/.ranks/<rank>``): a rank that has been in one state (waiting in a collective, or working
outside one) for over half the timeout writes its state there, and rewrites it every ``period``
while it stays in it (training steps write nothing: a step's collectives take milliseconds).
When this rank has waited in a collective for longer than the timeout, it reads the others' files:

- a file not rewritten for half the timeout: that rank went silent (its process stopped);
- every other rank waiting in a collective too: none can move on (mismatched collectives, a
  broken network);
- a rank still working (rank 0 writing the model while the others wait): it answers, so wait on.

In the first two cases the rank prints one line naming the silent ranks and where it waited, and
ends the job (``MPI_Abort``: mpirun then kills every rank, a stopped one included). The files'
times are wall-clock times: the nodes' clocks must agree to well within half the timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from training.constants import EXIT_FAILED

log = logging.getLogger("riskbrain")

FOLDER = ".ranks"  # in the run folder, shared by every rank


class Watchdog:
    """Ends the job when this rank has waited in a collective over ``timeout_s`` on a silent rank.

    ``end(exit_code)`` ends every rank (``comm.Abort``); the job exits ``EXIT_FAILED``.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        rank: int,
        world_size: int,
        timeout_s: float,
        end: Callable[[int], object],
        folder: str = FOLDER,
    ) -> None:
        self.folder, self.rank, self.world_size = run_dir / folder, rank, world_size
        self.timeout_s, self.end = timeout_s, end
        self.before_end: list[Callable[[str], object]] = []  # each gets the message first
        self.period = min(5.0, timeout_s / 10)  # how often the thread looks; detection lags by this
        # (collective waited in, None while working; time.monotonic() it began). One tuple, so the
        # thread always reads a matching pair.
        self.state: tuple[str | None, float] = (None, time.monotonic())
        self._told: tuple[str | None, float] | None = None  # the wait already logged as patient
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="riskbrain-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write(*self.state)  # the pid, for people (and the tests) looking for a rank
        self._thread.start()
        return self

    def enter(self, what: str) -> None:
        """The main thread waits in a collective from now; ``what`` says where, for the message."""
        self.state = (what, time.monotonic())

    def leave(self) -> None:
        self.state = (None, time.monotonic())

    def close(self) -> None:
        """Stop watching and remove this rank's file (the last rank out removes the folder)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        (self.folder / str(self.rank)).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            what, since = state = self.state
            waited = time.monotonic() - since
            try:
                if waited > self.timeout_s / 2:
                    self._write(what, since)
                if what is not None and waited > self.timeout_s:
                    self._judge(state, waited)
            except Exception:  # a watchdog that dies would let the job hang: report and go on
                log.exception("rank %d: watchdog", self.rank)

    def _write(self, what: str | None, since: float) -> None:
        now = time.time()
        record = {"what": what, "since": now - (time.monotonic() - since), "at": now}
        tmp = self.folder / f".{self.rank}.tmp"
        tmp.write_text(json.dumps(record | {"pid": os.getpid()}))
        os.replace(tmp, self.folder / str(self.rank))  # readers never see half a file

    def _others(self) -> dict[int, dict | None]:
        """Every other rank's state; None for a rank whose file was not rewritten lately."""
        now, out = time.time(), {}
        for r in range(self.world_size):
            if r != self.rank:
                try:
                    record = json.loads((self.folder / str(r)).read_text())
                except (OSError, ValueError):
                    record = None
                fresh = record is not None and now - record["at"] < self.timeout_s / 2
                out[r] = record if fresh else None
        return out

    def _judge(self, state: tuple[str | None, float], waited: float) -> None:
        what, others = state[0], self._others()
        silent = [r for r, record in others.items() if record is None]
        working = [r for r, record in others.items() if record and record["what"] is None]
        me = f"riskbrain: rank {self.rank} of {self.world_size}"
        if silent:
            who = f"rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))}"
            self._fail(
                f"{me}: {who} went silent: no answer in {what} for {waited:.0f} s "
                f"(launcher.timeout_s={self.timeout_s:g}); ending the job"
            )
        elif not working:
            where = "; ".join(f"rank {r}: {rec['what']}" for r, rec in others.items())
            self._fail(
                f"{me}: no rank can move on: every rank has waited in a collective for over "
                f"{self.timeout_s:g} s (launcher.timeout_s) (rank {self.rank}: {what}; {where}); "
                "ending the job"
            )
        elif self._told != state:
            self._told = state
            log.info(
                "%s: waiting in %s for %.0f s on working rank(s) %s", me, what, waited, working
            )

    def _fail(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)
        for hook in self.before_end:  # e.g. rank 0 ends its MLflow run FAILED, saying why
            try:
                hook(message)
            except Exception:  # the job must end all the same
                log.exception("rank %d: before ending the job", self.rank)
        self.end(EXIT_FAILED)
        os._exit(EXIT_FAILED)  # in case ``end`` returned
