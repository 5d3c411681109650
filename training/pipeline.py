"""One job, end to end: data -> split -> preprocess -> train -> evaluate -> MLflow run -> registered model.

Runs the same on one process or on every rank of a data-parallel job (``ctx``): each rank holds a
shard; the split, the preprocessing and the metrics are computed so that they equal the
single-process values; rank 0 alone writes the output folder and talks to MLflow. Data are loaded
and validated before MLflow is touched, so bad input leaves no run behind; the model is
registered last, so a failed or interrupted run registers nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from training import metrics
from training.checkpoint import Checkpointer, load_latest
from training.config import TrainConfig, to_dict
from training.data.loaders import Dataset, load_dataset
from training.data.preprocess import Preprocessor
from training.data.split import Split, make_split, summary
from training.dist import DistContext
from training.errors import ConfigError
from training.loop import Tensors, fit, predict_pd
from training.models import build_model
from training.models.embeddings import fit_bins
from training.plots import save_evaluation_plots
from training.preemption import Preempted, StopFlag
from training.progress import EpochProgress
from training.registry import log_model, register
from training.serving import save_bundle
from training.tracking import MlflowTracker, Tracker, flatten, git_commit, tracking_uri

log = logging.getLogger("riskbrain")

STOP_FILE = "STOP"  # created by a launcher that took the stop signal for its workers (Ray)
PREPROCESS_SAMPLE = 200_000  # training rows the preprocessing is fitted on, at most (evenly spaced)


@dataclass(frozen=True)
class Prepared:
    """This rank's shard of a data set, split and preprocessed: raw frames and model-ready tensors."""

    dataset: Dataset
    split: Split  # global row numbers, the same on every rank
    pre: Preprocessor
    frames: dict[str, pd.DataFrame]
    tensors: dict[str, Tensors]
    train_sample: pd.DataFrame  # the rows the preprocessing was fitted on (every rank has them)
    sample_x: tuple[
        torch.Tensor, torch.Tensor
    ]  # those rows preprocessed: embedding bins, PSI baseline
    labels: np.ndarray  # every row's label, in global order
    fingerprint: str


def prepare(cfg: TrainConfig, ctx: DistContext | None = None) -> Prepared:
    ctx = ctx or DistContext()
    ds = load_dataset(cfg.data, ctx.rank, ctx.world_size)
    target, period = ds.schema.target, ds.schema.period
    lo, hi = ds.offset, ds.offset + len(ds.frame)

    # The split needs every row's label (and period): small, so gathered, then split identically everywhere.
    keys = pd.concat(
        ctx.allgather(ds.frame[[target] + ([period] if period else [])]), ignore_index=True
    )
    split = make_split(keys, target, cfg.data.split)
    local = {part: idx[(idx >= lo) & (idx < hi)] - lo for part, idx in split.parts().items()}
    frames = {part: ds.frame.iloc[idx].reset_index(drop=True) for part, idx in local.items()}

    # Preprocessing is fitted on evenly spaced training rows chosen by global row number, so it
    # is the same whatever the number of ranks (all training rows when there are few enough).
    sample_rows = split.train[:: max(1, -(-len(split.train) // PREPROCESS_SAMPLE))]
    mine = sample_rows[(sample_rows >= lo) & (sample_rows < hi)] - lo
    sample = pd.concat(ctx.allgather(ds.frame.iloc[mine]), ignore_index=True)
    pre = Preprocessor.fit(sample, ds.schema)

    tensors = {}
    for part, frame in frames.items():
        x_num, x_cat = pre.transform(frame)
        y = torch.from_numpy(frame[target].to_numpy(np.float32))
        offset = int(
            np.searchsorted(split.parts()[part], lo)
        )  # this shard's first row within the part
        tensors[part] = Tensors(
            torch.from_numpy(x_num), torch.from_numpy(x_cat), y, offset, len(split.parts()[part])
        )
    labels = keys[target].to_numpy()
    return Prepared(
        ds,
        split,
        pre,
        frames,
        tensors,
        sample,
        tuple(torch.from_numpy(x) for x in pre.transform(sample)),
        labels,
        fingerprint(frames["train"], local["train"] + lo, ctx),
    )


def fingerprint(frame: pd.DataFrame, rows: np.ndarray, ctx: DistContext) -> str:
    """A short hash of the training data (values, row order, column names), equal for any number of ranks."""
    row_hash = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    mixed = int(
        (row_hash * (rows.astype(np.uint64) * np.uint64(2) + np.uint64(1))).sum(dtype=np.uint64)
    )
    total = sum(ctx.allgather(mixed)) % 2**64
    return hashlib.sha256(f"{list(frame.columns)}|{total}".encode()).hexdigest()[:16]


def run(
    cfg: TrainConfig,
    out_dir: Path,
    ctx: DistContext | None = None,
    *,
    parent_run_id: str | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict:
    """Train, evaluate, log and register; returns the evaluation report (written to ``out_dir`` by rank 0)."""
    ctx = ctx or DistContext()
    if (
        cfg.checkpoint.resume and (out_dir / "DONE").is_file()
    ):  # a finished job that was started again
        log.info("%s already finished (DONE); nothing to do", out_dir)
        return json.loads((out_dir / "evaluation.json").read_text())
    resume = find_resume(cfg, out_dir, ctx)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / STOP_FILE).unlink(
            missing_ok=True
        )  # a stop request belongs to the previous attempt
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    stop = StopFlag(out_dir / STOP_FILE)
    stop.install(cfg.checkpoint.signal)

    data = prepare(cfg, ctx)
    log.info(
        "data %s: %s; split %s; rank %d/%d holds %s",
        cfg.data.name,
        data.dataset.source,
        {p: len(i) for p, i in data.split.parts().items()},
        ctx.rank,
        ctx.world_size,
        {p: len(f) for p, f in data.frames.items()},
    )

    tags = {
        "git_commit": git_commit(),
        "dataset": cfg.data.name,
        "data_fingerprint": data.fingerprint,
        "data_source": data.dataset.source,
        "model_name": cfg.model.name,
        "launcher": cfg.launcher.name,
        "world_size": str(ctx.world_size),
    }
    with mlflow_run(cfg, ctx, resume["run_id"] if resume else None, parent_run_id) as tracker:
        if resume is None:
            tracker.set_tags({**tags, "output_dir": str(out_dir.resolve())})
            tracker.log_params(flatten(to_dict(cfg)))
        checkpointer = Checkpointer(
            out_dir / "checkpoints",
            cfg.checkpoint,
            ctx,
            {"run_id": tracker.run_id or "", "config": to_dict(cfg)},
        )

        torch.manual_seed(cfg.seed)
        train, valid = data.tensors["train"].to(ctx.device), data.tensors["valid"].to(ctx.device)
        bins = fit_bins(cfg.model, data.sample_x[0])
        model = build_model(
            cfg.model,
            n_num=data.pre.n_num_features,
            cat_cardinalities=data.pre.cat_cardinalities,
            bins=bins,
            base_rate=float(data.train_sample[data.dataset.schema.target].mean()),
        )
        model.to(ctx.device)
        result = fit(
            model,
            train,
            valid,
            optim=cfg.optim,
            trainer=cfg.trainer,
            seed=cfg.seed,
            ctx=ctx,
            tracker=tracker,
            progress=EpochProgress(cfg.trainer.max_epochs) if ctx.is_main else None,
            checkpointer=checkpointer,
            resume=resume,
            stop=stop,
            on_epoch=on_epoch,
        )

        report, test_y, test_p = evaluate(model.cpu(), data, cfg.trainer.eval_batch_size, ctx)
        report["training"] = {
            "best_epoch": result.best_epoch,
            "best_valid_auc": result.best_valid_auc,
            "epochs_run": result.epochs_run,
            "world_size": ctx.world_size,
        }
        report["split"] = summary(data.labels, data.split, cfg.data.split)
        report["data_fingerprint"] = data.fingerprint
        if ctx.is_main:
            report.update(
                publish(
                    cfg,
                    out_dir,
                    model,
                    data,
                    bins,
                    report,
                    test_y,
                    test_p,
                    tracker,
                    tags,
                    result.epochs_run,
                )
            )
    if ctx.is_main:
        _write_json(out_dir / "evaluation.json", report)
        (out_dir / "DONE").write_text(report["run_id"] + "\n")
    ctx.barrier()
    return report


@contextlib.contextmanager
def mlflow_run(
    cfg: TrainConfig, ctx: DistContext, run_id: str | None = None, parent_run_id: str | None = None
) -> Iterator[Tracker]:
    """An MLflow run on rank 0, a null tracker on every other rank.

    ``run_id`` reopens the run of a resumed job. The run ends FAILED if the block raises, KILLED
    if the job was preempted (it is reopened on resume), FINISHED otherwise.
    """
    if not ctx.is_main:
        yield Tracker()
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg.tracking))
    # Pass the id on: when processes create the experiment at once, MLflow's set_experiment
    # returns it without making it active, and the run would land in "Default".
    experiment = mlflow.set_experiment(cfg.tracking.experiment)
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment.experiment_id,
        run_name=None if run_id else f"{cfg.data.name}-{cfg.model.name}",
        tags={"mlflow.parentRunId": parent_run_id} if parent_run_id and not run_id else None,
    ) as active:
        log.info(
            "mlflow run %s at %s%s",
            active.info.run_id,
            mlflow.get_tracking_uri(),
            " (resumed)" if run_id else "",
        )
        try:
            yield MlflowTracker(active.info.run_id)
        except Preempted:
            mlflow.end_run("KILLED")
            raise


def find_resume(cfg: TrainConfig, out_dir: Path, ctx: DistContext) -> dict | None:
    """The latest valid checkpoint in ``out_dir`` (read by rank 0, shared with all), if resuming."""
    if not cfg.checkpoint.resume:
        return None
    found = load_latest(out_dir / "checkpoints") if ctx.is_main else None
    state = ctx.broadcast(found[0] if found else None)
    if state is None:
        return None
    now, then = flatten(to_dict(cfg)), flatten(state["config"])
    ignored = ("launcher.", "checkpoint.", "tracking.", "registry.", "trainer.eval_batch_size")
    differ = sorted(
        k
        for k in now.keys() | then.keys()
        if now.get(k) != then.get(k) and not k.startswith(ignored)
    )
    if differ:
        raise ConfigError(
            f"config differs from the checkpoint in {out_dir / 'checkpoints'} at {differ[:5]}: "
            "use a new output folder (hydra.run.dir) or checkpoint.resume=false"
        )
    if ctx.is_main:
        log.info(
            "resuming from %s: epoch %d, step %d, mlflow run %s",
            found[1].name,
            state["epoch"],
            state["step"],
            state["run_id"],
        )
    return state


def evaluate(
    model: torch.nn.Module, data: Prepared, batch_size: int, ctx: DistContext
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Whole-split metrics from gathered predictions; the Bayes-optimal AUC when the true PDs are known."""
    p, y = {}, {}
    for part in ("valid", "test"):
        t = data.tensors[part]
        p[part] = ctx.allgather_array(predict_pd(model, t.x_num, t.x_cat, batch_size))
        y[part] = ctx.allgather_array(t.y.numpy().astype(int))
    p_train = predict_pd(model, *data.sample_x, batch_size)
    report: dict = {
        "test": metrics.evaluate(y["test"], p["test"]),
        "valid": metrics.evaluate(y["valid"], p["valid"]),
        "psi_train_test": metrics.psi(p_train, p["test"]),
    }
    if data.dataset.pd_true is not None:
        lo = data.dataset.offset
        test_rows = (
            data.split.test[
                (data.split.test >= lo) & (data.split.test < lo + len(data.dataset.frame))
            ]
            - lo
        )
        pd_true = ctx.allgather_array(data.dataset.pd_true[test_rows])
        report["bayes_auc_test"] = metrics.auc(y["test"], pd_true)
    if ctx.is_main:
        log.info(
            "test auc %.4f%s",
            report["test"]["auc"],
            f"  (Bayes-optimal {report['bayes_auc_test']:.4f})"
            if "bayes_auc_test" in report
            else "",
        )
    return report, y["test"], p["test"]


def publish(
    cfg: TrainConfig,
    out_dir: Path,
    model: torch.nn.Module,
    data: Prepared,
    bins,
    report: dict,
    test_y: np.ndarray,
    test_p: np.ndarray,
    tracker: Tracker,
    tags: dict,
    step: int,
) -> dict:
    """Rank 0: write the output folder, log artifacts, log and register the model."""
    schema = data.dataset.schema
    _write_json(out_dir / "evaluation.json", report)
    tracker.log_metrics(
        {f"test_{k}": v for k, v in report["test"].items()}
        | {k: v for k, v in report.items() if isinstance(v, float)},
        step=step,
    )
    save_evaluation_plots(
        test_y, test_p, out_dir / "plots", title=f"{cfg.data.name} / {cfg.model.name}"
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
    x_num, x_cat = data.pre.transform(example)
    _write_json(
        out_dir / "example_predictions.json",
        {
            "columns": list(example.columns),
            "data": json.loads(example.to_json(orient="values")),
            "pd": predict_pd(model, torch.from_numpy(x_num), torch.from_numpy(x_cat)).tolist(),
        },
    )
    for path in ("config.yaml", "evaluation.json", "example_predictions.json"):
        tracker.log_artifact(out_dir / path)
    tracker.log_artifact(out_dir / "plots", "plots")
    model_uri = log_model(bundle_dir, schema, example)

    out = {"run_id": tracker.run_id, "model_uri": model_uri}
    if cfg.registry.register:
        version = register(
            model_uri,
            cfg.registry,
            {**tags, "run_id": tracker.run_id, "test_auc": f"{report['test']['auc']:.4f}"},
        )
        tracker.set_tags({"registered_model": f"{cfg.registry.name}/{version}"})
        out["registered"] = {
            "name": cfg.registry.name,
            "version": version,
            "alias": cfg.registry.alias,
        }
        log.info("registered %s version %s as @%s", cfg.registry.name, version, cfg.registry.alias)
    return out


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
