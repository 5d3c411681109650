"""The GBDT benchmark in every report: LightGBM on the network's own split.

A model validator's first question is how a network compares with an alternative model. LightGBM
is trained on the same training rows, stopped early on the same validation rows and scored on the
same test rows; a small search (``benchmark.n_trials`` settings from a fixed grid, seeded) keeps
the setting with the best validation AUC. Test rows are never used to choose anything.

With ``benchmark.cache`` (a folder; a sweep sets its own), the fitted model is kept there under a
key of exactly what it learned from (the rows, labels and settings), so the trials of a sweep fit
it once and read it after, and every report says whether its benchmark was fitted or reused.

Under MPI or Ray, training and validation rows (evenly spaced by row number within their part, at
most ``benchmark.max_rows`` of each) are gathered to rank 0, which trains; the model is broadcast
as text and every rank scores its own test rows, gathered in global order like the network's.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from training import metrics
from training.data.prepare import Prepared, TrainingData
from training.data.schema import FeatureSpec, Kind, Schema
from training.governance.config import BenchmarkConfig
from training.runtime.dist import DistContext, every_kth

log = logging.getLogger("riskbrain")

# The grid the search draws from; the first setting tried is always LightGBM's usual default.
DEFAULT = {"num_leaves": 31, "learning_rate": 0.05, "min_child_samples": 20,
           "feature_fraction": 0.8, "lambda_l2": 0.0}  # fmt: skip
GRID = {
    "num_leaves": [7, 15, 31, 63],
    "learning_rate": [0.02, 0.05, 0.1],
    "min_child_samples": [10, 20, 50, 100],
    "feature_fraction": [0.5, 0.8, 1.0],
    "lambda_l2": [0.0, 1.0, 10.0],
}


def settings(n: int, seed: int) -> list[dict[str, Any]]:
    """The default, then ``n - 1`` distinct settings drawn from the grid (seeded)."""
    grid = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    grid = [s for s in grid if s != DEFAULT]
    picks = np.random.default_rng(seed).choice(len(grid), size=min(n - 1, len(grid)), replace=False)
    return [DEFAULT] + [grid[i] for i in picks]


def benchmarked(schema: Schema) -> list[FeatureSpec]:
    """The features LightGBM reads: every one but the events fed one by one (its history is
    the window statistics a credit team would build)."""
    slots = set(schema.history.slot_names()) if schema.history else set()
    return [f for f in schema.features if f.name not in slots]


def features(frame: pd.DataFrame, data: TrainingData) -> pd.DataFrame:
    """The model's input columns as LightGBM reads them: numbers with NaN for missing, and
    categoricals with the training vocabulary (unseen values become missing)."""
    out = {}
    for i, f in enumerate(benchmarked(data.schema)):
        # LightGBM refuses JSON's special characters in feature names (Polish: "[", "]").
        column = f"f{i}_" + re.sub(r"[^0-9A-Za-z_]+", "_", f.name)
        if f.kind == Kind.categorical:
            vocab = data.pre.vocab[f.name]
            text = frame[f.name].astype("string")
            out[column] = pd.Categorical(text.where(text.isin(vocab)), categories=vocab)
        else:
            out[column] = frame[f.name].to_numpy(dtype=np.float64)
    return pd.DataFrame(out)


def _sample(
    data: Prepared, part: str, max_rows: int, ctx: DistContext
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every k-th row of ``part`` by its position in the part (k so that at most ``max_rows``
    remain), gathered from all ranks in global order."""
    t = data.tensors(part)
    mine = every_kth(t.global_rows, t.offset, len(t), max_rows)
    # the raw rows prepare kept (benchmark.max_rows's): a superset of these
    kept = data.evaluation.kept[part]
    if not np.isin(mine, kept).all():
        raise ValueError(f"{part} rows {mine[:5]}... were not kept by prepare (benchmark.max_rows)")
    raw = data.evaluation.frames[part].iloc[np.searchsorted(kept, mine)]
    frames = ctx.allgather(features(raw, data.training))
    labels = ctx.allgather_array(t.y.numpy()[mine].astype(int))
    return pd.concat(frames, ignore_index=True), labels


def search(
    cfg: BenchmarkConfig, train, valid, threads: int, monotone: list[int] | None = None
) -> tuple[Any, dict[str, Any]]:
    """Train each setting with early stopping on the validation rows; keep the best by valid AUC.
    ``monotone``: each column's direction (LightGBM's ``monotone_constraints``), or None."""
    import lightgbm as lgb

    # One binned dataset for every setting (min_child_samples varies, so no pre-filtering).
    binning = {"feature_pre_filter": False, "verbosity": -1}
    dtrain = lgb.Dataset(*train, free_raw_data=False, params=binning)
    dvalid = lgb.Dataset(*valid, reference=dtrain, params=binning)
    best, best_auc, best_setting = None, -1.0, None
    for setting in settings(cfg.n_trials, cfg.seed):
        params = {"objective": "binary", "metric": "auc", "verbosity": -1, "seed": cfg.seed,
                  "num_threads": threads, "bagging_fraction": 0.8, "bagging_freq": 1, **setting}  # fmt: skip
        if monotone and any(monotone):
            params |= {"monotone_constraints": monotone, "monotone_constraints_method": "advanced"}
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=cfg.max_rounds,
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(cfg.early_stopping, verbose=False)],
        )
        auc = booster.best_score["valid_0"]["auc"]
        if auc > best_auc:
            best, best_auc, best_setting = booster, auc, setting
    info = {"params": best_setting, "rounds": best.best_iteration, "valid_auc": best_auc}
    return best, info


def fit(cfg: BenchmarkConfig, train, valid, directions: list[int] | None) -> tuple[str, dict]:
    """The search on rank 0: the chosen model as LightGBM's text, and what the report says of it."""
    t0 = time.perf_counter()
    booster, info = search(cfg, train, valid, torch.get_num_threads(), directions)
    info["monotone"] = bool(directions and any(directions))
    info |= {"train_rows": len(train[1]), "valid_rows": len(valid[1])}
    info["seconds"] = time.perf_counter() - t0
    return booster.model_to_string(num_iteration=booster.best_iteration), info


def cache_key(cfg: BenchmarkConfig, train, valid, directions: list[int] | None) -> str:
    """A digest of everything the fitted model depends on: the rows and labels it trains and
    stops on, the search's settings and the monotone directions (not ``benchmark.cache``)."""
    h = hashlib.sha256()
    for frame, labels in (train, valid):
        h.update(",".join(map(str, frame.columns)).encode())
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    knobs = {k: v for k, v in vars(cfg).items() if k != "cache"}
    h.update(json.dumps([knobs, directions], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def fitted(cfg: BenchmarkConfig, train, valid, directions: list[int] | None) -> tuple[str, dict]:
    """``fit``, or its result kept in ``benchmark.cache`` under the same key. Jobs that start
    together (a sweep's trials) wait on a lock beside the file, so one fits and the others read."""
    if cfg.cache is None:
        return fit(cfg, train, valid, directions)
    key = cache_key(cfg, train, valid, directions)
    path = Path(cfg.cache) / f"lightgbm-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.is_file():
            kept = json.loads(path.read_text())
            log.info("benchmark: LightGBM %s read from %s (fitted once, not again)", key, path)
            return kept["model"], kept["info"] | {"key": key, "reused": True}
        model_text, info = fit(cfg, train, valid, directions)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"model": model_text, "info": info}))
        os.replace(tmp, path)  # a reader never sees half a file
    return model_text, info | {"key": key, "reused": False}


def gbdt_benchmark(cfg: BenchmarkConfig, data: Prepared, ctx: DistContext) -> dict | None:
    """LightGBM's test metrics on the network's split, the setting chosen and the rows it saw."""
    if not cfg.enabled:
        return None
    import lightgbm as lgb

    train = _sample(data, "train", cfg.max_rows, ctx)
    valid = _sample(data, "valid", cfg.max_rows, ctx)
    payload = None
    if ctx.is_main:
        schema = data.training.schema
        directions = [f.monotone for f in benchmarked(schema)] if cfg.monotone else None
        payload = fitted(cfg, train, valid, directions)
    model_text, info = ctx.broadcast(payload)
    booster = lgb.Booster(model_str=model_text)
    frame, test = data.evaluation.frames["test"], data.tensors("test")
    if len(frame) != len(test):
        raise ValueError("the test rows' raw values were not kept: prepare with benchmark.enabled")
    p_test = ctx.allgather_array(booster.predict(features(frame, data.training)))
    y_test = ctx.allgather_array(test.y.numpy().astype(int))
    return {"model": "lightgbm", **info, "test": metrics.evaluate(y_test, p_test)}
