"""Train/validation/test splits: stratified and seeded, or out-of-time by a period column."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.data.columns import period_bound
from training.data.config import SplitConfig
from training.errors import DataError


@dataclass(frozen=True)
class Split:
    """Row positions of each part, sorted."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


def make_split(frame: pd.DataFrame, target: str, cfg: SplitConfig) -> Split:
    split = (
        _stratified(frame[target].to_numpy(), cfg)
        if cfg.method == "stratified"
        else _by_time(frame, cfg)
    )
    y = frame[target].to_numpy()
    for part, idx in split.parts().items():
        if len(np.unique(y[idx])) < 2:
            raise DataError(
                f"split {part!r} has {len(idx)} rows and only one class; "
                "adjust data.split (fractions or valid_from/test_from)"
            )
    return split


def _stratified(y: np.ndarray, cfg: SplitConfig) -> Split:
    """Cut each class's shuffled rows at the same fractions, so every part keeps the bad rate."""
    rng = np.random.default_rng(cfg.seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_valid, n_test = round(len(idx) * cfg.valid), round(len(idx) * cfg.test)
        parts["valid"].append(idx[:n_valid])
        parts["test"].append(idx[n_valid : n_valid + n_test])
        parts["train"].append(idx[n_valid + n_test :])
    return Split(**{k: np.sort(np.concatenate(v)) for k, v in parts.items()})


def _by_time(frame: pd.DataFrame, cfg: SplitConfig) -> Split:
    col = frame[cfg.period_column]
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise DataError(
            f"period column {cfg.period_column!r} is missing at data row {row + 1}; out-of-time split needs it in every row"
        )
    dates = pd.api.types.is_datetime64_any_dtype(col.dtype)
    valid_from, test_from = (
        period_bound(getattr(cfg, key), f"data.split.{key}", dates, cfg.period_format)
        for key in ("valid_from", "test_from")
    )
    if not valid_from < test_from:
        raise DataError(
            f"config data.split.valid_from={cfg.valid_from!r}: must be before data.split.test_from={cfg.test_from!r}"
        )
    return Split(
        train=np.flatnonzero(col < valid_from),
        valid=np.flatnonzero((col >= valid_from) & (col < test_from)),
        test=np.flatnonzero(col >= test_from),
    )


def summary(y: np.ndarray, split: Split, cfg: SplitConfig) -> dict:
    """What a reviewer needs to reproduce the split: method, seed, sizes and bad rates (``y``: every row's label)."""
    out = {"method": cfg.method, "seed": cfg.seed}
    if cfg.method == "time":
        out.update(
            period_column=cfg.period_column, valid_from=cfg.valid_from, test_from=cfg.test_from
        )
    for part, idx in split.parts().items():
        out[part] = {"rows": int(len(idx)), "default_rate": float(y[idx].mean())}
    return out
