"""Helpers for tests against a real Slurm cluster (started by ``bash .ci/slurm.sh start``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, faults

DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}
# The node has 2 CPUs and may be busy with other jobs: allow a long wait in the queue.
QUEUE_TIMEOUT = 600
# The namespace nodes of .ci/slurm.sh: each its own network, hostname and slurmd.
MULTI = "multi"
VENV = Path(sys.prefix)
# A job's environment in which each training step first sleeps 0.5 s (tests/fault/sitecustomize.py):
# a small job still training when a preemption test signals it (sbatch passes it on to the job).
SLOW_STEPS = faults(step_sleep="0.5")


def slurm(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


UP = ("idle", "mix", "alloc")


def up_nodes(partition: str | None = None) -> tuple[list[str], str]:
    """The nodes ``sinfo`` shows up (in ``partition``, else in any), and what sinfo said."""
    where = ["-p", partition] if partition else []
    proc = slurm("sinfo", "-h", *where, "-N", "-o", "%N %t")
    said = proc.stdout.strip() or proc.stderr.strip()
    if proc.returncode != 0:
        return [], said
    rows = [line.split() for line in proc.stdout.splitlines()]
    return sorted({row[0] for row in rows if len(row) == 2 and row[1] in UP}), said


def cluster_problem() -> str | None:
    """Why the cluster cannot be used, or None when ``sinfo`` shows an up node."""
    if shutil.which("sinfo") is None:
        return "sinfo not found: Slurm is not installed (run bash .ci/slurm.sh start)"
    try:
        up, said = up_nodes()
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering (run bash .ci/slurm.sh start)"
    if not up:
        return f"Slurm cluster not up (sinfo: {said!r}); run bash .ci/slurm.sh start"
    return None


def job_fields(job_id: str) -> dict[str, str]:
    """``scontrol show job -o`` as a dict (values up to the next space)."""
    proc = slurm("scontrol", "show", "job", "-o", job_id)
    assert proc.returncode == 0, proc.stderr
    return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))


def wait_state(job_id: str, states: set[str] | str, timeout: float = 60) -> dict[str, str]:
    """Poll until the job's JobState is one of ``states``; return its fields."""
    states = {states} if isinstance(states, str) else set(states)
    deadline = time.monotonic() + timeout
    fields: dict[str, str] = {}
    while time.monotonic() < deadline:
        fields = job_fields(job_id)
        if fields.get("JobState") in states:
            return fields
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} not in {states} after {timeout}s: {fields}")


def wait_done(job_id: str, timeout: float = 120) -> dict[str, str]:
    """Wait (long) for the job to leave the queue, then (shorter) for it to finish."""
    wait_state(job_id, {"RUNNING", "COMPLETING", *DONE}, timeout=QUEUE_TIMEOUT)
    return wait_state(job_id, DONE, timeout=timeout)


def wait_output(path: Path, pattern: str, timeout: float = 60) -> str:
    """Poll until the file's text matches ``pattern``; return the text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if re.search(pattern, text, re.MULTILINE):
            return text
        time.sleep(0.5)
    raise TimeoutError(f"{path} did not match {pattern!r} after {timeout}s: {text!r}")


def multi_problem() -> str | None:
    """Why the partition of namespace nodes cannot run a 2-node job, or None."""
    up, said = up_nodes(MULTI)
    if len(up) < 2:
        return (
            f"no partition {MULTI!r} with 2 nodes up (sinfo: {said!r}); run bash .ci/slurm.sh start"
        )
    return None


def submit(
    tmp_path: Path,
    script: str,
    *overrides: str,
    sbatch_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> tuple[str, Path]:
    """sbatch a script from the repository with Hydra overrides; outputs and MLflow under tmp_path.
    The job gets this process's environment (sbatch's default) and ``extra_env``.
    Returns the job id and its log."""
    log = tmp_path / "slurm-%j.out"
    env = {**os.environ, "RISKBRAIN_ENV": str(VENV), "RISKBRAIN_RUN_DIR": str(tmp_path / "run")}
    env |= extra_env or {}
    proc = subprocess.run(
        ["sbatch", "--parsable", f"--output={log}", *sbatch_args, f"slurm/{script}",
         f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    return job_id, tmp_path / f"slurm-{job_id}.out"


def client(tmp_path: Path):
    """An MLflow client of the SQLite store under tmp_path (where ``submit`` sends the job)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def only_run(tmp_path: Path):
    """The client and the one run of the store under tmp_path."""
    mlflow = client(tmp_path)
    runs = mlflow.search_runs([e.experiment_id for e in mlflow.search_experiments()])
    assert len(runs) == 1, [r.info for r in runs]
    return mlflow, runs[0]


def node_processes(node: str, pattern: str) -> list[str]:
    """Command lines of the processes in ``node``'s network namespace that contain ``pattern``."""
    pids = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True).stdout
    found = []
    for pid in pids.split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        if pattern in cmd:
            found.append(f"{pid}: {cmd.strip()}")
    return found
