"""How an entry point's process ends: its exit handlers run, Python's teardown of its modules does not.

A training job has imported torch, scikit-learn, SciPy, pandas, MLflow and SQLAlchemy by the
time it ends. Unwinding them (freeing every module and object, torch's C++ destructors) took
1.8 s of a tiny job's 13 s, all of it CPU, after the last file was closed and the last record
sent; a test suite or a sweep that starts hundreds of jobs pays it hundreds of times.

``run(main)`` ends a process that finished (``main`` returned or called ``sys.exit``) with
``os._exit`` once every other exit handler has run: MPI is finalized, logging and the standard
streams are flushed here. A process that dies of an uncaught exception ends the usual way.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Callable

_code: int | None = None  # set once the entry point has finished: the process's exit code


def _end_without_teardown() -> None:
    """The last exit handler (registered first): finalize MPI, flush, and end with the code."""
    if _code is None:  # died of an exception: Python's own ending, traceback and all
        return
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.Finalize()  # mpi4py finalizes at teardown; mpirun counts a rank that skips it as failed
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(_code)


def run(main: Callable[[], int | None]) -> None:
    """Run an entry point's ``main`` and exit with its code (``sys.exit``'s rules for ``None``
    and ints); every exit handler runs, the teardown of the modules is skipped."""
    global _code
    atexit.register(_end_without_teardown)  # before main imports the libraries: runs last
    try:
        code = main()
    except SystemExit as e:
        code = e.code
    if code is None or isinstance(code, int):  # a message (sys.exit("...")): Python prints it
        _code = code or 0
    sys.exit(code)
