"""The bundle a served model loads: preprocessing, network, score scale and reason codes together
(``Scorer``); weights as safetensors, everything else as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from training.data.history import History
from training.data.preprocess import Preprocessor
from training.data.schema import FeatureSpec, Kind, Schema, Source
from training.errors import DataError
from training.models.calibration import Calibration, calibrated, uncalibrated
from training.models.config import ModelConfig, model_config_from_dict, model_config_to_dict
from training.serving.config import ExplainConfig, ScoreScale
from training.serving.explain import METHODS, Explainer, reference_sample
from training.serving.scorecard import score_bins

WEIGHTS, BUNDLE = "weights.safetensors", "bundle.json"


Member = tuple[ModelConfig, list[torch.Tensor] | None]  # a network's config and embedding bins


def make_decision(
    scale: ScoreScale,
    explain: ExplainConfig,
    x_num: torch.Tensor,
    x_cat: torch.Tensor,
    train_pd: np.ndarray,
    feature_reference: dict[str, dict],
    seed: int = 0,
) -> dict:
    """What turns a PD into a decision, for ``save_bundle``: the score scale, the reasons'
    settings and reference rows (drawn from the preprocessed training rows ``x_num, x_cat``), and
    the deciles of the training rows' scores (``train_pd``), which with each feature's training
    distribution (``feature_reference``: ``feature_bins``) scored portfolios' PSI is measured
    against."""
    return {
        "score": asdict(scale),
        "explain": asdict(explain),
        "reasons_method": METHODS[explain.method],
        "reference": reference_sample(x_num, x_cat, explain.reference_rows, seed),
        "score_reference": score_bins(scale.score(train_pd)),
        "feature_reference": feature_reference,
    }


def save_bundle(
    out_dir: Path,
    *,
    model: nn.Module,
    members: list[Member],
    pre: Preprocessor,
    schema: Schema,
    decision: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Everything needed to rebuild the model, as tensors and JSON: no pickle anywhere.

    ``model`` is one network (one member) or an ``Ensemble`` of the ``members``, which share the
    preprocessing and the schema, possibly ``Calibrated`` (its calibration is stored beside the
    weights). ``decision`` comes from ``make_decision``; without one the model scores on the
    default scale and gives no reasons (as bundles older than reason codes do).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model, calibration = uncalibrated(model)
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
        "calibration": calibration.to_dict(),
        "decision": decision or {},
        "schema": {
            "target": schema.target,
            "protected": list(schema.protected),
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
            "history": schema.history.to_dict() if schema.history else None,
        },
        **(extra or {}),
    }
    (out_dir / BUNDLE).write_text(json.dumps(bundle, indent=1))
    return out_dir


def load_model_configs(bundle_dir: Path) -> list[ModelConfig]:
    """The architecture of each network in a bundle."""
    bundle = json.loads((Path(bundle_dir) / BUNDLE).read_text())
    return [model_config_from_dict(m["model"]) for m in bundle["members"]]


def schema_from_bundle(bundle: dict) -> Schema:
    """The data schema a bundle (``bundle.json``, parsed) was trained on."""
    history = bundle["schema"].get("history")
    return Schema(
        history=History.from_dict(history) if history else None,
        target=bundle["schema"]["target"],
        protected=bundle["schema"].get("protected", []),
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


class Scorer:
    """Raw applicant rows in; PD, score and reasons out: preprocessing and network applied
    exactly as in training."""

    def __init__(self, bundle_dir: Path) -> None:
        from training.models.build import build_model
        from training.models.ensemble import Ensemble

        bundle = json.loads((Path(bundle_dir) / BUNDLE).read_text())
        self.schema = schema_from_bundle(bundle)
        self._con = None  # DuckDB, for a model of event histories (opened on first use)
        history = self.schema.history  # the inputs it computes, named once (not per request)
        self._computed = set(history.feature_names()) if history else set()
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
            "events": self.pre.events(self.schema),
        }
        networks = [build_model(cfg, **shape, bins=bins) for cfg, bins in self.members]
        self.network = networks[0] if len(networks) == 1 else Ensemble(networks)
        self.network.load_state_dict(load_file(Path(bundle_dir) / WEIGHTS))
        self.network.eval()
        # The PD calibration fitted after training (none in bundles from before it).
        self.calibration = Calibration.from_dict(bundle.get("calibration"))
        self.model = calibrated(self.network, self.calibration)
        decision = bundle.get("decision", {})  # absent from bundles older than reason codes
        self.scale = ScoreScale(**decision.get("score", {}))
        self.score_reference: dict | None = decision.get("score_reference")
        self.feature_reference: dict | None = decision.get("feature_reference")
        self.explainer = (
            Explainer(self.model, self.pre, self.schema, decision["reference"],
                      ExplainConfig(**decision["explain"]))
            if "reference" in decision
            else None
        )  # fmt: skip

    def inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the features of its event histories computed from the events each row
        carries (``History.from_request``); a frame that holds them already (a prepared book)
        passes as it is, as does every frame of a model without histories."""
        history = self.schema.history
        if history is None or self._computed.issubset(frame.columns):
            return frame
        if self._con is None:
            from training.data.history import connect

            self._con = connect()
        return history.from_request(self._con, frame)

    def numbers(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its numeric and binary features as float64, whatever numbers they hold
        (integers as pandas reads them from a CSV, decimals, nulls for missing); a value that is
        not a number is refused, naming its column and row (``DataError``)."""
        columns, dtypes = {}, frame.dtypes  # the dtypes at once: a column at a time cost ms
        for f in self.schema.features:
            if f.kind == Kind.categorical or dtypes.get(f.name, np.float64) == np.float64:
                continue  # text, absent (the preprocessor names it), or float64 already
            values = frame[f.name]
            if values.dtype.kind in "biuf":
                columns[f.name] = values.astype("float64")
                continue
            numbers = pd.to_numeric(values, errors="coerce")
            bad = (numbers.isna() & values.notna()).to_numpy()
            if bad.any():
                row = int(bad.nonzero()[0][0])
                raise DataError(
                    f"input column {f.name!r} must hold numbers: row {row} holds "
                    f"{values.iloc[row]!r} ({int(bad.sum())} such rows); send numbers, or null "
                    "for a missing value"
                )
            columns[f.name] = numbers.astype("float64")
        return frame.assign(**columns) if columns else frame

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        from training.models.build import predict_pd

        x_num, x_cat = self.pre.transform(self.numbers(self.inputs(frame)))
        return predict_pd(self.model, torch.from_numpy(x_num), torch.from_numpy(x_cat))

    def completeness_errors(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Per row, how far its reasons' contributions are from adding up to its PD logit minus
        the references' (logits); None for a model without reasons."""
        if self.explainer is None:
            return None
        frame = self.numbers(self.inputs(frame))
        x_num, x_cat = (torch.from_numpy(x) for x in self.pre.transform(frame))
        return self.explainer.contributions(x_num, x_cat)[1]

    def decide(self, frame: pd.DataFrame, reasons: int | None = None) -> pd.DataFrame:
        """pd, score and, for ``reasons`` > 0 (default: the model's ``explain.reasons``), the
        reason columns of ``Explainer.reasons``, one row per input row."""
        from training.models.build import predict_pd

        frame = self.numbers(self.inputs(frame))
        x_num, x_cat = (torch.from_numpy(x) for x in self.pre.transform(frame))
        p = predict_pd(self.model, x_num, x_cat)
        columns = {"pd": p, "score": self.scale.score(p)}
        k = self.explainer.cfg.reasons if reasons is None and self.explainer else (reasons or 0)
        if k > 0 and self.explainer is not None:
            contributions, _ = self.explainer.contributions(x_num, x_cat)
            columns |= self.explainer.reasons(frame, contributions, k)
        return pd.DataFrame(columns)  # rows numbered from 0, whatever the input's index


def signature(schema: Schema, reasons: int):
    """Named inputs (string for categorical; numeric and binary of any type, since MLflow refuses
    int64 for a double and a lender's CSV reads as int64: ``Scorer.numbers`` checks them; for a
    model of event histories, the application date and one column per source holding that
    borrower's events, a list or its JSON text, or a wide source's columns); outputs pd, score
    and ``reasons`` reason columns; one parameter, ``reasons`` (per request)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec
    from mlflow.types import Schema as MlflowSchema
    from mlflow.types.schema import AnyType

    inputs = [
        ColSpec("string" if f.kind == Kind.categorical else AnyType(), f.name)
        for f in schema.inputs()
    ]
    if schema.history:
        flat = {c.name for c in inputs}
        inputs += [ColSpec(AnyType(), n) for n in schema.history.request_columns() if n not in flat]
    outputs = [ColSpec("double", "pd"), ColSpec("double", "score")]
    for i in range(1, reasons + 1):
        outputs += [
            ColSpec("string", f"reason_{i}{part}") for part in ("", "_value", "_description")
        ]
        outputs.append(ColSpec("double", f"reason_{i}_contribution"))
    return ModelSignature(
        inputs=MlflowSchema(inputs),
        outputs=MlflowSchema(outputs),
        params=ParamSchema([ParamSpec("reasons", "long", reasons)]),
    )
