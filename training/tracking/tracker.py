"""Experiment tracking, the one owner of MLflow: the store, runs, metrics, artifacts, the
logged model and the registry. Opened from ``cfg.tracking`` on the process that logs; every
other process gets the null ``Tracker``, which accepts each call and drops it.

A training job's run goes through its run folder's journal (``training/tracking/journal.py``): each call is
written there first and ``replay`` applies it to the store, at once when the store answers
(``tracking.mode: online``), later otherwise (``python -m jobs.sync``), so an outage of the
tracking server, or a compute node with no route to it, never stops training or loses a record.
Sweeps' parent runs and scoring runs talk to the store directly (``open_run``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from training.runtime.preemption import Preempted
from training.runtime.process import fail_fast_http, set_env
from training.tracking.config import TrackingConfig, refuse_password
from training.tracking.journal import Journal
from training.tracking.secrets import redact

if TYPE_CHECKING:
    import pandas as pd

    from training.data.schema import Schema

log = logging.getLogger("riskbrain")

DEFAULT_URI = "sqlite:///mlflow.db"  # embedded, in the working directory: no server needed
_PARAM_BATCH = 100  # MLflow's limit on params per log_batch call
_PARAM_MAX_CHARS = 6000


SQLITE = "sqlite:///"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a SQLite store's URI (as written: maybe relative); None for others."""
    return Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None


def tracking_uri(cfg: TrackingConfig) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in the working directory.

    A relative SQLite path is made absolute here, on the driver, so workers started in other
    folders (Ray, Slurm) write to the same store.
    """
    uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    refuse_password(uri, "tracking.uri" if cfg.uri else "MLFLOW_TRACKING_URI")
    if (db := sqlite_file(uri)) is not None and not db.is_absolute():
        uri = SQLITE + str(db.resolve())
    return uri


_PREPARED: set[str] = set()


def prepare_store(uri: str) -> None:
    """Create and migrate a new SQLite store once, under a file lock beside it.

    Jobs started together on a new store (a Slurm array, several users) would each create and
    migrate it at the same time, and most fail (``duplicate column name``); a server store needs
    nothing here.
    """
    if uri in _PREPARED or (db := sqlite_file(uri)) is None:
        return
    from mlflow import MlflowClient

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not db.exists():
            shutil.copyfile(empty_store(), db)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # the tracking tables
        client.search_registered_models(max_results=1)  # the registry's
    _PREPARED.add(uri)


def empty_store() -> Path:
    """A SQLite file holding MLflow's tables at this MLflow's schema and nothing else, made once
    per machine and MLflow version (in ``$RISKBRAIN_CACHE``) and copied for each new store.

    Creating the tables runs MLflow's whole chain of schema migrations, about 1 CPU-second, which
    every new store paid (every test, every user's first job); a copy takes milliseconds. MLflow
    fills in the rest (the Default experiment, with this store's artifact root) when it opens
    the copy, as it does for a store it created, and refuses a copy of another schema."""
    import mlflow
    import mlflow.store.db.utils as mlflow_db
    import sqlalchemy

    cache = Path(os.environ.get("RISKBRAIN_CACHE", Path(tempfile.gettempdir(), "riskbrain-cache")))
    path = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():  # made by another job while this one waited
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            engine = sqlalchemy.create_engine(SQLITE + str(tmp))
            mlflow_db._initialize_tables(engine)  # the tables, not the Default experiment
            engine.dispose()
            os.replace(tmp, path)  # a reader never sees half a file
    return path


def client_for(uri: str):
    """A client for the tracking store and registry at ``uri`` (a new SQLite store is made first)."""
    from mlflow import MlflowClient

    prepare_store(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(cfg: TrackingConfig) -> str:
    """Create the experiment once, from the driver, against the store itself; returns the store's URI.

    Done before workers start: processes that create a store or experiment at the same time
    collide, and a new experiment's artifact folder is resolved against the creating process's
    working directory (a Ray worker's is temporary) or routed through whatever server it used.
    """
    uri = tracking_uri(cfg)
    if cfg.mode == "offline":  # nothing is sent: jobs.sync creates it
        return uri
    _experiment_id(client_for(uri), cfg.experiment)
    return uri


def artifact_root(uri: str) -> str | None:
    """Where a SQLite store's artifacts go: ``mlruns/`` beside the database file, never the
    working directory of whichever job created the experiment (MLflow's default). A server
    store decides for itself (None)."""
    db = sqlite_file(uri)
    return (db.parent / "mlruns").as_uri() if db is not None else None


def _experiment_id(client, name: str) -> str:
    """The experiment's id, created if missing (by whichever of several processes gets there
    first); a SQLite store's new experiment keeps its artifacts beside the store."""
    if (found := client.get_experiment_by_name(name)) is not None:
        return found.experiment_id
    root = artifact_root(client.tracking_uri)
    try:
        return client.create_experiment(name, artifact_location=root and f"{root}/{quote(name)}")
    except Exception:  # noqa: BLE001 - created meanwhile by another job: read it back
        if (found := client.get_experiment_by_name(name)) is None:
            raise
        return found.experiment_id


def check_store(cfg: TrackingConfig) -> str:
    """Ask the store for one experiment (raises if it does not answer); returns its URI."""
    uri = tracking_uri(cfg)
    client_for(uri).search_experiments(max_results=1)
    return uri


class Tracker:
    """The null tracker: every call is accepted and dropped (ranks other than 0, tests)."""

    run_id: str | None = None  # the store's id of the run
    key: str | None = None  # a journaled run's own name, known before the store is reached

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, obj: dict, artifact_file: str) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_model(self, bundle_dir: Path, schema: Schema, example: pd.DataFrame) -> str | None:
        """Log the served model (``training/serving``) to this run; returns its model URI."""

    def register(
        self, model_uri: str, name: str, alias: str | None, tags: dict[str, str]
    ) -> int | str | None:
        """A new version of ``name``, with ``alias`` moved onto it unless None; returns the version."""

    def children(self) -> list[tuple[str, dict[str, str]]]:
        """(run id, tags) of this run's nested runs."""
        return []

    def end_child(self, run_id: str, status: str, tags: dict[str, str]) -> None:
        """Tag a nested run and set its final status (a sweep marks pruned trials)."""

    def fail(self, reason: str) -> None:
        """End the run FAILED now, from outside the block (a watchdog about to end the process)."""


@contextlib.contextmanager
def open_run(
    cfg: TrackingConfig,
    *,
    name: str,
    resume_id: str | None = None,
    parent_id: str | None = None,
    enabled: bool = True,
) -> Iterator[Tracker]:
    """An MLflow run for the block (a new one, or ``resume_id`` reopened), or the null tracker
    when not ``enabled`` (ranks other than 0).

    The run ends FAILED if the block raises, KILLED if it stopped on request (``Preempted``: it
    is reopened on resume), FINISHED otherwise.
    """
    if not enabled:
        yield Tracker()
        return
    import mlflow

    uri = tracking_uri(cfg)
    prepare_store(uri)
    # log_model and register_model act on the globals: point both at this run's store (an
    # unset registry URI would follow $MLFLOW_TRACKING_URI, which may be relative to elsewhere).
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # The id is passed on, not made active: processes creating the experiment at once must
    # not land a run in "Default".
    experiment_id = _experiment_id(client_for(uri), cfg.experiment)
    with mlflow.start_run(
        run_id=resume_id,
        experiment_id=experiment_id,
        run_name=None if resume_id else name,
        tags={"mlflow.parentRunId": parent_id} if parent_id and not resume_id else None,
        nested=parent_id is not None,  # the parent may be this process's active run (a sweep)
    ) as active:
        log.info(
            "mlflow run %s at %s%s",
            active.info.run_id,
            redact(uri),
            " (resumed)" if resume_id else "",
        )
        try:
            yield MlflowTracker(uri, active.info.run_id)
        except Preempted:
            mlflow.end_run("KILLED")
            raise


class MlflowTracker(Tracker):
    """Logs to one MLflow run through a client bound to the run's store; metrics in one batch per call."""

    def __init__(self, uri: str, run_id: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_PARAM_MAX_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _PARAM_BATCH], synchronous=True)

    def log_metrics(
        self, metrics: dict[str, float], step: int | None = None, ts: int | None = None
    ) -> None:
        from mlflow.entities import Metric

        ts = ts or int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, obj: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, obj, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(
            self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True
        )

    def log_model(self, bundle_dir: Path, schema: Schema, example: pd.DataFrame) -> str:
        """The pyfunc (runtime code only, bundle, signature, input example, pinned requirements)."""
        import mlflow

        from training.serving.package import pyfunc_model

        active = mlflow.active_run()
        reopen = active is None or active.info.run_id != self.run_id  # a replay: not the active run
        with tempfile.TemporaryDirectory(prefix="riskbrain-model-") as workdir:
            kwargs = pyfunc_model(bundle_dir, schema, example, Path(workdir))
            if not reopen:
                return mlflow.pyfunc.log_model(name="model", **kwargs).model_uri
            with mlflow.start_run(run_id=self.run_id, nested=True):
                uri = mlflow.pyfunc.log_model(name="model", **kwargs).model_uri
        self.client.update_run(
            self.run_id, "RUNNING"
        )  # leaving start_run ended it; its end record will
        return uri

    def register(
        self, model_uri: str, name: str, alias: str | None, tags: dict[str, str]
    ) -> int | str:
        """A new version of ``name`` from this run, or the one it already has (a replay registers once)."""
        import mlflow

        mine = self.client.search_model_versions(f"name = '{name}' and run_id = '{self.run_id}'")
        if mine:
            version = mine[0].version
        else:
            version = mlflow.register_model(model_uri, name, tags=tags).version
        if alias:
            self.client.set_registered_model_alias(name, alias, version)
        return version  # as the store gives it (a SQLite store: int; a server: str)

    def children(self) -> list[tuple[str, dict[str, str]]]:
        experiment = self.client.get_run(self.run_id).info.experiment_id
        runs = self.client.search_runs(
            [experiment], filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'"
        )
        return [(r.info.run_id, r.data.tags) for r in runs]

    def end_child(self, run_id: str, status: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.set_terminated(run_id, status)


BACKOFF_FIRST_S, BACKOFF_MAX_S = 5.0, 300.0


class JournalTracker(Tracker):
    """A training job's tracker (rank 0): each call is a journal record (``training/tracking/journal.py``),
    applied to the store at once when it answers (``tracking.mode: online``); when it does not,
    training goes on and the next call tries again after a back-off (5 s, doubling to 5 min).
    ``run_id`` is the store's id, once known; ``key`` names the run before that."""

    def __init__(self, journal: Journal, key: str, cfg: TrackingConfig, uri: str) -> None:
        self.journal, self.key, self.uri = journal, key, uri
        self.online = cfg.mode == "online"
        self._next_try, self._backoff, self._down = 0.0, BACKOFF_FIRST_S, False

    @property
    def run_id(self) -> str | None:
        return self.synced().get("run_id")

    def synced(self) -> dict:
        """What the store has of this run: ``run_id``, ``model_uri``, ``version``."""
        return self.journal.state()["runs"].get(self.key, {})

    def _append(self, op: str, **fields: Any) -> None:
        self.journal.append(op, self.key, **fields)
        self.flush()

    def log_params(self, params: dict[str, Any]) -> None:
        self._append("params", params={k: str(v)[:_PARAM_MAX_CHARS] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._append("metrics", metrics={k: float(v) for k, v in metrics.items()}, step=step or 0,
                     ts=int(time.time() * 1000))  # fmt: skip

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path).resolve()
        if not path.is_relative_to(self.journal.run_folder):  # may be gone by the time of a sync
            path = self.journal.keep_file(path, path.name)
        self._append("artifact", path=str(path.relative_to(self.journal.run_folder)),
                     artifact_path=artifact_path)  # fmt: skip

    def log_dict(self, obj: dict, artifact_file: str) -> None:
        self.journal.files.mkdir(parents=True, exist_ok=True)
        path = self.journal.files / Path(artifact_file).name
        path.write_text(json.dumps(obj, indent=2, default=str))
        self.log_artifact(path, str(Path(artifact_file).parent) if "/" in artifact_file else None)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._append("tags", tags={k: str(v) for k, v in tags.items()})

    def log_model(self, bundle_dir: Path, schema: Schema, example: pd.DataFrame) -> str | None:
        """The served model, built from the bundle in the run folder when the record is applied."""
        self.journal.files.mkdir(parents=True, exist_ok=True)
        example.to_parquet(self.journal.files / "input_example.parquet")  # dtypes kept, no pickle
        self._append(
            "model", bundle=str(Path(bundle_dir).resolve().relative_to(self.journal.run_folder))
        )
        return self.synced().get("model_uri")

    def register(
        self, model_uri: str | None, name: str, alias: str | None, tags: dict[str, str]
    ) -> int | str | None:
        """The registration is sent after the model; the version once the store has made it."""
        self._append("register", name=name, alias=alias, tags=tags)
        return self.synced().get("version")

    def end(self, status: str, reason: str | None = None) -> None:
        self.journal.append("end", self.key, status=status, reason=reason)

    def fail(self, reason: str) -> None:
        """End the run FAILED now, from outside the block (a watchdog about to end the process)."""
        self.end("FAILED", reason)
        self.flush()

    def flush(self, wait_s: float = 0.0) -> bool:
        """Apply what the store lacks; True once it has everything. Offline: nothing is sent."""
        if not self.online:
            return False
        deadline = time.monotonic() + wait_s
        while True:
            now = time.monotonic()
            if now >= self._next_try:
                try:
                    replay(self.journal, self.uri)
                except Exception as e:  # noqa: BLE001 - any failure: the store is down for now
                    self._failed(e)
                else:
                    if self._down:
                        log.info("tracking store %s answers again: journal applied", self.uri)
                    self._down, self._backoff = False, BACKOFF_FIRST_S
                    return True
            if self._next_try >= deadline:
                return False
            time.sleep(max(0.0, self._next_try - time.monotonic()))

    def _failed(self, e: Exception) -> None:
        if not self._down:
            log.warning(
                "tracking store %s did not answer (%s: %s); training goes on, records kept in %s",
                self.uri, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "",
                self.journal.path,
            )  # fmt: skip
        self._down = True
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(2 * self._backoff, BACKOFF_MAX_S)


@contextlib.contextmanager
def open_job_run(
    cfg: TrackingConfig, folder: Path, *, name: str, tags: dict[str, str],
    resume: dict | None = None, parent_id: str | None = None, enabled: bool = True,
) -> Iterator[Tracker]:  # fmt: skip
    """A training job's run, journaled in ``folder`` (the null tracker when not ``enabled``).

    A new run, or ``resume``'s (a checkpoint's ``run_key``, or the ``run_id`` of a checkpoint from
    before the journal). Runs a dead job left open in the folder are ended FAILED first. The run
    ends FAILED (with the error) if the block raises, KILLED if it stopped on request (``Preempted``:
    it is reopened on resume), FINISHED otherwise; at a FINISHED end an online job waits up to
    ``tracking.sync_timeout_s`` for a store that is down, then leaves the rest to ``jobs.sync``.
    """
    if not enabled:
        yield Tracker()
        return
    journal, uri = Journal(folder), tracking_uri(cfg)
    journal.lock()
    try:
        if cfg.mode == "online":  # a down server fails a request now, not after minutes of retries
            set_env(fail_fast_http(cfg.request_timeout_s))
        end_stale_runs(
            journal, f"the job died without ending the run (found by the next job in {folder})"
        )
        tracker = JournalTracker(
            journal, _start(journal, cfg, uri, name, tags, resume, parent_id), cfg, uri
        )
        tracker.flush()
        run = tracker.run_id or f"(not in the store yet; key {tracker.key})"
        log.info("mlflow run %s at %s (%s; journal %s)", run, redact(uri), cfg.mode, journal.path)
        if (root := artifact_root(uri)) is not None:
            log.info("artifacts of new experiments in %s", root)
        yield from _run_to_end(tracker, cfg)
    finally:
        journal.unlock()


def _start(
    journal: Journal, cfg: TrackingConfig, uri: str, name: str, tags: dict[str, str],
    resume: dict | None, parent_id: str | None,
) -> str:  # fmt: skip
    """The run's key: ``resume``'s run reopened, else a new run's start record."""
    key = resume and resume.get("run_key")
    if key and journal.knows(key):
        journal.append("resume", key)
        return key
    key = Journal.new_key()
    adopt = (
        resume and not resume.get("run_key") and resume.get("run_id")
    )  # a pre-journal checkpoint
    journal.append("start", key, uri=uri, experiment=cfg.experiment, name=name, tags=tags,
                   parent_id=parent_id, run_id=adopt or None)  # fmt: skip
    return key


def _run_to_end(tracker: JournalTracker, cfg: TrackingConfig) -> Iterator[Tracker]:
    try:
        yield tracker
    except Preempted:
        tracker.end("KILLED")
        tracker.flush()
        raise
    except BaseException as e:
        tracker.end("FAILED", f"{type(e).__name__}: {e}"[:500])
        tracker.flush()
        raise
    tracker.end("FINISHED")
    if not tracker.flush(wait_s=cfg.sync_timeout_s if tracker.online else 0):
        log.warning(
            "%d tracking records not in %s yet (%s): they are kept in %s; send them with: "
            "python -m jobs.sync %s", tracker.journal.pending(), tracker.uri,
            "offline" if not tracker.online else "store down", tracker.journal.path,
            tracker.journal.run_folder,
        )  # fmt: skip


def end_stale_runs(journal: Journal, reason: str) -> list[str]:
    """End FAILED every run a dead job left open in the journal (call with the lock held)."""
    stale = journal.stale_runs()
    for key in stale:
        journal.append("end", key, status="FAILED", reason=reason)
        log.warning("run %s was left open by a job that died: marked FAILED", key)
    return stale


def replay(journal: Journal, uri: str | None = None) -> dict:
    """Apply the journal's records the store lacks, in order, saving progress after each; returns
    what has been applied (``Journal.state``). Raises when the store fails: the next replay goes
    on from there. ``uri``: the store (default: the one the job was configured with)."""
    records, state = journal.records(), journal.state()
    if state["applied"] >= len(records):
        return state
    uri = uri or state.get("uri") or records[0]["uri"]
    if state.get("uri", uri) != uri:
        raise ValueError(f"{journal.path} was synced to {state['uri']}, not {uri}")
    import mlflow

    client = client_for(uri)
    mlflow.set_tracking_uri(uri)  # log_model and register_model act on the globals
    mlflow.set_registry_uri(uri)
    state["uri"] = uri
    for i in range(state["applied"], len(records)):
        record = records[i]
        run = state["runs"].setdefault(record["run"], {})
        _apply(client, uri, journal, record, run)
        state["applied"] = i + 1
        journal.save_state(state)
    return state


def _apply(client, uri: str, journal: Journal, r: dict, run: dict) -> None:
    """One record. Each is safe to apply twice (a crash between applying and saving progress)."""
    op = r["op"]
    if op == "start":
        run["run_id"] = run.get("run_id") or r["run_id"] or _create_run(client, r)
        return
    t = MlflowTracker(uri, run["run_id"])
    if op == "resume":
        client.update_run(t.run_id, "RUNNING")
    elif op == "params":
        t.log_params(r["params"])
    elif op == "metrics":
        t.log_metrics(r["metrics"], r["step"], r["ts"])
    elif op == "tags":
        t.set_tags(r["tags"])
    elif op == "artifact":
        t.log_artifact(journal.run_folder / r["path"], r["artifact_path"])
    elif op == "model" and "model_uri" not in run:
        run["model_uri"] = _log_model(t, journal, r)
    elif op == "register" and "version" not in run:
        run["version"] = t.register(
            run["model_uri"], r["name"], r["alias"], r["tags"] | {"run_id": t.run_id}
        )
        t.set_tags({"registered_model": f"{r['name']}/{run['version']}"})
    elif op == "end":
        if r.get("reason"):
            t.set_tags({"last_failure": r["reason"]})
        client.set_terminated(t.run_id, r["status"], end_time=int(r["time"] * 1000))


def _create_run(client, r: dict) -> str:
    """The store's run for a start record: found by its key if a replay created it before."""
    experiment = _experiment_id(client, r["experiment"])
    found = client.search_runs([experiment], filter_string=f"tags.run_key = '{r['run']}'")
    if found:
        return found[0].info.run_id
    tags = r["tags"] | {"run_key": r["run"]}
    if r.get("parent_id"):
        tags["mlflow.parentRunId"] = r["parent_id"]
    run = client.create_run(
        experiment, start_time=int(r["time"] * 1000), tags=tags, run_name=r["name"]
    )
    return run.info.run_id


def _log_model(t: MlflowTracker, journal: Journal, r: dict) -> str:
    import pandas as pd

    from training.serving.bundle import BUNDLE, schema_from_bundle

    bundle = journal.run_folder / r["bundle"]
    schema = schema_from_bundle(json.loads((bundle / BUNDLE).read_text()))
    example = pd.read_parquet(journal.files / "input_example.parquet")
    return t.log_model(bundle, schema, example)


def sync_folder(journal: Journal, uri: str | None, wait_s: float, reason: str) -> dict:
    """Send one run folder's journal to the store (``jobs.sync``, ``jobs.doctor --repair``).

    A folder whose job is alive (its lock is held) is left to that job. Runs its dead job left
    open are ended FAILED with ``reason`` first. Retries with back-off for ``wait_s``. Returns
    {"folder", "outcome": synced | running | failed, "runs": [...], "sent": records, "error"}.
    """
    out: dict[str, Any] = {"folder": str(journal.run_folder), "runs": [], "sent": 0}
    if not journal.try_lock():
        return out | {"outcome": "running"}
    try:
        end_stale_runs(journal, reason)
        before = journal.state()["applied"]
        deadline, backoff = time.monotonic() + wait_s, 2.0
        while True:
            try:
                state = replay(journal, uri)
                break
            except Exception as e:  # noqa: BLE001 - reported per folder; the next sync goes on
                if time.monotonic() + backoff > deadline:
                    return out | {"outcome": "failed", "error": f"{type(e).__name__}: {e}"[:300]}
                time.sleep(backoff)
                backoff = min(2 * backoff, BACKOFF_MAX_S)
    finally:
        journal.unlock()
    runs = list(state["runs"].values())
    return out | {"outcome": "synced", "runs": runs, "sent": state["applied"] - before}


def stale_runs_in_store(cfg: TrackingConfig) -> list[tuple[str, str | None]]:
    """(run id, run folder) of each RUNNING run of ``tracking.experiment`` whose job is not alive:
    its run folder's lock is free. Runs of folders not readable here are left out."""
    client = client_for(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        return []
    out = []
    for run in client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"):
        folder = run.data.tags.get("output_dir")
        journal = Journal(Path(folder)) if folder else None
        if journal is not None and journal.exists() and journal.try_lock():
            journal.unlock()
            out.append((run.info.run_id, folder))
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "l": [{"n": 2}]} -> {"a.b": 1, "l.0.n": 2}: one MLflow param per leaf."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list) and any(isinstance(v, dict | list) for v in tree):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def git_commit(repo: Path | None = None) -> str:
    """The commit the code was run from, with ``-dirty`` if the tree had uncommitted changes."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")
