"""Credit-risk metrics (AUC, Gini, KS, Brier, log loss, ECE, PSI) as functions of (y, p).

AUC, the ROC curve, Brier and log loss come from scikit-learn; what it lacks (KS, reliability and
ECE on fixed bins, PSI) is numpy here. Every function validates (y, p) first, so a bad input is
reported by value and index, and returns plain Python floats (or numpy arrays for curves).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn import metrics as sk

Array = NDArray[np.float64]


def _first_bad(name: str, values: Array, bad: NDArray[np.bool_], what: str) -> str:
    """E.g. "p has 3 values outside [0, 1], first: 1.2 at index 17"."""
    i = int(np.flatnonzero(bad)[0])
    return f"{name} has {int(bad.sum())} values {what}, first: {float(values[i])!r} at index {i}"


def _check_inputs(y: ArrayLike, p: ArrayLike) -> tuple[Array, Array]:
    """Return (y, p) as 1-D float arrays, or raise ValueError naming the bad value.

    Shape: y (n,) with 0/1 labels (1 = default); p (n,) predicted PDs in [0, 1].
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y and p must be 1-D, got shapes {y.shape} and {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"y and p differ in length: {len(y)} vs {len(p)}")
    if len(y) == 0:
        raise ValueError("y and p are empty: metrics need at least one row")
    not_label = (y != 0) & (y != 1)  # NaN lands here too
    if not_label.any():
        raise ValueError(_first_bad("y", y, not_label, "that are not 0/1 labels"))
    not_finite = ~np.isfinite(p)
    if not_finite.any():
        raise ValueError(_first_bad("p", p, not_finite, "that are not finite (NaN or inf)"))
    outside = (p < 0) | (p > 1)
    if outside.any():
        raise ValueError(_first_bad("p", p, outside, "outside [0, 1]"))
    return y, p


def _check_both_classes(y: Array, metric: str) -> None:
    n_bad = int(y.sum())
    if n_bad in (0, len(y)):
        only = "defaults (1)" if n_bad else "non-defaults (0)"
        raise ValueError(f"{metric} needs both classes in y, but all {len(y)} rows are {only}")


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """ROC AUC = P(p_bad > p_good), tied (bad, good) pairs counting one half (scikit-learn)."""
    y, p = _check_inputs(y, p)
    _check_both_classes(y, "auc")
    return float(sk.roc_auc_score(y, p))


def gini(y: ArrayLike, p: ArrayLike) -> float:
    """Gini (accuracy ratio) = 2 * AUC - 1."""
    return 2.0 * auc(y, p) - 1.0


def ks_curve(y: ArrayLike, p: ArrayLike) -> tuple[Array, Array, Array]:
    """Empirical score CDFs of defaults and non-defaults at each distinct score.

    Returns (thresholds, cdf_bad, cdf_good), each of shape (n_distinct,): thresholds sorted
    ascending, cdf_x[i] = share of class x with p <= thresholds[i]. Evaluating only at distinct
    scores keeps tied rows together, so no threshold splits a tie.
    """
    y, p = _check_inputs(y, p)
    _check_both_classes(y, "ks")
    order = np.argsort(p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]
    cum_bad = np.cumsum(y_sorted)[last_of_tie]
    cum_all = last_of_tie + 1.0
    n_bad = cum_bad[-1]
    return p_sorted[last_of_tie], cum_bad / n_bad, (cum_all - cum_bad) / (len(y) - n_bad)


def ks(y: ArrayLike, p: ArrayLike) -> float:
    """Kolmogorov-Smirnov statistic: max |CDF_bad - CDF_good| = max over thresholds of |TPR - FPR|."""
    _, cdf_bad, cdf_good = ks_curve(y, p)
    return float(np.max(np.abs(cdf_good - cdf_bad)))


def roc_curve(y: ArrayLike, p: ArrayLike) -> tuple[Array, Array]:
    """ROC points (fpr, tpr) from (1, 1) down to (0, 0), one per distinct score, rule: default if p > t.

    Shape: each (n_distinct + 1,). scikit-learn's curve, kept whole (no intermediate points
    dropped) and reversed, since scikit-learn runs from (0, 0) up.
    """
    y, p = _check_inputs(y, p)
    _check_both_classes(y, "roc_curve")
    fpr, tpr, _ = sk.roc_curve(y, p, drop_intermediate=False)
    return fpr[::-1].astype(np.float64), tpr[::-1].astype(np.float64)


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Brier score: mean squared error of the predicted PD."""
    y, p = _check_inputs(y, p)
    return float(sk.brier_score_loss(y, p, pos_label=1))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = 1e-15) -> float:
    """Binary cross-entropy; p is clipped to [eps, 1 - eps] so a confident miss costs a finite amount.

    labels=[0, 1] lets scikit-learn score a sample holding only one class.
    """
    y, p = _check_inputs(y, p)
    return float(sk.log_loss(y, np.clip(p, eps, 1.0 - eps), labels=[0, 1]))


def _bin_stats(y: Array, p: Array, n_bins: int) -> tuple[Array, Array, Array]:
    """Per equal-width bin on [0, 1]: (count, sum of p, sum of y), each of shape (n_bins,).

    Bin i is [i/n_bins, (i+1)/n_bins); the last bin also holds p = 1.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    return count, np.bincount(idx, p, n_bins), np.bincount(idx, y, n_bins)


def reliability(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> tuple[Array, Array, Array]:
    """Reliability diagram points for non-empty bins: (mean_p, frac_pos, count), each (n_nonempty,)."""
    y, p = _check_inputs(y, p)
    count, sum_p, sum_y = _bin_stats(y, p, n_bins)
    keep = count > 0
    return sum_p[keep] / count[keep], sum_y[keep] / count[keep], count[keep]


def ece(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (n_b / n) * |mean(y_b) - mean(p_b)|."""
    mean_p, frac_pos, count = reliability(y, p, n_bins)
    return float(np.sum(count * np.abs(frac_pos - mean_p)) / count.sum())


def _check_sample(x: ArrayLike, name: str) -> Array:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sample, got shape {x.shape}")
    not_finite = ~np.isfinite(x)
    if not_finite.any():
        raise ValueError(_first_bad(name, x, not_finite, "that are not finite (NaN or inf)"))
    return x


PSI_FLOOR = 1e-6  # a bin's share is floored so an empty bin keeps PSI finite


def psi(
    expected: ArrayLike, actual: ArrayLike, n_bins: int = 10, floor: float = PSI_FLOOR
) -> float:
    """Population stability index of `actual` against `expected`, in quantile bins of `expected`.

    Rule of thumb: < 0.1 stable, 0.1-0.25 some shift, > 0.25 a major shift.
    """
    expected, actual = _check_sample(expected, "expected"), _check_sample(actual, "actual")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    # Interior quantile edges only: the outer bins are open, so actual scores beyond the
    # expected range still count. Tied scores can merge edges, hence unique.
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, n_bins + 1)[1:-1]))
    e = bin_counts(edges, expected) / len(expected)
    return psi_of_shares(e, bin_counts(edges, actual), floor)


def bin_counts(edges: NDArray, x: ArrayLike) -> NDArray:
    """Rows per bin of the interior ``edges`` (``len(edges) + 1`` bins; an edge's value goes up)."""
    return np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)


def psi_of_shares(expected: ArrayLike, counts: ArrayLike, floor: float = PSI_FLOOR) -> float:
    """PSI = sum_b (a_b - e_b) * ln(a_b / e_b): expected shares against actual counts per bin.

    The one PSI formula: ``psi`` above and scoring's drift against a model's stored training
    bins both end here. Shares are floored so an empty bin stays finite.
    """
    counts = np.asarray(counts, dtype=np.float64)
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(counts / max(counts.sum(), 1), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def evaluate(y: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """All discrimination and calibration metrics as plain Python numbers (JSON-serialisable)."""
    y, p = _check_inputs(y, p)
    roc_auc = auc(y, p)
    return {
        "auc": roc_auc,
        "gini": 2.0 * roc_auc - 1.0,
        "ks": ks(y, p),
        "brier": brier(y, p),
        "log_loss": log_loss(y, p),
        "ece": ece(y, p),
        "n": len(y),
        "default_rate": float(y.mean()),
        "mean_pd": float(p.mean()),
    }


def bootstrap_ci(
    y: ArrayLike, p: ArrayLike, resamples: int = 200, level: float = 0.95, seed: int = 0,
    max_rows: int = 100_000,
) -> dict:  # fmt: skip
    """Percentile bootstrap intervals of AUC, KS, Brier and ECE: rows drawn with replacement
    ``resamples`` times (from an evenly spaced subset of at most ``max_rows``, for speed)."""
    y, p = _check_inputs(y, p)
    if len(y) > max_rows:
        keep = np.linspace(0, len(y) - 1, max_rows).astype(np.int64)
        y, p = y[keep], p[keep]
    rng = np.random.default_rng(seed)
    names = {"auc": auc, "ks": ks, "brier": brier, "ece": ece}
    draws: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        if 0 < y[pick].sum() < len(pick):  # AUC and KS need both classes
            for k, f in names.items():
                draws[k].append(f(y[pick], p[pick]))
    tails = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out: dict = {k: np.percentile(v, tails).tolist() for k, v in draws.items() if v}
    return out | {"level": level, "resamples": len(draws["auc"]), "rows": len(y)}
