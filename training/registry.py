"""Package a trained model as an MLflow pyfunc, register it and point an alias at it."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pandas as pd

from training.config import RegistryConfig
from training.data.schema import Schema
from training.serving import signature

PYFUNC_FILE = Path(__file__).parent / "serving" / "pyfunc_model.py"
_RUNTIME = [
    "torch",
    "numpy",
    "pandas",
    "scipy",
    "safetensors",
    "tabm",
    "rtdl-num-embeddings",
    "mlflow",
]


def log_model(bundle_dir: Path, schema: Schema, example: pd.DataFrame) -> str:
    """Log the pyfunc (code, bundle, signature, input example) to the active run; returns its URI."""
    import mlflow

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_FILE),
        artifacts={"bundle": str(bundle_dir)},
        code_paths=[str(Path(__file__).parent)],  # the `training` package travels with the model
        signature=signature(schema),
        input_example=example,
        pip_requirements=[f"{p}=={version(p).split('+')[0]}" for p in _RUNTIME],
    )
    return info.model_uri


def register(model_uri: str, cfg: RegistryConfig, tags: dict[str, str]) -> str:
    """Create a new version of ``registry.name`` and move ``registry.alias`` onto it; returns the version."""
    import mlflow
    from mlflow import MlflowClient

    mv = mlflow.register_model(model_uri, cfg.name, tags=tags)
    MlflowClient().set_registered_model_alias(cfg.name, cfg.alias, mv.version)
    return mv.version
