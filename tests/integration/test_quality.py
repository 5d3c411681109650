"""The shipped configs reach the promised quality: near the Bayes-optimal AUC, and >= 0.77 on Taiwan."""

from __future__ import annotations

import json

import pytest

from tests.conftest import needs_data, run_job

pytestmark = pytest.mark.slow


def _report(tmp_path, *overrides: str) -> dict:
    proc = run_job(*overrides, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((tmp_path / "outputs" / "run" / "evaluation.json").read_text())


def test_default_job_is_within_002_of_the_bayes_optimal_auc(tmp_path):
    report = _report(tmp_path)
    assert report["bayes_auc_test"] - report["test"]["auc"] <= 0.02, report["test"]
    assert report["registered"]["alias"] == "challenger"


def test_taiwan_reaches_077(tmp_path):
    needs_data("taiwan_default/UCI_Credit_Card.csv")
    assert _report(tmp_path, "data=taiwan")["test"]["auc"] >= 0.77
