"""Hydra callbacks (run by Hydra around jobs and multiruns; see ``hydra.callbacks`` in train.yaml)."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from training.tracking.config import TrackingConfig
from training.tracking.tracker import ensure_experiment, tracking_uri


class CreateStoreBeforeSweep(Callback):
    """Create a SQLite store and the experiment once, before a multirun's jobs start: jobs that
    create a fresh SQLite store at the same time collide ("duplicate column name")."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        cfg = TrackingConfig(uri=config.tracking.uri, experiment=config.tracking.experiment)
        if tracking_uri(cfg).startswith("sqlite:"):
            ensure_experiment(cfg)
