"""Submission rendering, preflight checks and threads per process (no cluster needed)."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import compose_config
from training.cluster import doctor
from training.cluster.submit import render
from training.errors import ConfigError


def test_rendered_script_carries_the_cluster_config_and_overrides():
    cfg = compose_config("cluster=gpu_partition", "launcher=mpi")
    script = render(
        cfg.cluster, "mpi", ["data=taiwan", "optim.lr=3e-4", "data.name=it's"], env="/opt/envs/rb"
    )
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --partition=gpu" in header and "#SBATCH --account=risk-models" in header
    assert "#SBATCH --nodes=2" in header and "#SBATCH --ntasks-per-node=4" in header
    assert "#SBATCH --gpus-per-node=4" in header and "#SBATCH --signal=B:USR2@300" in header
    assert "#SBATCH --output=logs/slurm-%j.out" in header and "#SBATCH --requeue" in header
    assert len(header) == len(
        {h.split("=")[0] for h in header}
    )  # the template's own #SBATCH lines are gone
    assert (
        "export RISKBRAIN_SIGNAL=USR2" in script and "export RISKBRAIN_ENV=/opt/envs/rb" in script
    )
    assert "set -- data=taiwan optim.lr=3e-4 'data.name=it'\"'\"'s'" in script  # shell-quoted
    assert script.startswith("#!/bin/bash\n") and "riskbrain_run" in script


def test_ray_script_runs_one_ray_node_per_slurm_node():
    cfg = compose_config("cluster=local", "cluster.tasks_per_node=4", "cluster.cpus_per_task=2")
    script = render(cfg.cluster, "ray", [], env=None)
    assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --cpus-per-task=8" in script
    assert "ray start --head" in script and "RISKBRAIN_ENV" not in script


@pytest.mark.parametrize(
    "override, key",
    [
        ("cluster.time=2h", "cluster.time"),
        ("cluster.nodes=0", "cluster.nodes"),
        ("cluster.signal=USR9", "cluster.signal"),
    ],
)
def test_bad_cluster_values_are_refused(override, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        compose_config(override)


def test_tracking_check_fails_on_an_unreachable_server():
    status, name, detail = doctor.tracking(compose_config("tracking.uri=http://127.0.0.1:9"))
    assert status == doctor.FAIL and "127.0.0.1:9" in detail


def test_tracking_check_passes_on_a_local_store(tmp_path):
    assert (
        doctor.tracking(compose_config(f"tracking.uri=sqlite:///{tmp_path}/m.db"))[0] == doctor.OK
    )


def test_writable_check(tmp_path):
    assert doctor.writable(tmp_path / "outputs")[0] == doctor.OK
    (tmp_path / "file").write_text("")
    assert doctor.writable(tmp_path / "file" / "sub")[0] == doctor.FAIL
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert doctor.writable(ro)[0] == doctor.FAIL


def test_data_check_names_a_missing_file():
    status, _, detail = doctor.data(compose_config("data=taiwan", "data.root=/nonexistent"))
    assert status == doctor.FAIL and "/nonexistent/taiwan_default/UCI_Credit_Card.csv" in detail


SLURM = {
    "SLURM_JOB_ID": "7",
    "SLURM_NTASKS": "4",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_CPUS_PER_TASK": "4",
}


@pytest.mark.parametrize(
    "env, overrides, expected",
    [
        ({}, [], doctor.OK),
        (SLURM, ["launcher=mpi"], doctor.OK),
        ({**SLURM, "SLURM_NTASKS": "3"}, ["launcher=mpi"], "SLURM_NTASKS=3"),
        (SLURM, ["launcher=mpi", "launcher.threads=8"], "launcher.threads=8"),
        (SLURM, [], "launcher=local"),
        ({**SLURM, "RISKBRAIN_SIGNAL": "USR1"}, ["launcher=mpi"], "checkpoint.signal=USR2"),
    ],
)
def test_slurm_check_compares_the_allocation_with_the_config(env, overrides, expected):
    status, _, detail = doctor.slurm(compose_config(*overrides), env=env)
    if expected == doctor.OK:
        assert status == doctor.OK, detail
    else:
        assert status == doctor.FAIL and expected in detail


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, (0, 1)),
        ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4"}, (1, 4)),
        ({"PMI_RANK": "2", "PMI_SIZE": "3"}, (2, 3)),
        (
            {"PMIX_RANK": "1", "SLURM_STEP_NUM_TASKS": "2"},
            (1, 2),
        ),  # srun --mpi=pmix sets no PMIX_SIZE
        (
            {"SLURM_PROCID": "0", "SLURM_NTASKS": "2"},
            (0, 1),
        ),  # a batch script or array task is not an MPI rank
    ],
)
def test_mpi_world_reads_the_launchers_environment(monkeypatch, env, expected):
    from training.launch import mpi_world

    for var in (
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "PMI_RANK",
        "PMI_SIZE",
        "PMIX_RANK",
        "PMIX_SIZE",
        "SLURM_STEP_NUM_TASKS",
        "SLURM_PROCID",
        "SLURM_NTASKS",
    ):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert mpi_world() == expected


@pytest.mark.parametrize(
    "threads, env, expected",
    [
        (3, {"OMP_NUM_THREADS": "2", "SLURM_CPUS_PER_TASK": "4"}, 3),  # launcher.threads wins
        (0, {"OMP_NUM_THREADS": "2", "SLURM_CPUS_PER_TASK": "4"}, 2),  # then the user's OpenMP
        (0, {"SLURM_CPUS_PER_TASK": "4"}, 4),  # then Slurm's CPUs per task
        (0, {}, max(1, (os.cpu_count() or 1) // 2)),  # then the node's cores over its 2 ranks
    ],
)
def test_torch_threads_follow_config_then_openmp_then_slurm_then_cores(
    monkeypatch, threads, env, expected
):
    import torch

    from training.runtime.process import setup_process

    for key in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = torch.get_num_threads()
    try:
        assert setup_process(threads, local_world_size=2) == expected
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
