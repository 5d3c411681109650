"""A rank that stops answering (SIGSTOP) fails the MPI job after ``launcher.timeout_s``, names the
silent rank, leaves a valid checkpoint, and the same command then resumes and finishes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.fault.procs import stop_rank
from tests.fault.report import record
from tests.integration.conftest import BIN
from training.core.checkpoint import load_latest
from training.runtime.watchdog import FOLDER, Watchdog

MPIRUN = [str(BIN / "mpirun"), "-n", "2", "--oversubscribe"] + (
    ["--allow-run-as-root"] if os.geteuid() == 0 else []
)
TIMEOUT_S = 10
# Long enough (0.1-0.4 s an epoch) to be training still when the first checkpoint appears, short
# enough for a quick rerun.
JOB = ["launcher=mpi", "debug=tiny", "trainer.max_epochs=12", "trainer.patience=12"]


def _start(tmp: Path, log: str) -> subprocess.Popen:
    cmd = [*MPIRUN, sys.executable, "-m", "jobs.train", *JOB, f"launcher.timeout_s={TIMEOUT_S}"]
    cmd += [f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"hydra.run.dir={tmp}/out"]
    with open(tmp / log, "w") as out:  # a file, not a pipe: nothing blocks on a full pipe
        return subprocess.Popen(cmd, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(what, proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := what():
            return found
        assert proc.poll() is None, f"the job ended with {proc.returncode} before the fault"
        time.sleep(0.05)
    raise TimeoutError(f"{what.__doc__} within {timeout} s")


def _rank_pid(run: Path, rank: int) -> int:
    pid = json.loads((run / FOLDER / str(rank)).read_text())["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ
    return pid


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_stopped_rank_fails_the_job_and_the_rerun_resumes(tmp_path):
    run, proc, pid = tmp_path / "out", _start(tmp_path, "hung.log"), None
    try:

        def checkpoint():
            """the first checkpoint"""
            return list((run / "checkpoints").glob("ckpt-*.pt.sha256"))

        _wait_for(checkpoint, proc, timeout=150)
        pid = _rank_pid(run, 1)
        code, detect_s = stop_rank(proc, pid, timeout=TIMEOUT_S + 20)
    finally:
        if proc.poll() is None:  # it failed before the fault: leave nothing running
            proc.kill()
    log = (tmp_path / "hung.log").read_text()
    assert code != 0 and detect_s < TIMEOUT_S + 20, log[-3000:]
    assert not _alive(pid)  # mpirun ended the stopped rank too
    said = re.search(r"riskbrain: rank 0 of 2: rank 1 went silent: no answer in (.*) for", log)
    assert said, log[-3000:]
    client = MlflowClient(
        *[f"sqlite:///{tmp_path}/mlflow.db"] * 2
    )  # rank 0 said why before the end
    [failed] = client.search_runs([client.get_experiment_by_name("riskbrain").experiment_id])
    assert failed.info.status == "FAILED" and "went silent" in failed.data.tags["last_failure"]
    state, path = load_latest(run / "checkpoints")
    done = state["schedule"]["t"]  # steps the checkpoint holds
    step = re.match(r"gradient sync at step (\d+)", said[1])
    lost = f"{int(step[1]) - 1 - done} steps" if step else "the rest of an epoch (at most)"

    rerun = _start(tmp_path, "rerun.log")
    assert rerun.wait(timeout=150) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    again = (tmp_path / "rerun.log").read_text()
    assert f"resuming from {path.name}" in again and (run / "DONE").is_file()
    assert client.get_run(failed.info.run_id).info.status == "FINISHED"  # the same run, resumed
    record(
        "MPI rank stopped (SIGSTOP) mid-training",
        f"rank 0 named rank 1 silent ({said[1]}), ended its MLflow run FAILED with that reason "
        f"and the job (exit {code}); the rerun resumed the same run to FINISHED",
        detect_s,
        f"{lost} (since {path.name})",
    )


def test_the_watchdog_tells_a_silent_rank_from_a_working_one(tmp_path):
    """Pure logic, no MPI: rank 0 waits; rank 1's file decides whether the job ends."""
    ended = []
    dog = Watchdog(tmp_path, rank=0, world_size=2, timeout_s=1.0, end=ended.append)
    (tmp_path / FOLDER).mkdir()
    dog._fail = lambda message: ended.append(message)
    now = time.time()
    for rank1, verdict in [
        (None, "rank 1 went silent"),  # no file
        ({"what": None, "at": now - 5}, "rank 1 went silent"),  # stale
        ({"what": None, "at": now}, None),  # working: wait on
        ({"what": "barrier", "at": now}, "no rank can move on"),  # waiting too
    ]:
        ended.clear()
        if rank1 is not None:
            (tmp_path / FOLDER / "1").write_text(json.dumps(rank1))
        dog._judge(("gradient sync at step 3", 0.0), waited=1.5)
        assert (verdict is None and not ended) or verdict in ended[0], (rank1, ended)
