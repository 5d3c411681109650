"""The run folder's tracking journal: what a dead job left open, replay to a real SQLite MLflow
store once and only once, a replay cut short going on where it stopped, the folder lock."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from training.errors import ConfigError
from training.tracking.config import TrackingConfig
from training.tracking.journal import Journal, find_journals
from training.tracking.tracker import open_job_run, replay, sync_folder


def _journal(tmp_path, uri: str) -> tuple[Journal, str]:
    journal, key = Journal(tmp_path / "run"), Journal.new_key()
    journal.append("start", key, uri=uri, experiment="exp", name="n", tags={"a": "1"},
                   parent_id=None, run_id=None)  # fmt: skip
    journal.append("params", key, params={"lr": "0.001"})
    for epoch in (1, 2, 3):
        journal.append("metrics", key, metrics={"auc": 0.5 + epoch / 10}, step=epoch, ts=epoch)
    return journal, key


def test_a_run_without_its_end_is_stale_until_ended(tmp_path):
    journal, key = _journal(tmp_path, "sqlite:///x.db")
    assert journal.stale_runs() == [key]
    journal.append("end", key, status="KILLED")
    assert journal.stale_runs() == []
    journal.append("resume", key)  # reopened by a resumed job: open again
    assert journal.stale_runs() == [key]


def test_replay_applies_each_record_once(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    journal, key = _journal(tmp_path, uri)
    journal.append("end", key, status="FINISHED")
    state = replay(journal)
    assert state["applied"] == len(journal.records()) and journal.pending() == 0
    client = MlflowClient(uri, uri)
    run = client.get_run(state["runs"][key]["run_id"])
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.001"}
    assert run.data.tags["run_key"] == key and run.data.tags["a"] == "1"

    replay(journal)  # nothing new: nothing sent
    state2 = dict(journal.state())
    state2["applied"] = 0  # even a lost record of progress creates no second run
    journal.save_state(state2)
    replay(journal)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert len(runs) == 1
    assert [m.step for m in client.get_metric_history(run.info.run_id, "auc")] == [1, 2, 3]


def test_a_replay_cut_short_goes_on_where_it_stopped(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    journal, key = _journal(tmp_path, uri)
    journal.append("artifact", key, path="missing.txt", artifact_path=None)  # fails: no file
    journal.append("end", key, status="FINISHED")
    with pytest.raises(Exception):  # noqa: B017 - whatever MLflow raises for a missing file
        replay(journal)
    assert journal.pending() == 2  # the artifact and the end wait
    (journal.run_folder / "missing.txt").write_text("here now")
    replay(journal)
    run = MlflowClient(uri, uri).get_run(journal.state()["runs"][key]["run_id"])
    assert run.info.status == "FINISHED" and journal.pending() == 0


def test_the_next_job_in_a_folder_ends_a_dead_jobs_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    journal, key = _journal(tmp_path, uri)  # a job that died: no end record
    cfg = TrackingConfig(uri=uri, experiment="exp", mode="offline")
    with open_job_run(cfg, journal.run_folder, name="n", tags={}) as tracker:
        assert tracker.key != key
        with pytest.raises(ConfigError, match="another job"):  # one live job per folder
            Journal(journal.run_folder).lock()
    ends = [r for r in journal.records() if r["op"] == "end"]
    assert [(r["run"], r["status"]) for r in ends] == [(key, "FAILED"), (tracker.key, "FINISHED")]
    assert "found by the next job" in ends[0]["reason"]

    result = sync_folder(find_journals(tmp_path)[0], None, 0, "unused")
    assert result["outcome"] == "synced" and len(result["runs"]) == 2
    client = MlflowClient(uri, uri)
    statuses = {client.get_run(r["run_id"]).info.status for r in result["runs"]}
    assert statuses == {"FAILED", "FINISHED"}


def test_offline_rejects_nothing_and_sends_nothing(tmp_path):
    cfg = TrackingConfig(uri="http://127.0.0.1:9", experiment="exp", mode="offline")
    with open_job_run(cfg, tmp_path / "run", name="n", tags={}) as tracker:
        tracker.log_metrics({"auc": 0.7}, step=1)
        assert tracker.run_id is None  # never contacted the (unreachable) server
    assert Journal(tmp_path / "run").pending() == 3  # start, metrics, end: none sent


def test_tracking_mode_is_checked():
    with pytest.raises(ConfigError, match="tracking.mode"):
        TrackingConfig(mode="later")


def test_a_new_store_is_a_copy_of_one_migrated_once(tmp_path, monkeypatch):
    import mlflow.store.db.utils as db_utils

    from training.tracking import tracker

    monkeypatch.setenv("RISKBRAIN_CACHE", str(tmp_path / "cache"))
    migrations = []
    real = db_utils._initialize_tables
    monkeypatch.setattr(db_utils, "_initialize_tables", lambda e: migrations.append(1) or real(e))
    itself = f"sqlite:///{tmp_path}/itself.db"
    as_made_by_mlflow = MlflowClient(itself, itself).get_experiment("0").artifact_location
    migrations.clear()
    for name in ("a", "b"):
        uri = f"sqlite:///{tmp_path}/{name}/mlflow.db"
        client = tracker.client_for(uri)
        client.create_experiment("exp")
        # MLflow made this store's own Default experiment when it opened the copy, as it does
        # for a store it creates itself (artifacts under ./mlruns), not the template's
        assert client.get_experiment("0").artifact_location == as_made_by_mlflow
        assert [e.name for e in client.search_experiments()] == ["exp", "Default"]
    assert migrations == [1]  # the template's; the second store was a copy
    assert len(list((tmp_path / "cache").glob("mlflow-*-empty.db"))) == 1
