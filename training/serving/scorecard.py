"""The training distributions a scored portfolio is compared with: the scores' deciles and each
feature's (characteristic stability). The points themselves: ``ScoreScale`` (``serving/config.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data.schema import Kind, Schema


def score_bins(scores: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Deciles of the training scores and each bin's share of them: what a scored portfolio's
    PSI is measured against (``jobs.score``). Outer edges are open (-inf, inf)."""
    inner = np.unique(np.quantile(scores, np.linspace(0, 1, n_bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    counts = np.histogram(scores, edges)[0]
    return {"edges": edges.tolist(), "shares": (counts / max(len(scores), 1)).tolist()}


def feature_bins(frame: pd.DataFrame, schema: Schema, n_bins: int = 10) -> dict[str, dict]:
    """Each feature's training distribution, for per-feature PSI of scored portfolios: a numeric
    feature's inner decile edges (``edges``, bins open at both ends) and shares, plus the share
    missing; a categorical's categories and shares (unseen ones fall in ``other``)."""
    out: dict[str, dict] = {}
    for f in schema.features:
        column = frame[f.name]
        if f.kind == Kind.categorical:
            shares = column.astype("string").fillna("missing").value_counts(normalize=True)
            out[f.name] = {"kind": "categorical", "categories": shares.index.tolist(),
                           "shares": shares.tolist()}  # fmt: skip
            continue
        x = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        present = x[~np.isnan(x)]
        inner = (
            np.unique(np.quantile(present, np.linspace(0, 1, n_bins + 1)[1:-1]))
            if len(present)
            else np.empty(0)
        )
        counts = np.bincount(
            np.searchsorted(inner, present, side="right"), minlength=len(inner) + 1
        )
        out[f.name] = {
            "kind": "number",
            "edges": inner.tolist(),
            "shares": (counts / max(len(x), 1)).tolist(),
            "missing_share": float(np.isnan(x).mean()) if len(x) else 0.0,
        }
    return out
