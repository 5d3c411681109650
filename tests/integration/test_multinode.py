"""Across nodes for real: the sbatch scripts on the namespace nodes of ``.ci/slurm.sh``.

Partition ``multi`` has rb-node1 and rb-node2: each a network namespace with its own interface
on a bridge, its own hostname and its own slurmd, so ranks on different nodes talk over TCP,
as between two machines (the "network" is a virtual bridge on one host). Every job here reads
and writes the shared file system under tmp_path, as on a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import ROOT
from tests.integration.slurm import (
    MULTI,
    QUEUE_TIMEOUT,
    SLOW_STEPS,
    VENV,
    job_fields,
    node_processes,
    only_run,
    slurm,
    submit,
    wait_done,
    wait_output,
    wait_state,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("multi_nodes")]

NODES = "rb-node1,rb-node2"
ONE_RANK_PER_NODE = (f"--partition={MULTI}", "--nodes=2", "--ntasks-per-node=1")
# dropout=0: dropout masks are drawn per rank, so with dropout the runs are only statistically equal
TINY = ("debug=tiny", "model.dropout=0", "data.n_rows=6000", "registry.move_alias=true")
# No --oversubscribe inside an allocation: with it Open MPI may put every rank on the first node.
MPIRUN = [str(VENV / "bin" / "mpirun")] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])


def _local(run_dir: Path, *overrides: str, ranks: int = 1) -> subprocess.Popen:
    """The same job on this machine's own network (1 process, or ``ranks`` MPI ranks), started
    while the Slurm job runs: the reference it is compared with."""
    cmd = [*MPIRUN, "--oversubscribe", "-n", str(ranks)] if ranks > 1 else []
    cmd += [sys.executable, "-m", "jobs.train", *overrides, f"hydra.run.dir={run_dir}",
            f"tracking.uri=sqlite:///{run_dir}/mlflow.db"]  # fmt: skip
    run_dir.mkdir(parents=True)
    log = open(run_dir / "stdout.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def _finished(proc: subprocess.Popen, run_dir: Path) -> dict:
    rc = proc.wait(timeout=600)
    assert rc == 0, (run_dir / "stdout.log").read_text()[-4000:]
    return json.loads((run_dir / "evaluation.json").read_text())


def _allreduce_on_two_nodes(btl: str) -> subprocess.CompletedProcess:
    """Two ranks, one per node, in a Slurm allocation, with only the given Open MPI transports."""
    code = (
        "from mpi4py import MPI; import socket; c = MPI.COMM_WORLD; "
        "print('rank', c.rank, socket.gethostname(), c.allreduce(1))"
    )
    # mpirun --timeout: ranks that cannot reach each other report it, then wait for ever
    cmd = ["salloc", "--quiet", f"--partition={MULTI}", "--nodes=2", "--ntasks-per-node=1",
           *MPIRUN, "-n", "2", "--timeout", "20", "--mca", "btl", btl, sys.executable, "-c", code]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ranks_on_two_nodes_reach_each_other_only_over_the_network():
    # TCP (over each node's own eth0 on the bridge) works ...
    tcp = _allreduce_on_two_nodes("self,tcp")
    assert tcp.returncode == 0, (tcp.stdout + tcp.stderr)[-3000:]
    lines = sorted(line for line in tcp.stdout.splitlines() if line.startswith("rank"))
    assert lines == ["rank 0 rb-node1 2", "rank 1 rb-node2 2"], tcp.stdout
    # ... and shared memory cannot join them: to Open MPI they are two hosts.
    shm = _allreduce_on_two_nodes("self,sm")
    assert shm.returncode != 0
    assert "unable to reach each other" in shm.stdout + shm.stderr, (shm.stdout + shm.stderr)[
        -3000:
    ]


def test_mpi_job_on_two_nodes_trains_the_model_one_process_trains(tmp_path):
    job_id, log = submit(tmp_path, "train_mpi.sbatch", *TINY, sbatch_args=ONE_RANK_PER_NODE)
    ref_dir = tmp_path / "one-process"
    reference = _finished(_local(ref_dir, *TINY), ref_dir)
    fields = wait_done(job_id, timeout=300)
    assert fields["JobState"] == "COMPLETED", log.read_text()[-4000:]
    assert fields["NodeList"] == "rb-node[1-2]", fields

    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["launcher"] == "mpi"
    assert run.data.tags["world_size"] == "2" and run.data.tags["nodes"] == NODES
    version = client.get_model_version_by_alias("credit-risk-synthetic_sme", "challenger")
    assert version.run_id == run.info.run_id and version.tags["nodes"] == NODES

    ref = load_file(ref_dir / "checkpoint" / "weights.safetensors")
    got = load_file(tmp_path / "run" / "checkpoint" / "weights.safetensors")
    assert ref.keys() == got.keys()
    for k in ref:
        assert (ref[k] - got[k]).abs().max().item() < 1e-4, k
    report = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    for key in ("auc", "ks"):
        assert report["test"][key] == pytest.approx(reference["test"][key], abs=1e-6), key


def test_ray_job_on_two_nodes_has_a_worker_on_each_and_leaves_no_ray_behind(tmp_path):
    job_id, log = submit(
        tmp_path, "train_ray.sbatch", "debug=tiny",
        sbatch_args=(f"--partition={MULTI}", "--nodes=2", "--cpus-per-task=1"),
    )  # fmt: skip
    fields = wait_done(job_id, timeout=400)
    text = log.read_text()
    assert fields["JobState"] == "COMPLETED", text[-4000:]
    assert "ray head on rb-node1" in text and "2 node(s)" in text, text[-4000:]
    _, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["launcher"] == "ray"
    # one worker per node: rank order follows Ray's placement, so compare as sets
    assert run.data.tags["world_size"] == "2"
    assert set(run.data.tags["nodes"].split(",")) == set(NODES.split(",")), run.data.tags
    # The job's steps are gone, and with them every Ray process on either node.
    deadline, left = time.monotonic() + 30, ["?"]
    while left and time.monotonic() < deadline:
        left = [p for node in NODES.split(",") for p in node_processes(node, "ray")]
        time.sleep(1)
    assert left == []


# 9 steps an epoch (4,200 training rows, batch 512); in the Slurm job each step first sleeps
# 0.5 s (SLOW_STEPS), so that the job is still training when signalled. The reference trains the
# same numbers at full speed.
LONG = (
    "data.n_rows=6000",
    "trainer.max_epochs=5",
    "trainer.patience=10",
    "checkpoint.every_steps=4",
)


def test_preempted_two_node_job_is_requeued_and_ends_as_if_uninterrupted(tmp_path):
    job_id, log = submit(
        tmp_path, "train_mpi.sbatch", *LONG, sbatch_args=ONE_RANK_PER_NODE, extra_env=SLOW_STEPS
    )
    wait_state(job_id, "RUNNING", timeout=QUEUE_TIMEOUT)
    wait_output(log, r"epoch 2/5", timeout=300)
    # What Slurm does before the time limit or on preemption (--signal=B:USR2@...): signal the
    # batch shell, which runs on the first node and passes the signal to mpirun's ranks.
    assert slurm("scancel", "--signal=USR2", "--batch", job_id).returncode == 0
    ref_dir = tmp_path / "reference"  # the same job, uninterrupted, with the same world size
    reference = _finished(_local(ref_dir, "launcher=mpi", *LONG, ranks=2), ref_dir)
    fields = wait_done(job_id, timeout=400)
    text = log.read_text()
    assert fields["JobState"] == "COMPLETED", text[-4000:]
    assert int(job_fields(job_id).get("Restarts", "0")) == 1
    assert "requeueing job" in text and "resuming from ckpt-" in text, text[-4000:]
    assert text.count("on rb-node[1-2]") == 2, text[-4000:]  # both starts on both nodes

    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["nodes"] == NODES
    history = client.get_metric_history(run.info.run_id, "valid_auc")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5]  # no epoch logged twice or missing
    resumed = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert resumed["training"]["epochs_run"] == reference["training"]["epochs_run"]
    for key in ("auc", "ks", "brier", "log_loss", "ece"):
        assert resumed["test"][key] == pytest.approx(reference["test"][key], abs=1e-6), key
