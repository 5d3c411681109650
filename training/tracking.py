"""Experiment tracking, the one owner of MLflow: the store, runs, metrics, artifacts, the
logged model and the registry. Opened from ``cfg.tracking`` on the process that logs; every
other process gets the null ``Tracker``, which accepts each call and drops it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import TrackingConfig
from training.preemption import Preempted

if TYPE_CHECKING:
    import pandas as pd

    from training.data.schema import Schema

log = logging.getLogger("riskbrain")

DEFAULT_URI = "sqlite:///mlflow.db"  # embedded, in the working directory: no server needed
_PARAM_BATCH = 100  # MLflow's limit on params per log_batch call
_PARAM_MAX_CHARS = 6000


def tracking_uri(cfg: TrackingConfig) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in the working directory.

    A relative SQLite path is made absolute here, on the driver, so workers started in other
    folders (Ray, Slurm) write to the same store.
    """
    uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def ensure_experiment(cfg: TrackingConfig) -> str:
    """Create the experiment once, from the driver, against the store itself; returns the store's URI.

    Done before workers start: processes that create a store or experiment at the same time
    collide, and a new experiment's artifact folder is resolved against the creating process's
    working directory (a Ray worker's is temporary) or routed through whatever server it used.
    """
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    client = MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(cfg.experiment) is None:
        client.create_experiment(cfg.experiment)
    return uri


def check_store(cfg: TrackingConfig) -> str:
    """Ask the store for one experiment (raises if it does not answer); returns its URI."""
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    return uri


class Tracker:
    """The null tracker: every call is accepted and dropped (ranks other than 0, tests)."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, obj: dict, artifact_file: str) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_model(self, bundle_dir: Path, schema: Schema, example: pd.DataFrame) -> str | None:
        """Log the served model (``training/serving``) to this run; returns its model URI."""

    def register(
        self, model_uri: str, name: str, alias: str | None, tags: dict[str, str]
    ) -> str | None:
        """A new version of ``name``, with ``alias`` moved onto it unless None; returns the version."""

    def children(self) -> list[tuple[str, dict[str, str]]]:
        """(run id, tags) of this run's nested runs."""
        return []

    def end_child(self, run_id: str, status: str, tags: dict[str, str]) -> None:
        """Tag a nested run and set its final status (a sweep marks pruned trials)."""


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
    # log_model and register_model act on the globals: point both at this run's store (an
    # unset registry URI would follow $MLFLOW_TRACKING_URI, which may be relative to elsewhere).
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # Pass the id on: when processes create the experiment at once, MLflow's set_experiment
    # returns it without making it active, and the run would land in "Default".
    experiment = mlflow.set_experiment(cfg.experiment)
    with mlflow.start_run(
        run_id=resume_id,
        experiment_id=experiment.experiment_id,
        run_name=None if resume_id else name,
        tags={"mlflow.parentRunId": parent_id} if parent_id and not resume_id else None,
        nested=parent_id is not None,  # the parent may be this process's active run (a sweep)
    ) as active:
        log.info(
            "mlflow run %s at %s%s", active.info.run_id, uri, " (resumed)" if resume_id else ""
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

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
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

        with tempfile.TemporaryDirectory(prefix="riskbrain-model-") as workdir:
            kwargs = pyfunc_model(bundle_dir, schema, example, Path(workdir))
            return mlflow.pyfunc.log_model(name="model", **kwargs).model_uri

    def register(self, model_uri: str, name: str, alias: str | None, tags: dict[str, str]) -> str:
        import mlflow

        version = mlflow.register_model(model_uri, name, tags=tags).version
        if alias:
            self.client.set_registered_model_alias(name, alias, version)
        return version

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
    repo = repo or Path(__file__).resolve().parents[1]
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
