"""The real sbatch scripts on a real Slurm, on this node: a Ray job, a job rendered and submitted by
``jobs.submit`` (two MPI ranks), and the portfolio it registered scored by two MPI ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.integration.slurm import VENV, only_run, submit, wait_done
from training.data import synthetic

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]


def test_sbatch_ray_job_trains_logs_and_registers(tmp_path):
    # slurm/train_mpi.sbatch runs in test_multinode (one rank per node) and, rendered by
    # jobs.submit, below (two ranks on this node).
    job_id, log = submit(tmp_path, "train_ray.sbatch", "debug=tiny", "registry.move_alias=true")
    fields = wait_done(job_id, timeout=300)
    text = log.read_text()
    assert fields["JobState"] == "COMPLETED", text[-4000:]
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["launcher"] == "ray"
    assert run.data.tags["world_size"] == "2"
    assert (
        client.get_model_version_by_alias("credit-risk-synthetic_sme", "challenger").run_id
        == run.info.run_id
    )
    assert (tmp_path / "run" / "DONE").is_file()
    assert (
        f"riskbrain: job {job_id}" in text
        and "registered credit-risk-synthetic_sme version 1 as @challenger" in text
    )
    assert "State API may be temporarily unavailable" not in text  # the head serves it
    # only this job's Ray processes were stopped, and none are left
    leftover = subprocess.run(["pgrep", "-f", f"ray-{job_id}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def _sbatch_scores_a_portfolio(tmp_path: Path) -> None:
    """slurm/score_mpi.sbatch: 2 ranks, each its own chunks; the parts read in input order."""
    book = tmp_path / "book.csv"
    synthetic.generate(300, seed=5).frame.drop(columns="default_flag").to_csv(book, index=False)
    env = {**os.environ, "RISKBRAIN_ENV": str(VENV)}
    cmd = [
        "sbatch", "--parsable", f"--output={tmp_path}/score-%j.out", "slurm/score_mpi.sbatch",
        "model=models:/credit-risk-synthetic_sme@challenger", f"input={book}",
        f"output={tmp_path}/scores", f"tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        "chunk_rows=100", "reasons=2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    fields = wait_done(job_id, timeout=300)
    assert fields["JobState"] == "COMPLETED", (tmp_path / f"score-{job_id}.out").read_text()[-4000:]
    scored = pd.read_parquet(tmp_path / "scores")
    assert scored["row"].tolist() == list(range(300))
    assert {"pd", "score", "reason_2"} <= set(scored.columns) and "reason_3" not in scored
    summary = json.loads((tmp_path / "scores.summary.json").read_text())
    assert summary["world_size"] == 2 and summary["rows_scored"] == 300


def test_submit_renders_submits_and_prints_the_job_id(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.submit",
            "cluster=local",
            "cluster.time=00:10:00",
            f"cluster.log_dir={tmp_path}",
            "debug=tiny",
            "registry.move_alias=true",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"hydra.run.dir={tmp_path}/submit",
        ],
        cwd=ROOT,
        env={**os.environ, "RISKBRAIN_RUN_DIR": str(tmp_path / "run")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().splitlines()[-1]
    assert job_id.isdigit()
    script = (tmp_path / "submit" / "job.sbatch").read_text()
    assert "#SBATCH --time=00:10:00" in script and "launcher=mpi" in script
    fields = wait_done(job_id, timeout=300)
    assert fields["TimeLimit"] == "00:10:00" and fields["NumTasks"] == "2"
    assert fields["JobState"] == "COMPLETED", (tmp_path / f"slurm-{job_id}.out").read_text()[-3000:]
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"
    assert run.data.tags["launcher"] == "mpi"
    version = client.get_model_version_by_alias("credit-risk-synthetic_sme", "challenger")
    assert version.run_id == run.info.run_id
    _sbatch_scores_a_portfolio(tmp_path)  # the version it registered scores a portfolio too
