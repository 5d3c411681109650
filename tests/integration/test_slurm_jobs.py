"""The real sbatch scripts on a real Slurm: MPI and Ray jobs, and a preempted job that resumes exactly."""

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


@pytest.mark.parametrize(
    "script, launcher, sbatch_args",
    [
        ("train_mpi.sbatch", "mpi", ("--nodes=1", "--ntasks=2")),
        ("train_ray.sbatch", "ray", ()),
    ],
)
def test_sbatch_trains_logs_and_registers(tmp_path, script, launcher, sbatch_args):
    job_id, log = submit(
        tmp_path, script, "debug=tiny", "registry.move_alias=true", sbatch_args=sbatch_args
    )
    fields = wait_done(job_id, timeout=300)
    text = log.read_text()
    assert fields["JobState"] == "COMPLETED", text[-4000:]
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["launcher"] == launcher
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
    if launcher == "mpi":  # the version it registered scores a portfolio from sbatch too
        _sbatch_scores_a_portfolio(tmp_path)
    if launcher == "ray":  # only this job's Ray processes were stopped, and none are left
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
    _, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2"
