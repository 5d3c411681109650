"""Helpers for tests against a real Slurm cluster (started by ``bash .ci/slurm.sh start``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}
# The node has 2 CPUs and may be busy with other jobs: allow a long wait in the queue.
QUEUE_TIMEOUT = 600


def slurm(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def cluster_problem() -> str | None:
    """Why the cluster cannot be used, or None when ``sinfo`` shows an up node."""
    if shutil.which("sinfo") is None:
        return "sinfo not found: Slurm is not installed (run bash .ci/slurm.sh start)"
    try:
        proc = slurm("sinfo", "-h", "-o", "%t")
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering (run bash .ci/slurm.sh start)"
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states):
        return f"Slurm cluster not up (sinfo: {proc.stdout.strip() or proc.stderr.strip()!r}); run bash .ci/slurm.sh start"
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
