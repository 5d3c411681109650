"""A card issuer's wide export, trained through the real entry point with one YAML data config
and no code: one row per client holding its last six monthly statements as columns (status,
bill, payment per month, as Taiwan's file does), read as a history (a source with ``columns``)
and no application date. The registered version, served over HTTP, takes the columns as the
file holds them and answers the PDs and reasons the job computed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from tests.conftest import run_job
from tests.integration.conftest import served_model

pytestmark = pytest.mark.slow

NAME = "cards"
MODEL = f"credit-risk-{NAME}"
MONTHS = 6

YAML = """\
    name: {name}
    format: csv
    root: {root}
    path: clients.csv
    target: default
    features:
      - {{name: limit, kind: numeric, source: bureau, description: credit limit}}
    sources:
      - name: statements
        windows: [3, 6]
        sequence: 6
        columns:
          status: [{status}]
          bill: [{bill}]
          paid: [{paid}]
        fields:
          - {{name: status, description: months late}}
          - {{name: bill, description: bill statement}}
          - {{name: paid, description: amount paid}}
    split:
      method: stratified
      train: 0.6
      valid: 0.2
      test: 0.2
"""


def _clients(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Clients whose default follows their lateness in the last three months, more than in the
    three before (a trend a history reads); payments cover part of each bill."""
    rng = np.random.default_rng(seed)
    risk = rng.gamma(1.0, 1.0, n)
    worsening = rng.random(n) < 0.3
    frame = pd.DataFrame({"client": np.arange(n), "limit": rng.integers(1, 50, n) * 10_000})
    for m in range(1, MONTHS + 1):
        late = rng.poisson(risk * np.where(worsening & (m <= 3), 2.0, 0.5))
        frame[f"status_{m}"] = np.minimum(late, 8) - (late == 0) * rng.integers(0, 3, n)
        frame[f"bill_{m}"] = rng.gamma(2.0, 20_000, n).round(0)
        frame[f"paid_{m}"] = (frame[f"bill_{m}"] * rng.uniform(0, 1, n)).round(0)
    recent = frame[[f"status_{m}" for m in (1, 2, 3)]].clip(lower=0).sum(axis=1)
    logit = -2.2 + 0.5 * recent.to_numpy()
    frame["default"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


@pytest.fixture(scope="module")
def job(mlflow_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cards")
    clients = _clients()
    clients.to_csv(folder / "clients.csv", index=False)
    columns = {k: ", ".join(f"{k}_{m}" for m in range(1, MONTHS + 1))
               for k in ("status", "bill", "paid")}  # fmt: skip
    (folder / "configs" / "data").mkdir(parents=True)
    (folder / "configs" / "data" / f"{NAME}.yaml").write_text(
        textwrap.dedent(YAML).format(name=NAME, root=folder, **columns)
    )
    proc = run_job(
        f"hydra.searchpath=[file://{folder}/configs]", f"data={NAME}", "debug=tiny",
        "trainer.max_epochs=8", "benchmark.enabled=true", "benchmark.n_trials=2",
        cwd=folder, env={"MLFLOW_TRACKING_URI": mlflow_server}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = folder / "outputs" / "run"
    return mlflow_server, out, json.loads((out / "evaluation.json").read_text()), clients


def test_the_wide_file_trains_on_its_statements_as_a_history(job):
    *_, out, report, clients = job
    assert report["data"]["sources"] == {"statements": {
        "events": len(clients) * MONTHS, "keys": len(clients), "keys_without_loans": 0,
        "loans": len(clients), "loans_without_events": 0}}  # fmt: skip
    assert report["data"]["unused_columns"] == ["client"]  # the statements' columns are read
    assert 0.65 < report["test"]["auc"] <= 1 and 0.65 < report["benchmark"]["test"]["auc"] <= 1
    columns = json.loads((out / "example_predictions.json").read_text())["columns"]
    assert {"statements.status.max_3m", "statements.bill.slope_6m", "statements.paid.last",
            "statements.status@1", "statements.age@6"} <= set(columns)  # fmt: skip


def test_the_served_version_takes_the_columns_and_answers_what_the_job_computed(
    job, tmp_path_factory
):
    uri, out, report, clients = job
    ex = json.loads((out / "example_predictions.json").read_text())
    wide = [f"{k}_{m}" for k in ("status", "bill", "paid") for m in range(1, MONTHS + 1)]
    inputs = pd.DataFrame(ex["data"], columns=ex["columns"])
    # the example rows, found in the file by their inputs, sent as the file holds them
    rows = [
        clients[(clients["limit"] == r["limit"]) & (clients["status_1"] == r["statements.status@1"])
                & (clients["bill_1"] == r["statements.bill@1"])].iloc[0]
        for _, r in inputs.iterrows()
    ]  # fmt: skip
    records = [{"limit": int(r["limit"]), **{c: int(r[c]) for c in wide}} for r in rows]
    records[0]["bill_2"] = None  # a missing statement is a valid request
    log = Path(tmp_path_factory.mktemp("serve")) / "serve.log"
    model = f"models:/{MODEL}/{report['registered']['version']}"
    with served_model(model, uri, log) as url:
        answer = requests.post(url, json={"dataframe_records": records}, timeout=60)
        assert answer.status_code == 200, answer.text
        got = answer.json()["predictions"]
        lacking = requests.post(url, json={"dataframe_records": [
            {k: v for k, v in records[1].items() if k != "paid_6"}]}, timeout=60)  # fmt: skip
    assert [g["pd"] for g in got[1:]] == pytest.approx(ex["pd"][1 : len(got)], abs=1e-6)
    assert 0 < got[0]["pd"] < 1
    reasons = [g[f"reason_{i}"] for g in got for i in range(1, 4) if g.get(f"reason_{i}")]
    assert any(r.startswith("statements.") for r in reasons), reasons
    assert lacking.status_code >= 400 and "paid_6" in lacking.text
