"""The same job under MPI ranks and Ray workers: one run, one model, the same model as one process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import ROOT, faults
from tests.integration.conftest import BIN

pytestmark = pytest.mark.slow

# dropout=0: dropout masks are drawn per rank, so with dropout the runs are only statistically equal
TINY = ["debug=tiny", "model.dropout=0", "data.n_rows=6000", "registry.move_alias=true"]
BOOK = ["data=sme_histories"]  # plus data.root: where the book is written once
# The GBDT benchmark (off in debug=tiny), so that it too is compared across launchers.
BENCHMARK = ["benchmark.enabled=true", "benchmark.n_trials=2"]
MPIRUN = [str(BIN / "mpirun"), "-n", "2", "--oversubscribe"] + (
    ["--allow-run-as-root"] if os.geteuid() == 0 else []
)


def _train(
    cwd: Path, *overrides: str, mpi: bool = False, env: dict | None = None, timeout: float = 400
):
    cmd = [*MPIRUN] if mpi else []
    cmd += [
        sys.executable,
        "-m",
        "jobs.train",
        *overrides,
        f"tracking.uri=sqlite:///{cwd}/mlflow.db",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, proc.stdout + proc.stderr, time.monotonic() - t0


def _out_dir(cwd: Path, data: str = "synthetic_sme") -> Path:
    runs = list((cwd / "outputs" / data).iterdir())
    assert len(runs) == 1, runs  # one job, one output folder, whatever the number of ranks
    return runs[0]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> dict:
    """The same tiny job as 1 process, 2 MPI ranks and 2 Ray workers; returns each output folder.

    The data is the synthetic book of several tables (``data=sme_histories``): flat features,
    event sources read by DuckDB for each rank's own loans, window statistics and the event
    network, so all of it is compared across launchers."""
    out = {"book": [f"data.root={tmp_path_factory.mktemp('book')}", *BOOK]}
    for name, overrides, mpi in [
        ("local", [], False),
        ("mpi", ["launcher=mpi"], True),
        ("ray", ["launcher=ray", "launcher.num_workers=2"], False),
    ]:
        cwd = tmp_path_factory.mktemp(name)
        proc, log, _ = _train(cwd, *TINY, *out["book"], *BENCHMARK, *overrides, mpi=mpi)
        assert proc.returncode == 0, log[-5000:]
        out[name] = _out_dir(cwd, "sme_histories")
        out[f"{name}_log"] = log
    return out


def test_a_ray_jobs_log_holds_no_state_api_failures(jobs):
    """Ray Train's placement-group cleaner asks the state API (served by the cluster's
    dashboard) every second whether the controller lives; without it, each ask printed a
    warning that reads as a failure. Nothing in the job's log may say a Ray part did not answer."""
    log = jobs["ray_log"]
    assert "ray: local cluster" in log  # the Ray job's own log, read whole
    for noise in ("State API may be temporarily unavailable", "Failed to query Ray Train"):
        assert noise not in log, [line for line in log.splitlines() if noise in line][:3]


def _client(cwd: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{cwd}/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.mark.parametrize("launcher", ["mpi", "ray"])
def test_two_ranks_log_one_run_and_register_one_model(jobs, launcher):
    out = jobs[launcher]
    cwd = out.parents[2]
    client = _client(cwd)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.tags["world_size"] == "2" and run.data.tags["launcher"] == launcher
    assert run.data.params["launcher.name"] == launcher
    for key in ("rows_per_s_rank0", "rows_per_s_rank1", "sync_s_rank0", "sync_s_rank1"):
        assert key in run.data.metrics, key
    assert (
        client.get_model_version_by_alias("credit-risk-sme_histories", "challenger").run_id
        == run.info.run_id
    )
    assert (out / "DONE").read_text().strip() == run.info.run_id
    # artifacts land beside the job, not in a Ray worker's temporary folder
    location = client.get_experiment(run.info.experiment_id).artifact_location
    assert location.removeprefix("file://").startswith(str(cwd)), location


@pytest.mark.parametrize("launcher", ["mpi", "ray"])
def test_same_model_as_one_process(jobs, launcher):
    ref = load_file(jobs["local"] / "checkpoint" / "weights.safetensors")
    got = load_file(jobs[launcher] / "checkpoint" / "weights.safetensors")
    assert ref.keys() == got.keys()
    for k in ref:
        assert (ref[k] - got[k]).abs().max().item() < 1e-4, k
    a, b = (json.loads((jobs[n] / "evaluation.json").read_text()) for n in ("local", launcher))
    assert b["test"]["auc"] == pytest.approx(a["test"]["auc"], abs=1e-6)
    assert b["test"]["ks"] == pytest.approx(a["test"]["ks"], abs=1e-6)
    assert b["data_fingerprint"] == a["data_fingerprint"]
    assert b["split"] == a["split"]
    # the benchmark ran once, on every training row gathered, and scored every test row
    ga, gb = a["benchmark"], b["benchmark"]
    assert gb["train_rows"] == ga["train_rows"] == a["split"]["train"]["rows"]
    assert gb["test"]["n"] == ga["test"]["n"] and gb["params"] == ga["params"]
    assert gb["test"]["auc"] == pytest.approx(ga["test"]["auc"], abs=2e-3)


def test_a_parquet_book_is_read_by_shard_and_trains_as_one_process(tmp_path):
    """Each of 2 MPI ranks reads only the row groups of its half of a Parquet book (written by
    make_portfolio), and the job trains the same model as one process reading all of them."""
    book = tmp_path / "book"
    make = [sys.executable, "-m", "jobs.make_portfolio", "n_rows=6000", f"output={book}",
            "rows_per_file=2000", "row_group_size=500", "workers=1"]  # fmt: skip
    assert subprocess.run(make, cwd=ROOT, capture_output=True).returncode == 0
    data = ["data=portfolio", f"data.path={book}", "debug=tiny", "model.dropout=0"]
    out, logs = {}, {}
    for name, mpi in (("one", False), ("two", True)):
        cwd = tmp_path / name
        cwd.mkdir()
        proc, logs[name], _ = _train(cwd, *data, *(["launcher=mpi"] if mpi else []), mpi=mpi)
        assert proc.returncode == 0, logs[name][-5000:]
        out[name] = _out_dir(cwd, "portfolio")
    assert "rank 0/1 read rows 0-5999 of 6000: 12 of 12 row groups in 3 of 3 files" in logs["one"]
    assert "rank 0/2 read rows 0-2999 of 6000: 6 of 12 row groups in 2 of 3 files" in logs["two"]
    assert "rank 1/2 read rows 3000-5999 of 6000: 6 of 12 row groups in 2 of 3 files" in logs["two"]
    a, b = (json.loads((out[n] / "evaluation.json").read_text()) for n in ("one", "two"))
    assert b["data_fingerprint"] == a["data_fingerprint"] and b["split"] == a["split"]
    assert b["test"]["auc"] == pytest.approx(a["test"]["auc"], abs=1e-6)
    ref, got = (load_file(out[n] / "checkpoint" / "weights.safetensors") for n in ("one", "two"))
    for k in ref:
        assert (ref[k] - got[k]).abs().max().item() < 1e-4, k


@pytest.mark.parametrize("launcher", ["mpi", "ray"])
def test_a_failing_rank_ends_the_job(tmp_path, launcher):
    env = faults(fail_rank="1")
    extra = ["launcher=mpi"] if launcher == "mpi" else ["launcher=ray", "launcher.num_workers=2"]
    proc, log, _ = _train(
        tmp_path,
        *TINY,
        *extra,
        "trainer.max_epochs=50",
        "trainer.patience=50",
        mpi=launcher == "mpi",
        env=env,
        timeout=180,
    )
    assert proc.returncode != 0
    assert "rank 1 of 2 failed" in log and "injected fault" in log, log[-3000:]
    # Rank 1 fails in its third step, within the first epoch: the job ends there (a hang would hit
    # the timeout above), with no epoch finished, rather than when the training would have ended.
    assert not re.search(r"epoch \d+/50", log), log[-3000:]
    client = _client(tmp_path)
    assert client.search_registered_models() == []


def test_ensemble_parallel_job_trains_a_member_per_rank_and_registers_one_model(jobs, tmp_path):
    proc, log, _ = _train(
        tmp_path, *TINY, *jobs["book"], "launcher=mpi", "launcher.parallelism=ensemble", mpi=True
    )
    assert proc.returncode == 0, log[-5000:]
    out = _out_dir(tmp_path, "sme_histories")
    report = json.loads((out / "evaluation.json").read_text())
    assert [(m["member"], m["seed"]) for m in report["ensemble"]] == [(0, 0), (1, 1)]
    assert report["training"]["world_size"] == 2
    # each member saw every row: member 0 (seed 0) is exactly the one-process job's network
    single = load_file(jobs["local"] / "checkpoint" / "weights.safetensors")
    both = load_file(out / "checkpoint" / "weights.safetensors")
    assert {k.split(".", 2)[1] for k in both} == {"0", "1"}
    for k in single:
        assert (both[f"members.0.{k}"] - single[k]).abs().max().item() < 1e-4, k
    assert max((both[f"members.1.{k}"] - single[k]).abs().max().item() for k in single) > 1e-3
    # one run, one registered model, whose PD is the members' mean
    client = _client(tmp_path)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    versions = client.search_model_versions("name='credit-risk-sme_histories'")
    assert len(versions) == 1 and versions[0].run_id == runs[0].info.run_id
    bundle = json.loads((out / "checkpoint" / "bundle.json").read_text())
    assert len(bundle["members"]) == 2
