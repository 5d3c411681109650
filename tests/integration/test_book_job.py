"""A lender's book of three tables, trained through the real entry point with one YAML data config
and no code: the loan table (dates as dd/mm/yyyy text, a text target), a static side table of
branches joined one-to-one, and a repayment history whose recent late days carry the risk. The
registered version, served over HTTP, takes each loan's events as a list and answers the PDs the
job computed; events dated on or after an application date change nothing; a repeated side-table
key is one error naming the table, the key and ``keep``."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from tests.conftest import run_job
from tests.integration.conftest import served_model

pytestmark = pytest.mark.slow

NAME = "lenderbook"
MODEL = f"credit-risk-{NAME}"
SOURCE = "repayments"

YAML = """\
    name: {name}
    format: csv
    root: {root}
    path: loans.csv
    target: status
    positive_label: bad
    application_date: applied
    application_date_format: "%d/%m/%Y"
    features:
      - {{name: amount, kind: numeric, source: application, description: amount asked for}}
      - {{name: term, kind: numeric, source: application, description: term in months}}
    tables:
      - name: branches
        path: branches.csv
        key: branch_id
        features:
          - {{name: region, kind: categorical, source: operations, description: the branch's region}}
          - {{name: staff, kind: numeric, source: operations, description: the branch's staff}}
    sources:
      - name: repayments
        path: repayments.csv
        key: customer_id
        time: paid_on
        source: bureau
        windows: [3, 12]
        fields:
          - {{name: days_late, kind: numeric, description: days the repayment was late}}
          - {{name: amount, kind: numeric, description: amount repaid}}
          - {{name: channel, kind: categorical, description: how it was paid}}
    split:
      method: stratified
      train: 0.6
      valid: 0.2
      test: 0.2
"""

# A small job: the tiny model and data, a few epochs, the LightGBM benchmark on (2 settings).
FAST = ("debug=tiny", "trainer.max_epochs=8", "benchmark.enabled=true", "benchmark.n_trials=2")


def _book(n: int = 1200, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The export's three tables. Each customer has one loan; one in ten has no repayments; the
    others' repayments in the 6 months before the application are late in proportion to a
    lateness that drives the default rate (the flat features carry almost nothing)."""
    rng = np.random.default_rng(seed)
    app = pd.Timestamp("2020-06-01") + pd.to_timedelta(rng.integers(0, 730, n), unit="D")
    lateness = rng.gamma(1.0, 4.0, n)
    has = rng.random(n) > 0.1
    term = rng.choice([12, 24, 36, 60], n)
    logit = -2.5 + 0.35 * np.where(has, lateness, 2.0) + 0.1 * (term == 60)
    bad = rng.random(n) < 1 / (1 + np.exp(-logit))
    customers = np.array([f"C{i:05d}" for i in range(n)])
    loans = pd.DataFrame(
        {
            "loan_id": 1000 + np.arange(n),
            "customer_id": customers,
            "branch_id": [f"B{b:02d}" for b in rng.integers(0, 13, n)],  # B12: not in branches
            "applied": app.strftime("%d/%m/%Y"),
            "amount": rng.uniform(1e3, 5e4, n).round(2),
            "term": term,
            "status": np.where(bad, "bad", "good"),
        }
    )
    branches = pd.DataFrame(
        {
            "branch_id": [f"B{b:02d}" for b in range(12)],
            "region": np.resize(["north", "south", "east"], 12),
            "staff": rng.integers(3, 40, 12),
        }
    )
    who = np.repeat(np.flatnonzero(has), rng.integers(3, 20, int(has.sum())))
    days_ago = rng.integers(1, 700, len(who))
    recent = days_ago < 180
    repayments = pd.DataFrame(
        {
            "customer_id": customers[who],
            "paid_on": (app[who] - pd.to_timedelta(days_ago, unit="D")).strftime("%Y-%m-%d"),
            "days_late": rng.poisson(lateness[who] * np.where(recent, 3.0, 0.3)),
            "amount": rng.uniform(50, 900, len(who)).round(2),
            "channel": rng.choice(["app", "branch", "transfer"], len(who), p=[0.6, 0.25, 0.15]),
        }
    ).sample(frac=1, random_state=seed)  # in no order, as exports are
    return {"loans": loans, "branches": branches, "repayments": repayments}


def _write(folder: Path, tables: dict[str, pd.DataFrame], yaml: str = YAML) -> None:
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    (folder / "configs" / "data").mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "data" / f"{NAME}.yaml").write_text(
        textwrap.dedent(yaml).format(name=NAME, root=folder)
    )


def _job(folder: Path, *overrides: str, env: dict | None = None):
    proc = run_job(
        f"hydra.searchpath=[file://{folder}/configs]",
        f"data={NAME}",
        *FAST,
        *overrides,
        cwd=folder,
        env=env,
        timeout=300,
    )
    out = folder / "outputs" / "run"
    report = out / "evaluation.json"
    return (
        proc,
        proc.stdout + proc.stderr,
        json.loads(report.read_text()) if report.exists() else None,
    )


@pytest.fixture(scope="module")
def job(mlflow_server, tmp_path_factory):
    """The clean book trained into the server: (uri, folder, output dir, report, tables, log)."""
    folder = tmp_path_factory.mktemp("book")
    tables = _book()
    _write(folder, tables)
    proc, log, report = _job(folder, env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert proc.returncode == 0, log[-4000:]
    return mlflow_server, folder, folder / "outputs" / "run", report, tables, log


@pytest.fixture(scope="module")
def example(job, tmp_path_factory) -> pd.DataFrame:
    """The request rows the registered version was logged with (its input example)."""
    import mlflow

    uri, *_, report, _, _ = job
    mlflow.set_tracking_uri(uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{MODEL}/{report['registered']['version']}",
        dst_path=str(tmp_path_factory.mktemp("model")),
    )
    ex = json.loads((Path(local) / "input_example.json").read_text())
    return pd.DataFrame(ex["data"], columns=ex["columns"])


@pytest.fixture(scope="module")
def served(job, tmp_path_factory):
    uri, *_, report, _, _ = job
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with served_model(f"models:/{MODEL}/{report['registered']['version']}", uri, log) as url:
        yield url


def _events_read(log: str) -> int:
    """The events of the book's 1200 loans the job says DuckDB read."""
    found = re.findall(rf"source {SOURCE}: (\d+) events of \D*1200 loans read", log)
    assert len(found) == 1, log[-3000:]
    return int(found[0])


def _post(url: str, records: list[dict]) -> list[dict]:
    r = requests.post(url, json={"dataframe_records": records}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _events(tables: dict[str, pd.DataFrame], customer: str) -> list[dict]:
    """A customer's repayments as a request carries them: a list of objects, the file's values."""
    ev = tables["repayments"]
    return ev[ev["customer_id"] == customer].drop(columns="customer_id").to_dict("records")


def _request(tables: dict[str, pd.DataFrame], loan: pd.Series) -> dict:
    """A loan as a caller sends it: its flat fields, its branch's, its date and its events."""
    b = tables["branches"].set_index("branch_id")
    known = loan["branch_id"] in b.index
    return {
        "amount": float(loan["amount"]),
        "term": float(loan["term"]),
        "region": b.loc[loan["branch_id"], "region"] if known else None,
        "staff": float(b.loc[loan["branch_id"], "staff"]) if known else None,
        "applied": loan["applied"],
        SOURCE: _events(tables, loan["customer_id"]),
    }


def test_the_book_trains_on_its_history_and_registers_a_version(job):
    *_, out, report, tables, log = job
    assert report["data"]["rows"] == 1200
    assert report["data"]["unused_columns"] == ["loan_id", "customer_id", "branch_id"]
    assert _events_read(log) == len(tables["repayments"])  # every loan's, none lost
    assert "table branches:" in log and "have no row" in log  # branch B12 is not in the table
    # the report counts the source over every loan: here every payer has a loan, and a loan has
    # no history when its customer never paid or paid only more than 12 months before
    loans, paid = tables["loans"], tables["repayments"]
    app = pd.to_datetime(loans.set_index("customer_id")["applied"], format="%d/%m/%Y")
    when = pd.to_datetime(paid["paid_on"]) - app.loc[paid["customer_id"]].to_numpy()
    seen = paid["customer_id"][(when < pd.Timedelta(0)).to_numpy() & (
        pd.to_datetime(paid["paid_on"]).to_numpy()
        >= (app.loc[paid["customer_id"]] - pd.DateOffset(months=12)).to_numpy())]  # fmt: skip
    assert report["data"]["sources"] == {SOURCE: {
        "events": len(paid), "keys": paid["customer_id"].nunique(), "keys_without_loans": 0,
        "loans": 1200, "loans_without_events": 1200 - seen.nunique()}}  # fmt: skip
    # the signal lives in the repayments: both the network and LightGBM find it
    assert 0.65 < report["test"]["auc"] <= 1 and 0.65 < report["benchmark"]["test"]["auc"] <= 1
    assert report["registered"]["name"] == MODEL and report["registered"]["version"] is not None
    columns = json.loads((out / "example_predictions.json").read_text())["columns"]
    assert columns[:4] == ["amount", "term", "region", "staff"]
    assert {f"{SOURCE}.count_3m", f"{SOURCE}.days_late.max_3m", f"{SOURCE}.months_since_last",
            f"{SOURCE}.channel=app.count_12m", f"{SOURCE}.days_late.last"} <= set(columns)  # fmt: skip


def test_the_history_features_count_only_events_before_the_application(job, example):
    """The job's inputs for its example loans, recomputed here from the tables with pandas."""
    *_, out, _, tables, _ = job
    ex = json.loads((out / "example_predictions.json").read_text())
    inputs = pd.DataFrame(ex["data"], columns=ex["columns"])
    loans, ev = tables["loans"], tables["repayments"]
    for i, row in example.iterrows():
        loan = loans[(loans["amount"] == row["amount"]) & (loans["applied"] == row["applied"])]
        assert len(loan) == 1
        app = pd.to_datetime(loan["applied"].iloc[0], format="%d/%m/%Y")
        mine = ev[ev["customer_id"] == loan["customer_id"].iloc[0]]
        t = pd.to_datetime(mine["paid_on"])
        last_3m = mine[(t < app) & (t >= app - pd.DateOffset(months=3))]
        last_12m = mine[(t < app) & (t >= app - pd.DateOffset(months=12))]
        assert inputs.loc[i, f"{SOURCE}.count_12m"] == len(last_12m)
        assert inputs.loc[i, f"{SOURCE}.days_late.sum_3m"] == last_3m["days_late"].sum()
        assert inputs.loc[i, f"{SOURCE}.amount.sum_12m"] == pytest.approx(
            last_12m["amount"].sum(), abs=1e-6
        )


def test_the_served_version_scores_loans_from_their_event_lists(job, example, served):
    *_, out, _, tables, _ = job
    ex = json.loads((out / "example_predictions.json").read_text())
    assert len(example) == len(ex["pd"]) >= 2
    assert set(example.columns) == {"amount", "term", "region", "staff", "applied", SOURCE}
    records = example.to_dict("records")
    for i, r in enumerate(records):  # the events as JSON text, or as a list of objects
        r[SOURCE] = json.loads(r[SOURCE]) if i % 2 else r[SOURCE]
    rows = _post(served, records)
    # the PDs the training process computed for the same loans
    assert [row["pd"] for row in rows] == pytest.approx(ex["pd"], abs=1e-6)
    odds = [(1 - p) / p for p in ex["pd"]]  # good:bad; 600 points at 50:1, 20 to double
    assert [row["score"] for row in rows] == pytest.approx(
        [600 + 20 * math.log2(o / 50) for o in odds], abs=1e-6
    )
    # loans put together here from the tables: a borrower with no events, and two with
    loans = tables["loans"]
    customers = set(tables["repayments"]["customer_id"])
    none = loans[~loans["customer_id"].isin(customers)].iloc[0]
    some = loans[loans["customer_id"].isin(customers)].iloc[:2]
    built = [_request(tables, none), *(_request(tables, loan) for _, loan in some.iterrows())]
    assert built[0][SOURCE] == [] and built[1][SOURCE]
    built[2][SOURCE] = json.dumps(built[2][SOURCE])
    answers = _post(served, built)
    features = set(ex["columns"])
    named = []
    for row in rows + answers:
        assert 0 < row["pd"] < 1 and math.isfinite(row["score"])
        reasons = [row[f"reason_{i}"] for i in range(1, 5) if row[f"reason_{i}"]]
        assert reasons and set(reasons) <= features
        named += reasons
    assert any(n.startswith(f"{SOURCE}.") for n in named), named  # the history is a reason


def test_events_on_or_after_the_application_date_change_nothing(job, tmp_path):
    """The same loans with, for each, events dated on its application date and after that match
    its label (defaulters a year late): the same inputs, so the same model and numbers."""
    *_, out, report, tables, _ = job
    loans = tables["loans"]
    app = pd.DatetimeIndex(pd.to_datetime(loans["applied"], format="%d/%m/%Y"))
    bad = (loans["status"] == "bad").to_numpy()
    after = np.array([0, 0, 1, 20, 95, 400])  # days after the application: on it, and later
    n, k = len(loans), len(after)
    planted = pd.DataFrame(
        {
            "customer_id": np.repeat(loans["customer_id"].to_numpy(), k),
            "paid_on": (app.repeat(k) + pd.to_timedelta(np.tile(after, n), unit="D")).strftime(
                "%Y-%m-%d"
            ),
            "days_late": np.repeat(np.where(bad, 365, 0), k),
            "amount": np.repeat(np.where(bad, 99999.0, 1.0), k),
            # a value no event before an application has: it must not become an input
            "channel": np.repeat(np.where(bad, "collections", "app"), k),
        }
    )
    clean = tables["repayments"]
    # spread through the file, each table's own rows in their order
    at = np.concatenate(
        [np.arange(len(clean)), np.random.default_rng(1).uniform(0, len(clean), len(planted))]
    )
    leaky = pd.concat([clean, planted]).iloc[np.argsort(at, kind="stable")]
    _write(tmp_path, {**tables, "repayments": leaky})
    proc, log, leaked = _job(tmp_path, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == 0, log[-4000:]
    assert _events_read(log) == len(leaky)  # the planted events were read, and left out
    inputs = json.loads((out / "example_predictions.json").read_text())
    again = json.loads((tmp_path / "outputs" / "run" / "example_predictions.json").read_text())
    assert again["columns"] == inputs["columns"] and again == inputs  # same inputs, same PDs
    assert leaked["data_fingerprint"] == report["data_fingerprint"]
    assert leaked["test"]["auc"] == report["test"]["auc"]
    assert leaked["benchmark"]["test"]["auc"] == report["benchmark"]["test"]["auc"]


def test_a_side_table_that_repeats_a_key_is_one_clear_error(tmp_path):
    tables = _book(300)
    b = tables["branches"]
    tables["branches"] = pd.concat([b, b.iloc[[3]].assign(staff=99)])  # B03 twice
    _write(tmp_path, tables)
    proc, log, _ = _job(tmp_path, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == 2, log[-4000:]
    assert "'branches'" in log and "'branch_id'" in log and "'B03'" in log, log[-3000:]
    assert "data.tables[0].keep=first" in log, log[-3000:]
    assert "Traceback" not in log
    assert not (tmp_path / "mlflow.db").exists()  # nothing logged, nothing registered


def test_jobs_score_scores_a_book_of_event_lists_with_rejects_and_history_drift(
    job, example, tmp_path
):
    """A portfolio whose source column holds each borrower's events as JSON text, scored by
    ``jobs.score``: the rows as the served model answers them, a row whose events are not a list
    rejected naming the column, and drift measured on the computed history inputs too."""
    uri, version = job[0], job[3]["registered"]["version"]
    rows = pd.concat([example] * 4, ignore_index=True)
    rows.loc[3, "repayments"] = "not json"
    rows.to_csv(tmp_path / "portfolio.csv", index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.score", f"model=models:/{MODEL}/{version}",
         f"input={tmp_path}/portfolio.csv", f"output={tmp_path}/scores", f"tracking_uri={uri}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "scores.summary.json").read_text())
    assert summary["rows_scored"] == len(rows) - 1 and summary["rows_rejected"] == 1, (
        summary["rejected_by_column"],
        proc.stdout[-3000:],
    )
    rejects = pd.concat(map(pd.read_csv, sorted((tmp_path / "scores.rejects").glob("*.csv"))))
    assert rejects["column"].tolist() == ["repayments"] and rejects["row"].tolist() == [3]
    assert any(name.startswith("repayments.") for name in summary["feature_psi"])
    scores = pd.read_parquet(tmp_path / "scores").set_index("row")["pd"]
    n = len(example)  # each copy of the example scores alike (row 3, rejected, aside)
    assert np.allclose(scores.loc[n : 2 * n - 1], scores.loc[2 * n : 3 * n - 1], atol=1e-9)
    assert np.allclose(scores.loc[[0, 1, 2]], scores.loc[[n, n + 1, n + 2]], atol=1e-9)
