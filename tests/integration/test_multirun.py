"""Hydra multirun: a grid run one job after another (basic launcher), and the same grid as a
Slurm job array (``hydra/launcher=slurm``, hydra-submitit-launcher) on the real local cluster.

Every grid point is the ordinary single-process job (launcher=local, rank 0 of 1) with its own
folder under the sweep dir and its own MLflow run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.slurm import QUEUE_TIMEOUT, slurm

pytestmark = pytest.mark.slow

GRID = ("debug=tiny", "model=mlp,tabm", "registry.register=false")


def _multirun(sweep_dir: Path, *overrides: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.train",
            "-m",
            *GRID,
            f"hydra.sweep.dir={sweep_dir}",
            *overrides,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _runs(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} at {uri}"
    return client.search_runs([exp.experiment_id])


def _check_grid(sweep_dir: Path, uri: str, experiment: str) -> None:
    """Two job folders (0: mlp, 1: tabm), two FINISHED runs, each a plain one-process job."""
    for num in (0, 1):
        job = sweep_dir / str(num)
        assert (job / "DONE").is_file() and (job / "evaluation.json").is_file(), num
        assert "rank 0/1 holds" in (job / "train.log").read_text(), num
    runs = _runs(uri, experiment)
    assert sorted(r.data.params["model.name"] for r in runs) == ["mlp", "tabm"]
    for run in runs:
        assert run.info.status == "FINISHED", run.info
        assert run.data.tags["launcher"] == "local" and run.data.tags["world_size"] == "1"


def test_grid_runs_every_point_one_after_another(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sweep_dir = tmp_path / "multirun"
    proc = _multirun(sweep_dir, f"tracking.uri={uri}", timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    _check_grid(sweep_dir, uri, "riskbrain")


def _array_tasks(submitit_dir: Path) -> tuple[str, list[int]]:
    """The array job id and task ids from the submitit folder (``<array id>_<task>/``)."""
    found = [re.fullmatch(r"(\d+)_(\d+)", p.name) for p in submitit_dir.glob("*_*")]
    found = [m for m in found if m and (submitit_dir / m.group(0)).is_dir()]
    ids = {m.group(1) for m in found}
    assert len(ids) == 1, f"expected one array job in {submitit_dir}: {sorted(ids)}"
    return ids.pop(), sorted(int(m.group(2)) for m in found)


def _logs(submitit_dir: Path) -> str:
    return "\n".join(
        f"===== {p}\n{p.read_text()[-3000:]}" for p in sorted(submitit_dir.glob("*/*_log.*"))
    )


def test_grid_runs_as_a_slurm_job_array(slurm_cluster, mlflow_server, tmp_path):
    # A tracking server, not a SQLite file: the array tasks run at the same time, and concurrent
    # processes creating one SQLite store race (sqlite3.OperationalError: duplicate column name).
    experiment = f"multirun-slurm-{uuid.uuid4().hex[:8]}"
    sweep_dir = tmp_path / "multirun"
    submitit_dir = sweep_dir / ".submitit"
    try:
        proc = _multirun(
            sweep_dir,
            "hydra/launcher=slurm",
            f"tracking.uri={mlflow_server}",
            f"tracking.experiment={experiment}",
            f"hydra.launcher.submitit_folder={submitit_dir}/%j",
            "hydra.launcher.timeout_min=20",  # Slurm ends a stuck task; the launcher then fails
            # the node has 2 CPUs and may be busy with other jobs: long wait in the queue
            timeout=QUEUE_TIMEOUT + 600,
        )
    except subprocess.TimeoutExpired as e:
        if submitit_dir.is_dir() and any(submitit_dir.glob("*_*")):
            slurm("scancel", _array_tasks(submitit_dir)[0])
        pytest.fail(f"the Slurm sweep did not end: {e}\n{_logs(submitit_dir)}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:] + _logs(submitit_dir)

    # One sbatch of a two-task array, both tasks through submitit with a result
    array_id, tasks = _array_tasks(submitit_dir)
    assert tasks == [0, 1]
    script = (submitit_dir / array_id / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --partition=debug" in script
    for task in tasks:
        assert (submitit_dir / f"{array_id}_{task}" / f"{array_id}_{task}_0_result.pkl").is_file()
    # Slurm's view (finished jobs stay in scontrol for MinJobAge=300 s)
    shown = slurm("scontrol", "show", "job", "-o", array_id)
    assert shown.returncode == 0, shown.stderr
    records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.stdout.splitlines()]
    assert sorted(r["ArrayTaskId"] for r in records if r.get("ArrayJobId") == array_id) == [
        "0",
        "1",
    ], shown.stdout
    assert {r["JobState"] for r in records} == {"COMPLETED"}, shown.stdout

    _check_grid(sweep_dir, mlflow_server, experiment)
