"""One job, end to end: data -> split -> preprocess -> train -> evaluate -> MLflow run -> registered model.

Data are loaded and validated before MLflow is touched, so bad input leaves no run behind; the
model is registered last, so a failed or interrupted run registers nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from training import metrics
from training.config import TrainConfig, to_dict
from training.data.loaders import Dataset, load_dataset
from training.data.preprocess import Preprocessor
from training.data.split import Split, make_split, summary
from training.loop import Tensors, fit, predict_pd
from training.models import build_model
from training.models.embeddings import fit_bins
from training.plots import save_evaluation_plots
from training.progress import EpochProgress
from training.registry import log_model, register
from training.serving import save_bundle
from training.tracking import MlflowTracker, flatten, git_commit, tracking_uri

log = logging.getLogger("riskbrain")


@dataclass(frozen=True)
class Prepared:
    """A data set split and preprocessed: the frames (raw) and the tensors (model-ready) of each part."""

    dataset: Dataset
    split: Split
    pre: Preprocessor
    frames: dict[str, pd.DataFrame]
    tensors: dict[str, Tensors]
    fingerprint: str


def prepare(cfg: TrainConfig) -> Prepared:
    ds = load_dataset(cfg.data)
    split = make_split(ds.frame, ds.schema.target, cfg.data.split)
    frames = {
        part: ds.frame.iloc[idx].reset_index(drop=True) for part, idx in split.parts().items()
    }
    pre = Preprocessor.fit(frames["train"], ds.schema)
    tensors = {part: to_tensors(pre, f, ds.schema.target) for part, f in frames.items()}
    return Prepared(ds, split, pre, frames, tensors, fingerprint(frames["train"]))


def to_tensors(pre: Preprocessor, frame: pd.DataFrame, target: str) -> Tensors:
    x_num, x_cat = pre.transform(frame)
    return Tensors(
        torch.from_numpy(x_num),
        torch.from_numpy(x_cat),
        torch.from_numpy(frame[target].to_numpy(np.float32)),
    )


def fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of the training data (values and column names): same data, same fingerprint."""
    h = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def run(cfg: TrainConfig, out_dir: Path) -> dict:
    """Train, evaluate, log and register; returns the evaluation report (also in ``out_dir``)."""
    import mlflow

    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    data = prepare(cfg)
    schema, target = data.dataset.schema, data.dataset.schema.target
    log.info(
        "data %s: %s; split %s",
        cfg.data.name,
        data.dataset.source,
        {p: len(f) for p, f in data.frames.items()},
    )

    mlflow.set_tracking_uri(tracking_uri(cfg.tracking))
    mlflow.set_experiment(cfg.tracking.experiment)
    with mlflow.start_run(run_name=f"{cfg.data.name}-{cfg.model.name}") as active:
        tracker = MlflowTracker(active.info.run_id)
        tags = {
            "git_commit": git_commit(),
            "dataset": cfg.data.name,
            "data_fingerprint": data.fingerprint,
            "data_source": data.dataset.source,
            "model_name": cfg.model.name,
        }
        tracker.set_tags({**tags, "output_dir": str(out_dir.resolve())})
        tracker.log_params(flatten(to_dict(cfg)))
        log.info("mlflow run %s at %s", active.info.run_id, mlflow.get_tracking_uri())

        torch.manual_seed(cfg.seed)
        train, valid, test = (data.tensors[p] for p in ("train", "valid", "test"))
        bins = fit_bins(cfg.model, train.x_num)
        model = build_model(
            cfg.model,
            n_num=data.pre.n_num_features,
            cat_cardinalities=data.pre.cat_cardinalities,
            bins=bins,
            base_rate=float(train.y.mean()),
        )
        result = fit(
            model,
            train,
            valid,
            optim=cfg.optim,
            trainer=cfg.trainer,
            seed=cfg.seed,
            tracker=tracker,
            progress=EpochProgress(cfg.trainer.max_epochs),
        )

        report, test_p = evaluate(model, data, cfg.trainer.eval_batch_size)
        report["training"] = {
            "best_epoch": result.best_epoch,
            "best_valid_auc": result.best_valid_auc,
            "epochs_run": result.epochs_run,
        }
        report["split"] = summary(data.dataset.frame, target, data.split, cfg.data.split)
        report["data_fingerprint"] = data.fingerprint
        _write_json(out_dir / "evaluation.json", report)
        tracker.log_metrics(
            {f"test_{k}": v for k, v in report["test"].items()}
            | {k: v for k, v in report.items() if isinstance(v, float)},
            step=result.epochs_run,
        )
        save_evaluation_plots(
            test.y.numpy().astype(int),
            test_p,
            out_dir / "plots",
            title=f"{cfg.data.name} / {cfg.model.name}",
        )

        bundle_dir = _atomic_bundle(
            out_dir / "checkpoint",
            model=model,
            model_cfg=cfg.model,
            pre=data.pre,
            schema=schema,
            bins=bins,
            extra={"metrics": report["test"], **tags},
        )
        example = data.frames["test"][schema.names()].head(5)
        _write_json(
            out_dir / "example_predictions.json",
            {
                "columns": list(example.columns),
                "data": json.loads(example.to_json(orient="values")),
                "pd": predict_pd(
                    model, *map(torch.from_numpy, data.pre.transform(example))
                ).tolist(),
            },
        )
        for path in ("config.yaml", "evaluation.json", "example_predictions.json", "plots"):
            tracker.log_artifact(out_dir / path, "plots" if path == "plots" else None)
        model_uri = log_model(bundle_dir, schema, example)

        if cfg.registry.register:
            version = register(
                model_uri,
                cfg.registry,
                {**tags, "run_id": active.info.run_id, "test_auc": f"{report['test']['auc']:.4f}"},
            )
            tracker.set_tags({"registered_model": f"{cfg.registry.name}/{version}"})
            report["registered"] = {
                "name": cfg.registry.name,
                "version": version,
                "alias": cfg.registry.alias,
            }
            log.info(
                "registered %s version %s as @%s", cfg.registry.name, version, cfg.registry.alias
            )
        report["run_id"] = active.info.run_id

    _write_json(out_dir / "evaluation.json", report)
    (out_dir / "DONE").write_text(active.info.run_id + "\n")
    return report


def evaluate(model: torch.nn.Module, data: Prepared, batch_size: int) -> tuple[dict, np.ndarray]:
    """Test and validation metrics; the Bayes-optimal AUC when the true PDs are known; PSI train->test."""
    p = {part: predict_pd(model, t.x_num, t.x_cat, batch_size) for part, t in data.tensors.items()}
    y = {part: t.y.numpy().astype(int) for part, t in data.tensors.items()}
    report: dict = {
        "test": metrics.evaluate(y["test"], p["test"]),
        "valid": metrics.evaluate(y["valid"], p["valid"]),
        "psi_train_test": metrics.psi(p["train"], p["test"]),
    }
    if data.dataset.pd_true is not None:
        report["bayes_auc_test"] = metrics.auc(y["test"], data.dataset.pd_true[data.split.test])
        log.info(
            "test auc %.4f  (Bayes-optimal %.4f)", report["test"]["auc"], report["bayes_auc_test"]
        )
    else:
        log.info("test auc %.4f", report["test"]["auc"])
    return report, p["test"]


def _atomic_bundle(final: Path, **kwargs) -> Path:
    """Write the checkpoint into a temporary folder and rename it: never a half-written checkpoint."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_bundle(tmp, **kwargs)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float))
