"""The training scores' deciles, which a scored portfolio's scores are compared with (each
feature's distribution is ``feature_bins``, ``data/preprocess.py``). The points themselves:
``ScoreScale`` (``serving/config.py``)."""

from __future__ import annotations

import numpy as np


def score_bins(scores: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Deciles of the training scores and each bin's share of them: what a scored portfolio's
    PSI is measured against (``jobs.score``). Outer edges are open (-inf, inf)."""
    inner = np.unique(np.quantile(scores, np.linspace(0, 1, n_bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    counts = np.histogram(scores, edges)[0]
    return {"edges": edges.tolist(), "shares": (counts / max(len(scores), 1)).tolist()}
