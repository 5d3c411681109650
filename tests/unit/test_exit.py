"""``training.runtime.exit.run``: a finished process keeps its exit code, output and exit handlers
and skips Python's teardown; one that dies of an exception ends the usual way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

# A module global whose finalizer speaks at teardown: it tells whether the teardown ran.
PROGRAM = """
import atexit, sys
from training.runtime.exit import run

class Probe:
    def __del__(self):
        sys.stderr.write("teardown ran\\n")

probe = Probe()

def main():
    atexit.register(lambda: print("handler ran"))  # registered by the job, as MPI's and Ray's are
    print("job output", end="")  # no newline: only a flush shows it
    {body}

{call}
"""


def _run(body: str, call: str = "run(main)") -> subprocess.CompletedProcess:
    code = PROGRAM.format(body=body, call=call)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_probe_speaks_when_python_tears_down():
    proc = _run("return None", call="main()")
    assert proc.returncode == 0 and "teardown ran" in proc.stderr


@pytest.mark.parametrize(("body", "code"), [("return None", 0), ("sys.exit(3)", 3)])
def test_a_finished_process_keeps_its_code_output_and_handlers_but_skips_teardown(body, code):
    proc = _run(body)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.startswith("job output") and "handler ran" in proc.stdout
    assert "teardown ran" not in proc.stderr


def test_a_process_that_dies_of_an_exception_ends_the_usual_way():
    proc = _run("raise ValueError('bad row 7')")
    assert proc.returncode == 1
    assert "ValueError: bad row 7" in proc.stderr and "teardown ran" in proc.stderr
    assert "handler ran" in proc.stdout
