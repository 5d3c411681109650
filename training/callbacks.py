"""Hydra callbacks (run by Hydra around jobs and multiruns; see ``hydra.callbacks`` in train.yaml)."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from training.config import TrackingConfig
from training.tracking import tracking_uri


class CreateStoreBeforeSweep(Callback):
    """Create a SQLite store and the experiment once, before a multirun's jobs start: jobs that
    create a fresh SQLite store at the same time collide ("duplicate column name")."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = tracking_uri(TrackingConfig(uri=config.tracking.uri))
        if uri.startswith("sqlite:"):
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            if client.get_experiment_by_name(config.tracking.experiment) is None:
                client.create_experiment(config.tracking.experiment)
