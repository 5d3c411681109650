"""What a registered model carries: only the serving runtime's code, and pins for what it imports.

The runtime is the set of modules below: the bundle format and scorer, preprocessing, the network
modules and what they import. They import nothing but the standard library, torch, numpy, pandas,
safetensors, mlflow and the network libraries ``tabm`` and ``rtdl_num_embeddings``
(tests/unit/test_serving_runtime.py checks it), so the model installs from its own
requirements.txt in a bare environment: no Hydra, OmegaConf, SciPy, Rich or Ray.
"""

from __future__ import annotations

import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from training.data.schema import Schema
from training.models.config import ModelConfig, ModelName, NumEmbeddings

# Paths relative to the folder that holds the `training` package. The one list both the staging
# below and the import test read; every file of training/models/ and training/serving/ is in it.
RUNTIME_MODULES: tuple[str, ...] = (
    "training/__init__.py",
    "training/errors.py",
    "training/data/__init__.py",
    "training/data/history.py",
    "training/data/history_rows.py",
    "training/data/schema.py",
    "training/data/preprocess.py",
    "training/models/__init__.py",
    "training/models/build.py",
    "training/models/calibration.py",
    "training/models/config.py",
    "training/models/embeddings.py",
    "training/models/dense.py",
    "training/models/ensemble.py",
    "training/models/events.py",
    "training/models/mlp.py",
    "training/models/monotone.py",
    "training/models/tabm.py",
    "training/serving/__init__.py",
    "training/serving/bundle.py",
    "training/serving/config.py",
    "training/serving/explain.py",
    "training/serving/deeplift.py",
    "training/serving/scorecard.py",
    "training/serving/package.py",
    "training/serving/pyfunc_model.py",
)

# Import name -> the distribution that provides it, pinned in the model's requirements.txt.
# mlflow-skinny is the `mlflow` package without the tracking server, UI and SciPy/scikit-learn/
# matplotlib: all loading and serving a pyfunc needs. The network libraries (the last two) are
# imported only by the networks that use them, and listed only for those (`network_packages`);
# DuckDB only by a model of event histories (it computes their features from a request's events).
RUNTIME_DISTRIBUTIONS: dict[str, str] = {
    "torch": "torch",
    "numpy": "numpy",
    "pandas": "pandas",
    "safetensors": "safetensors",
    "mlflow": "mlflow-skinny",
    "tabm": "tabm",
    "rtdl_num_embeddings": "rtdl-num-embeddings",
    "duckdb": "duckdb",
}

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding `training/`


def network_packages(model: ModelConfig) -> set[str]:
    """The import names of the libraries a network needs beyond torch."""
    packages = {"tabm", "rtdl_num_embeddings"} if model.name is ModelName.tabm else set()
    if model.num_embeddings is not NumEmbeddings.none:
        packages.add("rtdl_num_embeddings")
    return packages


def pip_requirements(models: list[ModelConfig] | None = None, history: bool = False) -> list[str]:
    """``name==version`` for what the runtime imports to serve ``models`` (every network when
    None) and, with ``history``, event histories; as installed here, less local labels (+cpu)."""
    optional = {"tabm", "rtdl_num_embeddings", "duckdb"}
    needed = optional if models is None else set().union(*map(network_packages, models))
    if models is not None and history:
        needed.add("duckdb")
    return [
        f"{dist}=={version(dist).split('+')[0]}"
        for name, dist in RUNTIME_DISTRIBUTIONS.items()
        if name not in optional or name in needed
    ]


def stage_runtime(dest: Path) -> Path:
    """Copy the runtime modules into ``dest/training``; returns that package folder."""
    for rel in RUNTIME_MODULES:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SOURCE_ROOT / rel, target)
    return dest / "training"


def pyfunc_model(
    bundle_dir: Path, schema: Schema, example: pd.DataFrame, workdir: Path
) -> dict[str, Any]:
    """Keyword arguments for ``mlflow.pyfunc.log_model(name=..., **kwargs)``.

    The runtime package is staged under ``workdir``, which must outlive the ``log_model`` call
    (MLflow copies it into the model there).
    """
    import json

    from training.serving.bundle import BUNDLE, load_model_configs, signature

    decision = json.loads((Path(bundle_dir) / BUNDLE).read_text())["decision"]
    reasons = decision["explain"]["reasons"] if "reference" in decision else 0

    return {
        "python_model": str(PYFUNC_FILE),
        "artifacts": {"bundle": str(bundle_dir)},
        # MLflow copies each code path into the model's code/ folder and puts that folder on
        # sys.path when loading, so the staged `training` package itself is the code path.
        "code_paths": [str(stage_runtime(Path(workdir) / "code"))],
        "signature": signature(schema, reasons),
        "input_example": example,
        "pip_requirements": pip_requirements(
            load_model_configs(bundle_dir), schema.history is not None
        ),
    }
