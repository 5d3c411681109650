"""``python -m jobs.sweep`` end to end: Ray Tune trials as nested MLflow runs, pruning, the best model
registered, eight concurrent trials losing nothing, an interrupted sweep resumed, bad input refused."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

SMOKE = ["sweep=smoke", "debug=tiny", "trainer.max_epochs=4", "registry.move_alias=true"]


def _cmd(tmp_path: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jobs.sweep",
        *overrides,
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"hydra.run.dir={tmp_path}/sweep",
    ]


def _sweep(tmp_path: Path, *overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        _cmd(tmp_path, *overrides), cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )


def _runs(tmp_path: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_smoke_sweep_logs_nested_runs_and_registers_the_best(tmp_path):
    proc = _sweep(tmp_path, *SMOKE)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "sweep smoke: best" in proc.stdout  # the table
    client, parents, children = _runs(tmp_path)
    assert (
        len(parents) == 1
        and parents[0].data.tags["sweep"] == "smoke"
        and parents[0].info.status == "FINISHED"
    )
    parent = parents[0]
    assert len(children) == 6 and {c.data.tags["mlflow.parentRunId"] for c in children} == {
        parent.info.run_id
    }
    for child in children:
        history = client.get_metric_history(child.info.run_id, "valid_auc")
        assert [m.step for m in history] == list(
            range(1, len(history) + 1)
        )  # per-epoch, nothing lost
        if child.data.tags.get("pruned") == "true":  # stopped by ASHA at a rung: never evaluated
            assert child.info.status == "KILLED" and "test_auc" not in child.data.metrics
        else:
            assert child.info.status == "FINISHED" and "test_auc" in child.data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "trials.csv",
        "objective.png",
        "sweep.json",
    }

    mv = client.get_model_version_by_alias("credit-risk-synthetic_sme", "challenger")
    assert mv.tags["sweep"] == "smoke" and mv.tags["parent_run_id"] == parent.info.run_id
    finished = [c for c in children if c.info.status == "FINISHED"]
    best = max(
        finished,
        key=lambda c: max(m.value for m in client.get_metric_history(c.info.run_id, "valid_auc")),
    )
    assert mv.run_id == best.info.run_id
    rows = list(csv.DictReader((tmp_path / "sweep" / "trials.csv").read_text().splitlines()))
    assert len(rows) == 6 and {
        "param.optim.lr",
        "param.model.d_block",
        "objective",
        "status",
    } <= set(rows[0])


def test_a_sweep_registers_the_mean_of_its_top_k_trials_as_one_model(tmp_path):
    proc = _sweep(
        tmp_path, *SMOKE, "sweep.ensemble_top_k=2", "sweep.scheduler=none", "sweep.num_samples=3",
        "benchmark.enabled=true", "benchmark.n_trials=2",
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    client, parents, children = _runs(tmp_path)
    (parent,) = parents
    ensemble = [c for c in children if c.data.tags.get("ensemble_of") == "2"]
    trials = [c for c in children if "ensemble_of" not in c.data.tags]
    assert len(ensemble) == 1 and len(trials) == 3
    assert ensemble[0].info.status == "FINISHED" and "test_auc" in ensemble[0].data.metrics
    assert ensemble[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    mv = client.get_model_version_by_alias("credit-risk-synthetic_sme", "challenger")
    assert mv.run_id == ensemble[0].info.run_id  # the ensemble is what is registered
    report = json.loads((tmp_path / "sweep" / "ensemble" / "evaluation.json").read_text())
    # the two best trials by the objective, listed with their runs
    best2 = sorted(
        trials,
        key=lambda c: -max(m.value for m in client.get_metric_history(c.info.run_id, "valid_auc")),
    )[:2]
    assert {m["run_id"] for m in report["ensemble"]} == {c.info.run_id for c in best2}
    bundle = json.loads(
        (tmp_path / "sweep" / "ensemble" / "checkpoint" / "bundle.json").read_text()
    )
    assert len(bundle["members"]) == 2

    # the trials share one split, so one of them fitted the LightGBM benchmark and the others
    # (and the ensemble) read it: the same key and the same test figures in every report
    benchmarks = [
        json.loads(p.read_text())["benchmark"]
        for p in (tmp_path / "sweep" / "trials").glob("*/evaluation.json")
    ] + [report["benchmark"]]
    assert len(benchmarks) == 4 and len({b["key"] for b in benchmarks}) == 1
    assert sorted(b["reused"] for b in benchmarks) == [False, True, True, True]
    assert len({b["test"]["auc"] for b in benchmarks}) == 1
    assert len(list((tmp_path / "sweep" / "benchmark").glob("lightgbm-*.json"))) == 1


def test_eight_concurrent_trials_lose_nothing(tmp_path):
    proc = _sweep(
        tmp_path,
        "sweep=smoke",
        "debug=tiny",
        "sweep.search=random",
        "sweep.scheduler=none",
        "sweep.num_samples=8",
        "sweep.max_concurrent=8",
        "sweep.cpus_per_trial=0.25",
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "database is locked" not in proc.stdout + proc.stderr
    client, parents, children = _runs(tmp_path)
    assert len(children) == 8 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        assert len(client.get_metric_history(child.info.run_id, "valid_auc")) == 3
        assert len(client.get_metric_history(child.info.run_id, "train_loss")) == 3
        assert "test_auc" in child.data.metrics and "optim.lr" in child.data.params


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    overrides = [
        "sweep=smoke",
        "debug=tiny",
        "sweep.max_concurrent=1",
        "sweep.scheduler=none",
        "sweep.num_samples=4",
    ]
    proc = subprocess.Popen(
        _cmd(tmp_path, *overrides),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    trials = tmp_path / "sweep" / "trials"
    deadline = time.monotonic() + 300
    while (
        len(list(trials.glob("*/DONE"))) < 2 and time.monotonic() < deadline and proc.poll() is None
    ):
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C: Tune saves its state and returns
    assert proc.wait(timeout=120) != 0
    done_before = {p.parent.name: (p.parent / "DONE").read_text() for p in trials.glob("*/DONE")}
    assert 2 <= len(done_before) < 4

    resumed = _sweep(tmp_path, *overrides)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]
    assert "resuming the sweep" in resumed.stdout + resumed.stderr
    for trial, run_id in done_before.items():  # finished trials were not run again
        assert (trials / trial / "DONE").read_text() == run_id
    _, parents, children = _runs(tmp_path)
    assert len(parents) == 1
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 4  # each trial finished exactly once


def test_bad_search_space_is_refused_before_any_trial(tmp_path):
    (tmp_path / "configs" / "sweep").mkdir(parents=True)
    (tmp_path / "configs" / "sweep" / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        params:
          optim.lr: {type: float, low: 1.0e-2, high: 1.0e-4}
        """)
    )
    proc = _sweep(
        tmp_path, f"hydra.searchpath=[file://{tmp_path}/configs]", "sweep=bad", timeout=120
    )
    assert proc.returncode == 2
    assert (
        "sweep.params.optim.lr" in proc.stdout + proc.stderr
        and "inverted" in proc.stdout + proc.stderr
    )
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "sweep" / "tune").exists()


def test_a_trial_restarted_after_it_finished_returns_its_result_without_training(
    tmp_path, monkeypatch
):
    """The race behind a resumed sweep rerunning a finished trial: the trial wrote DONE, then
    the sweep was interrupted before Tune saved that it had finished, so Tune starts it again."""
    from hydra import compose, initialize_config_dir
    from ray import tune

    import training.core.pipeline as pipeline
    from training.config import register_configs, to_config
    from training.launch import sweep

    folder = tmp_path / "sweep" / "trials" / "trial_0"
    job = subprocess.run(
        [sys.executable, "-m", "jobs.train", "debug=tiny", "registry.register=false",
         f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={folder}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    done = (folder / "DONE").read_text()
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        base = to_config(compose(config_name="train", overrides=["sweep=smoke", "debug=tiny"]))

    class Context:
        def get_trial_id(self) -> str:
            return folder.name

    reported: list[dict] = []
    monkeypatch.setattr(tune, "get_context", Context)
    monkeypatch.setattr(tune, "report", reported.append)
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail("the trial trained again"))
    result = sweep._trial({}, base=base, sweep_dir=str(tmp_path / "sweep"), parent_run_id="p")
    assert result["run_id"] == done.strip() and (folder / "DONE").read_text() == done
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert result[base.sweep.metric] == pytest.approx(evaluation["valid"]["auc"])
    assert reported == [{base.sweep.metric: result[base.sweep.metric],
                         "epoch": evaluation["training"]["epochs_run"]}]  # fmt: skip
