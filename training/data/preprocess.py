"""Preprocessing fitted on the training split only, stored with the model as plain numbers.

Numeric columns: quantile transform to a standard normal (robust to heavy tails), missing
values set to 0 (the median) with a missing-value indicator. Binary columns: 0/1, missing to 0
with an indicator. Categorical columns: a vocabulary of the training values; index 0 is the
unknown bucket, shared by missing values and categories never seen in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from training.data.schema import Kind, Schema

_EPS = 1e-7  # keeps ndtri finite at the edges of the training range


@dataclass(kw_only=True)
class Preprocessor:
    numeric: list[str]
    binary: list[str]
    categorical: list[str]
    quantiles: list[list[float]]  # per numeric column: its training quantiles at `levels`
    levels: list[float]
    indicators: list[str]  # columns with missing values in training: each gets a 0/1 indicator
    vocab: dict[str, list[str]]

    @classmethod
    def fit(cls, frame: pd.DataFrame, schema: Schema, n_quantiles: int = 1000) -> Preprocessor:
        numeric, binary, categorical = (
            schema.names(k) for k in (Kind.numeric, Kind.binary, Kind.categorical)
        )
        n_q = max(2, min(n_quantiles, len(frame)))
        levels = np.linspace(0.0, 1.0, n_q)
        quantiles = [np.nanquantile(frame[c].to_numpy(), levels).tolist() for c in numeric]
        indicators = [c for c in numeric + binary if frame[c].isna().any()]
        vocab = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}
        return cls(
            numeric=numeric,
            binary=binary,
            categorical=categorical,
            quantiles=quantiles,
            levels=levels.tolist(),
            indicators=indicators,
            vocab=vocab,
        )

    @property
    def n_num_features(self) -> int:
        return len(self.numeric) + len(self.binary) + len(self.indicators)

    @property
    def cat_cardinalities(self) -> list[int]:
        return [len(self.vocab[c]) + 1 for c in self.categorical]  # +1: the unknown bucket

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Shape: (n, n_num_features) float32 and (n, n_categorical) int64."""
        n = len(frame)
        x_num = np.empty((n, self.n_num_features), dtype=np.float32)
        levels = np.asarray(self.levels)
        for j, c in enumerate(self.numeric):
            x_num[:, j] = _quantile_normal(
                frame[c].to_numpy(dtype=np.float64), np.asarray(self.quantiles[j]), levels
            )
        for j, c in enumerate(self.binary, start=len(self.numeric)):
            x_num[:, j] = np.nan_to_num(frame[c].to_numpy(dtype=np.float64), nan=0.0)
        for j, c in enumerate(self.indicators, start=len(self.numeric) + len(self.binary)):
            x_num[:, j] = frame[c].isna().to_numpy()
        x_cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            index = pd.Index(self.vocab[c])
            x_cat[:, j] = (
                index.get_indexer(frame[c].astype(object)) + 1
            )  # -1 (unseen, missing) -> 0
        return x_num, x_cat

    def state(self) -> dict:
        return asdict(self)


def _quantile_normal(x: np.ndarray, q: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Map x through the training CDF to a standard normal; NaN -> 0.

    Interpolating up the quantiles and down them and averaging handles repeated quantiles (a
    column with many equal values), as scikit-learn's QuantileTransformer does.
    """
    u = 0.5 * (np.interp(x, q, levels) - np.interp(-x, -q[::-1], -levels[::-1]))
    # The normal quantile function on float64; torch's is the Cephes ndtri that SciPy uses (they
    # agree to ~1e-15), and torch is already in the serving runtime while SciPy is not.
    z = torch.special.ndtri(torch.from_numpy(np.clip(u, _EPS, 1 - _EPS))).numpy()
    return np.where(np.isnan(x), 0.0, z)
