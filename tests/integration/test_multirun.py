"""Hydra multirun: a grid run one job after another (basic launcher), and the same grid as a
Slurm job array (``hydra/launcher=slurm``, hydra-submitit-launcher) on the real local cluster.

Every grid point is the ordinary single-process job (launcher=local, rank 0 of 1) with its own
folder under the sweep dir and its own MLflow run. The local cluster has no accounting storage,
so ``sacct`` fails: submitit then learns that a task is done only from its result file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.slurm import DONE, MULTI, QUEUE_TIMEOUT, SLOW_STEPS, slurm, wait_output

pytestmark = pytest.mark.slow

GRID = ("debug=tiny", "model=mlp,tabm", "registry.register=false")
# A job that trains long enough to be signalled in the middle: 6 epochs of 9 steps (4,200
# training rows, batch 512), each step first sleeping 0.5 s (SLOW_STEPS).
LONG = (
    "seed=0,1",
    "data.n_rows=6000",
    "trainer.max_epochs=6",
    "trainer.patience=20",
    "registry.register=false",
)
# A long wait in the queue (the node has 2 CPUs and may be busy with other jobs), then the run.
SWEEP_TIMEOUT = QUEUE_TIMEOUT + 600


def _command(sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "jobs.train", "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]


def _multirun(sweep_dir: Path, *overrides: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(sweep_dir, *overrides),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _slurm_overrides(sweep_dir: Path, uri: str, experiment: str) -> tuple[str, ...]:
    return (
        "hydra/launcher=slurm",
        f"hydra.launcher.submitit_folder={sweep_dir}/.submitit/%j",
        "hydra.launcher.timeout_min=20",  # Slurm ends a stuck task
        f"tracking.uri={uri}",
        f"tracking.experiment={experiment}",
    )


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, experiment: str) -> list:
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} at {uri}"
    return client.search_runs([exp.experiment_id])


def _check_grid(sweep_dir: Path, uri: str, experiment: str, param: str) -> list:
    """Two job folders, two FINISHED runs (one per value of ``param``), each a one-process job."""
    for num in (0, 1):
        job = sweep_dir / str(num)
        assert (job / "DONE").is_file() and (job / "evaluation.json").is_file(), num
        assert "rank 0/1 holds" in (job / "train.log").read_text(), num
    runs = _runs(uri, experiment)
    assert len({r.data.params[param] for r in runs}) == len(runs) == 2, [
        r.data.params for r in runs
    ]
    for run in runs:
        assert run.info.status == "FINISHED", run.info
        assert run.data.tags["launcher"] == "local" and run.data.tags["world_size"] == "1"
    return runs


def _array_id(submitit_dir: Path) -> str | None:
    """The array job id from the submitit folder (``<array id>_<task>/``), once submitted."""
    ids = {
        m.group(1)
        for p in submitit_dir.glob("*_*")
        if p.is_dir() and (m := re.fullmatch(r"(\d+)_\d+", p.name))
    }
    assert len(ids) <= 1, f"expected one array job in {submitit_dir}: {sorted(ids)}"
    return ids.pop() if ids else None


def _array_records(array_id: str, states: set[str], timeout: float) -> dict[str, dict[str, str]]:
    """``scontrol show job -o`` of each task by task id, once every task is in ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        shown = slurm("scontrol", "show", "job", "-o", array_id)
        assert shown.returncode == 0, shown.stderr
        records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.stdout.splitlines()]
        by_task = {r["ArrayTaskId"]: r for r in records if r.get("ArrayJobId") == array_id}
        if by_task and all(r.get("JobState") in states for r in by_task.values()):
            return by_task
        if time.monotonic() > deadline:
            raise TimeoutError(f"array {array_id} not in {states} after {timeout}s: {shown.stdout}")
        time.sleep(1)


def _logs(submitit_dir: Path) -> str:
    return "\n".join(
        f"===== {p}\n{p.read_text()[-3000:]}" for p in sorted(submitit_dir.glob("*/*_log.*"))
    )


def _cancel(submitit_dir: Path) -> None:
    if submitit_dir.is_dir() and (array_id := _array_id(submitit_dir)):
        slurm("scancel", array_id)


def _check_array(submitit_dir: Path, partition: str = "debug") -> dict[str, dict[str, str]]:
    """One sbatch of a two-task array; both tasks wrote a result; Slurm shows both COMPLETED."""
    array_id = _array_id(submitit_dir)
    assert array_id is not None
    script = (submitit_dir / array_id / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-1%2" in script and f"#SBATCH --partition={partition}" in script
    for task in (0, 1):
        assert (submitit_dir / f"{array_id}_{task}" / f"{array_id}_{task}_0_result.pkl").is_file()
    # Finished jobs stay in scontrol for MinJobAge=300 s. The launcher returns once the results
    # are written, when the tasks may still be COMPLETING.
    records = _array_records(array_id, DONE, timeout=120)
    assert sorted(records) == ["0", "1"], records
    assert {r["JobState"] for r in records.values()} == {"COMPLETED"}, records
    return records


def test_grid_runs_every_point_one_after_another(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sweep_dir = tmp_path / "multirun"
    proc = _multirun(sweep_dir, *GRID, f"tracking.uri={uri}", timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    runs = _check_grid(sweep_dir, uri, "riskbrain", "model.name")
    assert sorted(r.data.params["model.name"] for r in runs) == ["mlp", "tabm"]


@pytest.mark.timeout(SWEEP_TIMEOUT + 300)
def test_grid_runs_as_a_slurm_job_array_over_two_nodes(multi_nodes, tmp_path):
    # Each task asks for a whole node (2 CPUs), so the two run at once, one on each namespace
    # node, and track into one SQLite file on the shared file system (created once, under its lock).
    uri, experiment = f"sqlite:///{tmp_path}/mlflow.db", "multirun-nodes"
    sweep_dir = tmp_path / "multirun"
    submitit_dir = sweep_dir / ".submitit"
    nodes = (f"hydra.launcher.partition={MULTI}", "hydra.launcher.cpus_per_task=2")
    try:
        proc = _multirun(
            sweep_dir, *GRID, *_slurm_overrides(sweep_dir, uri, experiment), *nodes,
            timeout=SWEEP_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        _cancel(submitit_dir)
        pytest.fail(f"the Slurm sweep did not end: {e}\n{_logs(submitit_dir)}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:] + _logs(submitit_dir)
    records = _check_array(submitit_dir, partition=MULTI)
    assert sorted(r["NodeList"] for r in records.values()) == ["rb-node1", "rb-node2"], records
    runs = _check_grid(sweep_dir, uri, experiment, "model.name")
    assert sorted(r.data.params["model.name"] for r in runs) == ["mlp", "tabm"]
    assert sorted(r.data.tags["nodes"] for r in runs) == ["rb-node1", "rb-node2"]


# A tracking server for the tests below, as a team would share; the tasks run at the same time.


@pytest.mark.timeout(SWEEP_TIMEOUT + 300)
def test_preempted_array_task_is_requeued_and_resumes(slurm_cluster, mlflow_server, tmp_path):
    experiment = f"multirun-preempt-{uuid.uuid4().hex[:8]}"
    sweep_dir = tmp_path / "multirun"
    submitit_dir = sweep_dir / ".submitit"
    log = tmp_path / "sweep.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            _command(sweep_dir, *LONG, *_slurm_overrides(sweep_dir, mlflow_server, experiment)),
            cwd=ROOT,
            env={**os.environ, **SLOW_STEPS},  # sbatch passes it on to the tasks
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_output(sweep_dir / "0" / "train.log", r"epoch 2/6", timeout=SWEEP_TIMEOUT)
        array_id = _array_id(submitit_dir)
        assert array_id is not None
        task0 = _array_records(array_id, {"RUNNING"} | DONE, timeout=60)["0"]
        assert task0["JobState"] == "RUNNING", task0
        # What Slurm does signal_delay_s before the time limit or on preemption (--signal=USR2@...,
        # no B:): signal the job step, i.e. the task's Python.
        assert slurm("scancel", "--signal=USR2", task0["JobId"]).returncode == 0
        rc = proc.wait(timeout=SWEEP_TIMEOUT)
    except BaseException:
        proc.kill()
        proc.wait()
        _cancel(submitit_dir)
        raise
    finally:
        print(log.read_text()[-4000:] + _logs(submitit_dir))
    assert rc == 0

    records = _check_array(submitit_dir)
    assert records["0"]["Restarts"] == "1" and records["1"]["Restarts"] == "0", records
    text = (sweep_dir / "0" / "train.log").read_text()
    assert "preempted: stopped on request" in text and "resuming from ckpt-" in text, text[-3000:]

    client = _client(mlflow_server)
    for run in _check_grid(sweep_dir, mlflow_server, experiment, "seed"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "valid_auc"))
        assert steps == list(range(1, 7)), (run.data.params["seed"], steps)  # none twice or lost


@pytest.mark.timeout(SWEEP_TIMEOUT + 300)
def test_failed_array_task_fails_the_sweep(slurm_cluster, mlflow_server, tmp_path):
    # Without accounting storage submitit cannot see a task's state: a task that ends without
    # writing its result (e.g. sys.exit) would leave the launcher waiting for ever. A config error
    # in one grid point must come back as that task's error, and the other point still runs.
    experiment = f"multirun-fail-{uuid.uuid4().hex[:8]}"
    sweep_dir = tmp_path / "multirun"
    submitit_dir = sweep_dir / ".submitit"
    try:
        proc = _multirun(
            sweep_dir,
            "debug=tiny",
            "optim.lr=1e-3,-1",
            "registry.register=false",
            *_slurm_overrides(sweep_dir, mlflow_server, experiment),
            timeout=SWEEP_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        _cancel(submitit_dir)
        pytest.fail(f"the Slurm sweep did not end: {e}\n{_logs(submitit_dir)}")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-4000:]
    assert "config optim.lr=-1.0: must be > 0" in output, output[-4000:]
    array_id = _array_id(submitit_dir)
    assert array_id is not None
    assert (submitit_dir / f"{array_id}_1" / f"{array_id}_1_0_result.pkl").is_file()
    [run] = _runs(mlflow_server, experiment)
    assert run.info.status == "FINISHED" and run.data.params["optim.lr"] == "0.001"
