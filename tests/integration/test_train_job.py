"""The spine end to end with real parts: the job into a real MLflow server, reloaded, served over HTTP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from tests.conftest import run_job
from tests.integration.conftest import served_model

pytestmark = pytest.mark.slow
MODEL = "credit-risk-it"


@pytest.fixture(scope="module")
def job(mlflow_server, tmp_path_factory):
    """One tiny training job into the server; returns (uri, output dir, report)."""
    work = tmp_path_factory.mktemp("job")
    proc = run_job(
        "debug=tiny",
        "benchmark.enabled=true",  # off in debug=tiny; on here, with a 2-setting search
        "benchmark.n_trials=2",
        f"registry.name={MODEL}",
        "registry.move_alias=true",  # debug=tiny moves no alias unless asked
        "tracking.experiment=it-spine",
        cwd=work,
        env={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = work / "outputs" / "run"
    return mlflow_server, out, json.loads((out / "evaluation.json").read_text())


@pytest.fixture(scope="module")
def client(job):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=job[0], registry_uri=job[0])


def _example(out: Path) -> tuple[pd.DataFrame, list[float]]:
    """The rows the job scored in-process, typed as the signature says (numbers as doubles)."""
    ex = json.loads((out / "example_predictions.json").read_text())
    frame = pd.DataFrame(ex["data"], columns=ex["columns"])
    return frame.astype({c: "float64" for c in frame.columns if frame[c].dtype.kind in "iuf"}), ex[
        "pd"
    ]


def test_output_dir_describes_the_run(job):
    _, out, report = job
    for name in (
        "config.yaml",
        "evaluation.json",
        "checkpoint/weights.safetensors",
        "checkpoint/bundle.json",
        "plots/roc.png",
        "plots/ks.png",
        "plots/calibration.png",
        "plots/score_distribution.png",
        "DONE",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("**/*.pkl"))
    # the model: tensors and JSON only; checkpoints: plain dicts that load with weights_only=True
    assert {p.name for p in (out / "checkpoint").iterdir()} == {
        "weights.safetensors",
        "bundle.json",
    }
    import torch

    for ckpt in (out / "checkpoints").glob("*.pt"):
        assert torch.load(ckpt, weights_only=True)["epoch"] >= 1
    assert set(report["test"]) >= {"auc", "gini", "ks", "brier", "log_loss", "ece"}
    assert 0.5 < report["test"]["auc"] <= 1 and "bayes_auc_test" in report


def test_one_finished_run_with_params_metrics_artifacts_and_tags(job, client):
    _, out, report = job
    exp = client.get_experiment_by_name("it-spine")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == report["run_id"] and run.info.status == "FINISHED"
    assert (
        run.data.params["optim.lr"] == "0.001" and run.data.params["data.name"] == "synthetic_sme"
    )
    assert run.data.params["model.d_block"] == "32"  # the debug override, resolved
    # The training config only: the Slurm allocation and the sweep are not params of the run.
    assert not [k for k in run.data.params if k.startswith(("cluster.", "sweep."))]
    history = client.get_metric_history(run.info.run_id, "valid_auc")
    assert [m.step for m in history] == list(range(1, report["training"]["epochs_run"] + 1))
    assert run.data.metrics["test_auc"] == pytest.approx(report["test"]["auc"])
    assert run.data.tags["dataset"] == "synthetic_sme"
    assert len(run.data.tags["data_fingerprint"]) == 16 == len(report["data_fingerprint"])
    assert run.data.tags["git_commit"] != ""
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "evaluation.json", "example_predictions.json", "plots"} <= top
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {f"plots/{n}.png" for n in ("roc", "ks", "calibration", "score_distribution")}


def test_gbdt_benchmark_in_the_report_the_run_and_the_version(job, client):
    _, _, report = job
    gbdt = report["benchmark"]
    # the same test rows as the network, and the rows it was fitted on
    assert gbdt["model"] == "lightgbm" and gbdt["test"]["n"] == report["test"]["n"]
    assert gbdt["train_rows"] == report["split"]["train"]["rows"] and gbdt["rounds"] >= 1
    assert 0.5 < gbdt["test"]["auc"] <= 1 and gbdt["valid_auc"] > 0.5
    assert report["lift"]["auc"] == pytest.approx(report["test"]["auc"] - gbdt["test"]["auc"])
    run = client.get_run(report["run_id"])
    assert run.data.metrics["benchmark_test_auc"] == pytest.approx(gbdt["test"]["auc"])
    assert run.data.metrics["lift_auc"] == pytest.approx(report["lift"]["auc"])
    mv = client.get_model_version_by_alias(MODEL, "challenger")
    assert mv.tags["benchmark_test_auc"] == f"{gbdt['test']['auc']:.4f}" and "lift_auc" in mv.tags


def test_registered_with_alias_signature_and_evidence(job, client):
    _, _, report = job
    mv = client.get_model_version_by_alias(MODEL, "challenger")
    assert mv.run_id == report["run_id"] and mv.version == report["registered"]["version"]
    assert mv.tags["data_fingerprint"] == report["data_fingerprint"] and "test_auc" in mv.tags
    artifacts = {a.path for a in client.list_artifacts(mv.run_id)}  # the version's model card
    assert {"model_card.md", "model_card.html", "plots", "evaluation.json"} <= artifacts
    import mlflow

    mlflow.set_tracking_uri(job[0])
    info = mlflow.models.get_model_info(f"models:/{MODEL}@challenger")
    inputs = {c.name: c.to_dict()["type"] for c in info.signature.inputs.inputs}
    assert inputs["revenue"] == "any" and inputs["industry"] == "string"
    outputs = [c.name for c in info.signature.outputs.inputs]
    assert outputs[:3] == ["pd", "score", "reason_1"] and outputs[-1] == "reason_4_contribution"
    assert info.signature.params.to_dict() == [
        {"name": "reasons", "type": "long", "default": 4, "shape": None}
    ]


def test_fresh_process_loads_the_same_pds(job, tmp_path):
    uri, out, _ = job
    frame, expected = _example(out)
    frame.to_parquet(tmp_path / "rows.parquet")
    code = (
        "import mlflow, pandas as pd, sys, json; "
        f"m = mlflow.pyfunc.load_model('models:/{MODEL}@challenger'); "
        f"print(json.dumps(m.predict(pd.read_parquet('{tmp_path}/rows.parquet'))['pd'].tolist()))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-6)


@pytest.fixture(scope="module")
def served(job, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with served_model(f"models:/{MODEL}@challenger", job[0], log) as url:
        yield url


def _post(url: str, frame: pd.DataFrame, params: dict | None = None) -> requests.Response:
    body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    return requests.post(url, json=body | ({"params": params} if params else {}), timeout=60)


def test_served_model_answers_pd_score_and_reasons_per_row(job, served):
    frame, expected = _example(job[1])
    r = _post(served, frame)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert [row["pd"] for row in rows] == pytest.approx(expected, abs=1e-6)
    odds = [(1 - p) / p for p in expected]  # good:bad; 600 points at 50:1, 20 to double
    assert [row["score"] for row in rows] == pytest.approx(
        [600 + 20 * math.log2(o / 50) for o in odds], abs=1e-6
    )
    features = set(frame.columns)
    for row in rows:  # default: 4 reasons, each a feature, its value and description, ranked
        named = [row[f"reason_{i}"] for i in range(1, 5) if row[f"reason_{i}"]]
        assert named and set(named) <= features and len(set(named)) == len(named)
        pushes = [row[f"reason_{i}_contribution"] for i in range(1, len(named) + 1)]
        assert all(c > 0 for c in pushes) and pushes == sorted(pushes, reverse=True)
        assert all(row[f"reason_{i}_value"] for i in range(1, len(named) + 1))
    two = _post(served, frame, params={"reasons": 2}).json()["predictions"]
    assert "reason_2" in two[0] and "reason_3" not in two[0]
    assert [row["reason_1"] for row in two] == [row["reason_1"] for row in rows]


def test_report_checks_monotone_directions_and_reasons(job):
    report = job[2]
    assert report["monotonicity"] and all(
        m["violations"] == 0 for m in report["monotonicity"].values()
    )
    assert report["explain"]["passed"] and report["explain"]["rows_checked"] > 0


def test_served_model_names_a_missing_column(job, served):
    frame, _ = _example(job[1])
    r = _post(served, frame.drop(columns="revenue"))
    assert 400 <= r.status_code < 500 and "revenue" in r.text


def test_served_model_names_a_wrongly_typed_column(job, served):
    frame, _ = _example(job[1])
    frame["late_tax_filings_12m"] = frame["late_tax_filings_12m"].astype(object)
    frame.loc[1, "late_tax_filings_12m"] = "many"
    r = _post(served, frame)
    assert r.status_code == 400 and "'late_tax_filings_12m'" in r.text and "row 1" in r.text


def test_integer_columns_as_pandas_reads_them_score_as_numbers(job, served):
    """A lender's CSV read by pandas has int64 columns, which MLflow refuses for a double input:
    over HTTP (JSON integers) and through ``mlflow.pyfunc.load_model`` they score as the same
    numbers would as doubles."""
    import mlflow

    frame, expected = _example(job[1])
    whole = [c for c in frame if frame[c].dtype.kind == "f" and (frame[c] % 1 == 0).all()]
    ints = frame.astype({c: "int64" for c in whole})
    assert whole, "the example rows have no integer-valued column"
    r = _post(served, ints)
    assert r.status_code == 200, r.text
    assert [row["pd"] for row in r.json()["predictions"]] == pytest.approx(expected, abs=1e-6)
    mlflow.set_tracking_uri(job[0])
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@challenger")
    assert model.predict(ints, params={"reasons": 0})["pd"].tolist() == pytest.approx(
        expected, abs=1e-6
    )


def test_artifacts_go_beside_a_sqlite_store_not_the_working_directory(tmp_path):
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    proc = run_job("debug=tiny", f"tracking.uri=sqlite:///{store}/mlflow.db", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = store / "mlruns"
    assert f"artifacts of new experiments in {root.as_uri()}" in proc.stdout + proc.stderr
    assert not (work / "mlruns").exists()
    assert any(root.rglob("bundle.json"))  # the logged model's files, beside the store
