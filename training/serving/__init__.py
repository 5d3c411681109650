"""The served model: preprocessing and network together as an MLflow pyfunc, weights as safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from training.data.preprocess import Preprocessor
from training.data.schema import FeatureSpec, Kind, Schema, Source
from training.models.config import ModelConfig, model_config_from_dict, model_config_to_dict

WEIGHTS, BUNDLE = "weights.safetensors", "bundle.json"


Member = tuple[ModelConfig, list[torch.Tensor] | None]  # a network's config and embedding bins


def save_bundle(
    out_dir: Path,
    *,
    model: nn.Module,
    members: list[Member],
    pre: Preprocessor,
    schema: Schema,
    extra: dict | None = None,
) -> Path:
    """Everything needed to rebuild the model, as tensors and JSON: no pickle anywhere.

    ``model`` is one network (one member) or an ``Ensemble`` of the ``members``, which share the
    preprocessing and the schema.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out_dir / WEIGHTS)
    bundle = {
        "members": [
            {
                "model": model_config_to_dict(cfg),
                "bins": [b.tolist() for b in bins] if bins is not None else None,
            }
            for cfg, bins in members
        ],
        "preprocessor": pre.state(),
        "schema": {
            "target": schema.target,
            "features": [
                {
                    "name": f.name,
                    "kind": f.kind.value,
                    "source": f.source.value,
                    "monotone": f.monotone,
                    "description": f.description,
                }
                for f in schema.features
            ],
        },
        **(extra or {}),
    }
    (out_dir / BUNDLE).write_text(json.dumps(bundle, indent=1))
    return out_dir


def load_model_configs(bundle_dir: Path) -> list[ModelConfig]:
    """The architecture of each network in a bundle."""
    bundle = json.loads((Path(bundle_dir) / BUNDLE).read_text())
    return [model_config_from_dict(m["model"]) for m in bundle["members"]]


class Scorer:
    """Raw applicant rows in, PDs out: preprocessing and network applied exactly as in training."""

    def __init__(self, bundle_dir: Path) -> None:
        from training.models import build_model
        from training.models.ensemble import Ensemble

        bundle = json.loads((Path(bundle_dir) / BUNDLE).read_text())
        self.schema = Schema(
            target=bundle["schema"]["target"],
            features=[
                FeatureSpec(
                    name=f["name"],
                    kind=Kind(f["kind"]),
                    source=Source(f["source"]),
                    monotone=f["monotone"],
                    description=f["description"],
                )
                for f in bundle["schema"]["features"]
            ],
        )
        self.pre = Preprocessor(**bundle["preprocessor"])
        # Each network's config and embedding bins, as save_bundle took them.
        self.members: list[Member] = [
            (
                model_config_from_dict(m["model"]),
                [torch.tensor(b) for b in m["bins"]] if m["bins"] is not None else None,
            )
            for m in bundle["members"]
        ]
        shape = {
            "n_num": self.pre.n_num_features,
            "cat_cardinalities": self.pre.cat_cardinalities,
            "directions": self.pre.directions(self.schema),
        }
        networks = [build_model(cfg, **shape, bins=bins) for cfg, bins in self.members]
        self.model = networks[0] if len(networks) == 1 else Ensemble(networks)
        self.model.load_state_dict(load_file(Path(bundle_dir) / WEIGHTS))
        self.model.eval()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        from training.models import predict_pd

        x_num, x_cat = self.pre.transform(frame)
        return predict_pd(self.model, torch.from_numpy(x_num), torch.from_numpy(x_cat))


def signature(schema: Schema):
    """Named, typed inputs (double for numeric and binary, string for categorical) and one PD output."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec
    from mlflow.types import Schema as MlflowSchema

    inputs = [
        ColSpec("string" if f.kind == Kind.categorical else "double", f.name)
        for f in schema.features
    ]
    return ModelSignature(
        inputs=MlflowSchema(inputs), outputs=MlflowSchema([ColSpec("double", "pd")])
    )
