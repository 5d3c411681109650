"""Experiment tracking: an MLflow tracker for the process that logs, a null tracker elsewhere."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from training.config import TrackingConfig

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


class Tracker:
    """The null tracker: every call is accepted and dropped (other ranks, tests)."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...


NullTracker = Tracker


class MlflowTracker(Tracker):
    """Logs to one MLflow run through the client; metrics go in one batch per call."""

    def __init__(self, run_id: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient()
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

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(
            self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True
        )


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
