"""Package a trained model as an MLflow pyfunc, register it and point an alias at it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from training.config import RegistryConfig
from training.data.schema import Schema
from training.serving.package import pyfunc_model


def log_model(bundle_dir: Path, schema: Schema, example: pd.DataFrame) -> str:
    """Log the pyfunc (runtime code only, bundle, signature, input example, pinned requirements)
    to the active run; returns its URI."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="riskbrain-model-") as workdir:
        info = mlflow.pyfunc.log_model(
            name="model", **pyfunc_model(bundle_dir, schema, example, Path(workdir))
        )
    return info.model_uri


def register(model_uri: str, cfg: RegistryConfig, tags: dict[str, str]) -> str:
    """Create a new version of ``registry.name`` and move ``registry.alias`` onto it; returns the version."""
    import mlflow
    from mlflow import MlflowClient

    mv = mlflow.register_model(model_uri, cfg.name, tags=tags)
    MlflowClient().set_registered_model_alias(cfg.name, cfg.alias, mv.version)
    return mv.version
