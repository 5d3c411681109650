"""A real one-node Slurm cluster: batch jobs, requeue, and MPI inside an allocation.

Start the cluster first with ``bash .ci/slurm.sh start``. Without one these tests skip, unless
``RISKBRAIN_REQUIRE_SLURM=1`` (as in CI), where a missing cluster is a failure.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.integration.slurm import QUEUE_TIMEOUT, slurm, wait_done, wait_output, wait_state

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
MPI_ONE_LINER = "from mpi4py import MPI; c = MPI.COMM_WORLD; print(c.Get_rank(), c.Get_size())"


def sbatch(tmp_path: Path, *args: str) -> tuple[str, Path]:
    """Submit a batch job writing to a file under ``tmp_path``; return its id and output path."""
    out = tmp_path / "job-%j.out"
    proc = slurm("sbatch", "--parsable", f"--output={out}", f"--chdir={tmp_path}", *args)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    return job_id, tmp_path / f"job-{job_id}.out"


def test_two_task_job_completes(slurm_cluster, tmp_path):
    job_id, out = sbatch(tmp_path, "--ntasks=2", "--wrap", "srun hostname")
    fields = wait_done(job_id)
    assert fields["JobState"] == "COMPLETED", fields
    lines = out.read_text().splitlines()
    assert len(lines) == 2, lines


def test_job_is_requeued_and_runs_again(slurm_cluster, tmp_path):
    job_id, out = sbatch(
        tmp_path,
        "--requeue",
        "--open-mode=append",
        "--wrap",
        "echo start $SLURM_RESTART_COUNT; sleep 300",
    )
    try:
        wait_state(job_id, "RUNNING", timeout=QUEUE_TIMEOUT)
        wait_output(out, r"^start\s*$")  # SLURM_RESTART_COUNT is unset on the first run
        t0 = time.monotonic()
        proc = slurm("scontrol", "requeue", job_id)
        assert proc.returncode == 0, proc.stderr
        # held back for AuthInfo=cred_expire seconds (10 s in .ci/slurm.sh, Slurm's default 120 s)
        wait_output(out, r"^start 1$", timeout=QUEUE_TIMEOUT)
        took = time.monotonic() - t0
        fields = wait_state(job_id, "RUNNING", timeout=10)
        assert fields["Restarts"] == "1", fields
        print(f"requeued job {job_id} ran again {took:.1f}s after scontrol requeue")
    finally:
        slurm("scancel", job_id)
    wait_state(job_id, "CANCELLED", timeout=60)


def test_mpirun_inside_allocation(slurm_cluster, tmp_path):
    mpirun = [str(BIN / "mpirun"), "--oversubscribe", "-n", "2"]
    if os.geteuid() == 0:
        mpirun.insert(1, "--allow-run-as-root")
    command = " ".join([*mpirun, sys.executable, "-c", f"'{MPI_ONE_LINER}'"])
    job_id, out = sbatch(tmp_path, "--ntasks=2", "--wrap", command)
    fields = wait_done(job_id, timeout=180)
    text = out.read_text()
    assert fields["JobState"] == "COMPLETED", (fields, text)
    lines = set(text.splitlines())
    assert {"0 2", "1 2"} <= lines, text
