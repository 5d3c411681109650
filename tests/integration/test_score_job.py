"""Portfolio scoring end to end: a registered model scores a CSV with bad rows, as one process
and as 2 MPI ranks; the outputs are identical, bad rows land in the rejects, each scoring is an
MLflow run linked to the model version, a missing column stops every rank before writing, and a
rank that stops answering ends the job after ``timeout_s`` (the watchdog, as in training)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import faults, run_job
from tests.fault.procs import stop_rank, wait_for
from tests.fault.report import record
from tests.integration.conftest import BIN
from training.constants import EXIT_FAILED
from training.data import synthetic

pytestmark = pytest.mark.slow

MODEL = "credit-risk-score-it"
MPIRUN = [str(BIN / "mpirun"), "-n", "2", "--oversubscribe"] + (
    ["--allow-run-as-root"] if os.geteuid() == 0 else []
)
# 4 chunks, 2 per rank. Few rows: reason codes (integrated gradients) score ~100 rows/s here.
N_ROWS, CHUNK_ROWS = 400, 100
# {row: (column, value)}: text in number columns, an infinite value, two bad values in one row
BAD = {
    5: ("revenue", "abc"),
    200: ("employees", "12 staff"),
    290: ("credit_utilisation", "inf"),
    399: ("loan_amount", "n/a?"),
}


@pytest.fixture(scope="module")
def store(mlflow_server, tmp_path_factory) -> str:
    """One tiny model registered as @challenger in the session's MLflow server."""
    proc = run_job(
        "debug=tiny",
        "data.n_rows=2000",  # a quick model: scoring is what is tested
        "trainer.max_epochs=1",
        f"registry.name={MODEL}",
        "registry.move_alias=true",  # debug=tiny moves no alias unless asked
        "tracking.experiment=it-score",
        cwd=tmp_path_factory.mktemp("score-model"),
        env={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return mlflow_server


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """Synthetic borrowers as a lender's CSV: a loan id, the features, the label, bad values."""
    from training.data import synthetic

    frame = synthetic.generate(N_ROWS, seed=11).frame.astype(object)
    frame.insert(0, "loan_id", [f"L{i:06d}" for i in range(N_ROWS)])
    for row, (column, value) in BAD.items():
        frame.loc[row, column] = value
    frame.loc[200, "patents"] = "three"
    path = tmp_path_factory.mktemp("book") / "book.csv"
    frame.to_csv(path, index=False)
    return path


def _score(work: Path, store: str, *options: str, mpi: bool = False, timeout: float = 180):
    cmd = [*MPIRUN] if mpi else []
    cmd += [sys.executable, "-m", "jobs.score", f"model=models:/{MODEL}@challenger", *options]
    return subprocess.run(
        [*cmd, f"tracking_uri={store}"],
        cwd=work,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def scored(store, book, tmp_path_factory) -> dict[str, Path]:
    """The same book scored by one process and by 2 MPI ranks; returns each output folder."""
    out = {}
    for name, mpi in (("local", False), ("mpi", True)):
        work = tmp_path_factory.mktemp(f"score-{name}")
        options = [f"input={book}", f"output={work}/scores", f"chunk_rows={CHUNK_ROWS}"]
        options += ["keep=[loan_id]"] + (["launcher=mpi"] if mpi else [])
        proc = _score(work, store, *options, mpi=mpi)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        assert "rows scored" in proc.stderr and "rows/s" in proc.stderr
        out[name] = work / "scores"
    return out


def test_two_ranks_write_what_one_process_writes(scored):
    one, two = (pd.read_parquet(scored[n]) for n in ("local", "mpi"))
    pd.testing.assert_frame_equal(one, two)  # row order and values
    assert list(one.columns[:4]) == ["row", "loan_id", "pd", "score"]
    reasons = [
        f"reason_{i}{s}"
        for i in range(1, 5)
        for s in ("", "_value", "_description", "_contribution")
    ]
    assert list(one.columns[4:]) == reasons  # reasons=4, the default
    assert one["row"].tolist() == [r for r in range(N_ROWS) if r not in BAD]
    assert one["loan_id"].tolist() == [f"L{r:06d}" for r in one["row"]]
    assert one["pd"].between(0, 1).all()
    parts = [p.name for p in sorted(scored["mpi"].iterdir())]
    assert parts == [f"part-{c:06d}.parquet" for c in range(4)]  # one part per chunk, no temp


def test_bad_rows_are_in_the_rejects_with_their_column(scored):
    for out in scored.values():
        parts = sorted(Path(f"{out}.rejects").glob("rejects-*.csv"))
        rejects = pd.concat([pd.read_csv(p, dtype=str) for p in parts], ignore_index=True)
        assert rejects["row"].astype(int).tolist() == sorted(BAD)
        columns = dict(zip(rejects["row"].astype(int), rejects["column"], strict=True))
        assert columns == {5: "revenue", 200: "employees; patents", 290: "credit_utilisation",
                           399: "loan_amount"}  # fmt: skip
        assert rejects.loc[0, "value"] == "abc" and rejects.loc[0, "reason"] == "not a number"
        assert rejects.loc[2, "reason"] == "not a finite number"
        assert rejects["loan_id"].tolist() == [f"L{r:06d}" for r in sorted(BAD)]  # the raw row


def test_each_scoring_is_a_run_linked_to_the_model_version(scored, store):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias(MODEL, "challenger")
    experiment = client.get_experiment_by_name("scoring")
    for world, out in (("1", scored["local"]), ("2", scored["mpi"])):
        summary = json.loads(Path(f"{out}.summary.json").read_text())
        run = client.get_run(summary["mlflow_run_id"])
        assert run.info.experiment_id == experiment.experiment_id
        assert run.info.status == "FINISHED" and run.data.params["world_size"] == world
        assert run.data.params["output"] == str(out)
        assert run.data.metrics["rows_scored"] == N_ROWS - len(BAD) == summary["rows_scored"]
        assert run.data.metrics["rows_rejected"] == len(BAD) and run.data.metrics["rows_per_s"] > 0
        tags = run.data.tags
        assert (tags["model_name"], tags["model_version"]) == (MODEL, version.version)
        assert tags["model_run_id"] == version.run_id
        psi = summary["psi"]  # of the scores, against the training scores the model carries
        assert psi["column"] == "score" and psi["note"] is None
        assert run.data.metrics["psi_score"] == pytest.approx(psi["value"]) and psi["value"] >= 0
        assert sum(summary["distribution"]["histogram"]["counts"]) == N_ROWS - len(BAD)
        drift = summary["feature_psi"]  # each feature against its training distribution
        assert set(drift) == set(synthetic.SCHEMA.names()) and all(
            run.data.metrics[f"psi_feature.{name}"] == pytest.approx(d["psi"])
            for name, d in drift.items()
        )
        assert all(d["band"] in ("stable", "some shift", "major shift") for d in drift.values())
        assert "summary.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_missing_column_stops_every_rank_before_anything_is_written(store, book, tmp_path):
    frame = pd.read_csv(book, dtype=str, nrows=50).drop(columns=["revenue"])
    frame.to_csv(tmp_path / "no_revenue.csv", index=False)
    options = [f"input={tmp_path}/no_revenue.csv", f"output={tmp_path}/scores", "launcher=mpi"]
    proc = _score(tmp_path, store, *options, mpi=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "input has no column 'revenue'" in proc.stderr
    assert not any(tmp_path.glob("scores*"))


def test_a_stopped_scoring_rank_ends_the_job_after_the_timeout(store, book, tmp_path):
    """SIGSTOP one of 2 scoring ranks: the other names it silent and MPI_Abort ends both."""
    timeout_s, work = 6, tmp_path
    cmd = [*MPIRUN, sys.executable, "-m", "jobs.score", f"model=models:/{MODEL}@challenger",
           f"input={book}", f"output={work}/scores", "chunk_rows=10", "reasons=0",
           "launcher=mpi", f"timeout_s={timeout_s}", f"tracking_uri={store}"]  # fmt: skip
    env = os.environ | faults(score_sleep="0.2")  # 20 chunks a rank, 0.2 s each
    with open(work / "score.log", "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    rank_file = work / ".scores.ranks" / "1"
    try:

        def scoring() -> bool:
            return rank_file.is_file() and any((work / "scores").glob("part-*"))

        wait_for("rank 1's watchdog file and a scored part", scoring, timeout=120, proc=proc)
        pid = json.loads(rank_file.read_text())["pid"]
        code, detect_s = stop_rank(proc, pid, timeout=timeout_s + 40)
    finally:
        if proc.poll() is None:  # it failed before the fault: leave nothing running
            proc.kill()
    log = (work / "score.log").read_text()
    assert code == EXIT_FAILED, log[-3000:]
    said = re.search(r"riskbrain: rank 0 of 2: rank 1 went silent: no answer in (.*) for", log)
    assert said, log[-3000:]
    assert not Path(f"{work}/scores.summary.json").exists()  # no summary of a half-scored book
    record(
        "MPI scoring rank stopped (SIGSTOP) mid-book (`timeout_s=6`)",
        f"rank 0 named rank 1 silent ({said[1]}) and MPI_Abort ended the job (exit {code}); "
        "no summary was written",
        detect_s,
        "the scoring run (score again into a new output folder)",
    )
