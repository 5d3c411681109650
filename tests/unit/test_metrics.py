"""Credit-risk metrics checked against independent computations and small hand-worked examples.

AUC, the ROC curve, Brier and log loss call scikit-learn, so they are checked against brute-force
numpy (pairwise AUC, thresholds one by one, the loss formulas); our own KS and reliability bins
are checked against scikit-learn's ROC curve and calibration curve.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from training import metrics


def _sample(
    n: int = 5_000, seed: int = 0, decimals: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~10% defaults and informative PDs; rounding to `decimals` creates many ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int64)
    p = 1.0 / (1.0 + np.exp(-(rng.normal(-2.5, 1.0, n) + 1.5 * y)))
    if decimals is not None:
        p = np.round(p, decimals)
    return y, p


def _pairwise(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(share of (bad, good) pairs with p_bad > p_good, share tied), over every pair."""
    bad, good = p[y == 1][:, None], p[y == 0][None, :]
    return float(np.mean(bad > good)), float(np.mean(bad == good))


def _roc_brute_force(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) with rule default if p > t, for t below every score, then each distinct score."""
    t = np.r_[-np.inf, np.unique(p)][:, None]
    return np.mean(p[y == 0] > t, axis=1), np.mean(p[y == 1] > t, axis=1)


SAMPLES = pytest.mark.parametrize(
    "seed, decimals",
    [(0, None), (1, None), (2, 2), (3, 1)],
    ids=["smooth", "smooth2", "ties2dp", "ties1dp"],
)


@SAMPLES
def test_auc_matches_pairwise_count(seed: int, decimals: int | None) -> None:
    # AUC = P(p_bad > p_good) + P(tie) / 2 over all (bad, good) pairs.
    y, p = _sample(n=2_000, seed=seed, decimals=decimals)
    above, tied = _pairwise(y, p)
    assert metrics.auc(y, p) == pytest.approx(above + tied / 2, abs=1e-12)


@SAMPLES
def test_ks_matches_max_tpr_minus_fpr(seed: int, decimals: int | None) -> None:
    y, p = _sample(seed=seed, decimals=decimals)
    fpr, tpr, _ = sk.roc_curve(y, p, drop_intermediate=False)
    assert metrics.ks(y, p) == pytest.approx(np.max(np.abs(tpr - fpr)), abs=1e-12)


@SAMPLES
def test_roc_curve_matches_thresholds_one_by_one(seed: int, decimals: int | None) -> None:
    y, p = _sample(n=2_000, seed=seed, decimals=decimals)
    fpr, tpr = metrics.roc_curve(y, p)
    want_fpr, want_tpr = _roc_brute_force(y, p)  # from (1, 1) down to (0, 0), as ours
    assert fpr.shape == tpr.shape == (len(np.unique(p)) + 1,)
    np.testing.assert_allclose(fpr, want_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, want_tpr, atol=1e-12)
    # the area under the curve (trapezoids, x descending) is the AUC
    area = float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))
    assert area == pytest.approx(metrics.auc(y, p), abs=1e-12)


def test_ks_curve_cdfs_are_monotone_and_end_at_one() -> None:
    y, p = _sample(decimals=2)
    thresholds, cdf_bad, cdf_good = metrics.ks_curve(y, p)
    np.testing.assert_array_equal(thresholds, np.unique(p))
    for cdf in (cdf_bad, cdf_good):
        assert np.all(np.diff(cdf) >= 0)
        assert cdf[-1] == pytest.approx(1.0)
    # spot-check one threshold against the definition
    t = thresholds[len(thresholds) // 2]
    i = len(thresholds) // 2
    assert cdf_bad[i] == pytest.approx(np.mean(p[y == 1] <= t))
    assert cdf_good[i] == pytest.approx(np.mean(p[y == 0] <= t))


def test_ks_does_not_split_ties() -> None:
    # One good and one bad with the same score: no threshold separates them, so KS = 0
    # (a curve that stepped row by row through the tie would report 1).
    assert metrics.ks([0, 1], [0.5, 0.5]) == 0.0
    assert metrics.auc([0, 1], [0.5, 0.5]) == 0.5


@SAMPLES
def test_gini_is_somers_d(seed: int, decimals: int | None) -> None:
    # Gini = 2 AUC - 1 = P(p_bad > p_good) - P(p_bad < p_good) over all (bad, good) pairs.
    y, p = _sample(n=2_000, seed=seed, decimals=decimals)
    above, tied = _pairwise(y, p)
    assert metrics.gini(y, p) == pytest.approx(above - (1 - above - tied), abs=1e-12)
    assert metrics.gini(y, p) == pytest.approx(2 * metrics.auc(y, p) - 1, abs=1e-15)


@pytest.mark.parametrize("inverted, want_auc", [(False, 1.0), (True, 0.0)])
def test_perfect_and_inverted_scores(inverted: bool, want_auc: float) -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    if inverted:
        p = 1.0 - p
    assert metrics.auc(y, p) == want_auc
    assert metrics.gini(y, p) == 2 * want_auc - 1
    assert metrics.ks(y, p) == 1.0  # KS is a distance: an inverted score separates just as well


@SAMPLES
def test_brier_and_log_loss_match_their_formulas(seed: int, decimals: int | None) -> None:
    y, p = _sample(seed=seed, decimals=decimals)
    p = np.clip(p, 0.001, 0.999)  # away from the clip, so the plain formula applies
    assert metrics.brier(y, p) == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    want = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert metrics.log_loss(y, p) == pytest.approx(want, rel=1e-12)


def test_brier_and_log_loss_hand_worked() -> None:
    # (0.2 - 0)^2, (0.6 - 1)^2 -> mean 0.1; -ln(0.8), -ln(0.6) -> mean.
    assert metrics.brier([0, 1], [0.2, 0.6]) == pytest.approx(0.1)
    assert metrics.log_loss([0, 1], [0.2, 0.6]) == pytest.approx(
        -(math.log(0.8) + math.log(0.6)) / 2
    )


def test_log_loss_clips_certain_misses() -> None:
    # A PD of exactly 0 for a default would be infinite loss; the clip makes it -ln(eps) per row.
    assert metrics.log_loss([1, 0], [0.0, 0.0], eps=1e-15) == pytest.approx(-math.log(1e-15) / 2)
    # our eps, not the library's own: clipping at 0.1 costs -ln(0.1) for the miss
    assert metrics.log_loss([1], [0.0], eps=0.1) == pytest.approx(-math.log(0.1))
    assert metrics.log_loss([0], [1.0], eps=0.1) == pytest.approx(-math.log(0.1))


def test_calibration_losses_accept_a_single_class() -> None:
    # Brier and log loss need no second class (unlike AUC or KS): a shard of non-defaults scores.
    assert metrics.brier([0, 0], [0.1, 0.3]) == pytest.approx(0.05)
    assert metrics.log_loss([0, 0], [0.1, 0.3]) == pytest.approx(
        -(math.log(0.9) + math.log(0.7)) / 2
    )
    assert metrics.brier([1, 1], [0.5, 1.0]) == pytest.approx(0.125)
    assert metrics.log_loss([1, 1], [0.5, 1.0]) == pytest.approx(math.log(2) / 2, rel=1e-6)


@pytest.mark.parametrize("n_bins", [5, 10, 20])
def test_reliability_matches_sklearn_uniform(n_bins: int) -> None:
    # Smooth PDs: no value sits exactly on a bin edge, where sklearn's bins are closed on the
    # right and ours on the left.
    y, p = _sample(seed=4)
    mean_p, frac_pos, count = metrics.reliability(y, p, n_bins=n_bins)
    sk_frac_pos, sk_mean_p = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    np.testing.assert_allclose(mean_p, sk_mean_p, rtol=1e-12)
    np.testing.assert_allclose(frac_pos, sk_frac_pos, rtol=1e-12)
    assert count.sum() == len(y)
    assert np.all(count > 0)


def test_ece_hand_worked() -> None:
    # Bins of width 0.1, [i/10, (i+1)/10); bin 7 over-predicts, the others under-predict:
    #   bin 1 holds p = 0.1, 0.1, 0.1 with y = 0, 0, 1: |1/3 - 0.1| * 3/5 = 0.14
    #   bin 7 holds p = 0.7 with y = 0:                  |0 - 0.7|   * 1/5 = 0.14
    #   bin 9 holds p = 0.9 with y = 1:                  |1 - 0.9|   * 1/5 = 0.02
    # ECE = 0.14 + 0.14 + 0.02 = 0.30 (signed gaps would cancel to 0.02)
    y = [0, 0, 1, 0, 1]
    p = [0.1, 0.1, 0.1, 0.7, 0.9]
    assert metrics.ece(y, p, n_bins=10) == pytest.approx(0.30)
    mean_p, frac_pos, count = metrics.reliability(y, p, n_bins=10)
    np.testing.assert_allclose(mean_p, [0.1, 0.7, 0.9])
    np.testing.assert_allclose(frac_pos, [1 / 3, 0.0, 1.0])
    np.testing.assert_array_equal(count, [3, 1, 1])


def test_ece_puts_pd_of_one_in_the_last_bin() -> None:
    # p = 1 sits on the right edge of [0.9, 1]; the last bin is closed.
    mean_p, frac_pos, count = metrics.reliability([1, 0], [1.0, 0.95], n_bins=10)
    np.testing.assert_allclose(mean_p, [0.975])
    np.testing.assert_array_equal(count, [2])
    assert metrics.ece([1, 1], [1.0, 1.0]) == 0.0


def test_ece_is_zero_when_calibrated_within_bins() -> None:
    # Each bin's observed default rate equals its mean PD exactly.
    y = [0, 0, 0, 1, 1, 1, 1, 0]
    p = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    assert metrics.ece(y, p, n_bins=2) == pytest.approx(0.0)


def test_psi_hand_worked() -> None:
    # Median split of 0..9 at 4.5: expected shares (0.5, 0.5); actual [0, 0, 0, 9] gives
    # (0.75, 0.25). PSI = 0.25 ln(0.75/0.5) - 0.25 ln(0.25/0.5) = 0.25 ln 3.
    assert metrics.psi(np.arange(10), [0, 0, 0, 9], n_bins=2) == pytest.approx(0.25 * math.log(3))


def test_psi_is_zero_for_identical_samples() -> None:
    _, p = _sample(decimals=2)
    assert metrics.psi(p, p) == 0.0


def test_psi_is_small_for_same_population_and_large_for_shifted() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, 20_000)
    assert metrics.psi(base, rng.normal(0, 1, 20_000)) < 0.01
    assert metrics.psi(base, rng.normal(1, 1, 20_000)) > 0.25


def test_psi_counts_actual_scores_beyond_expected_range() -> None:
    # All actual scores lie above every expected one: they fall in the open top bin.
    value = metrics.psi(np.linspace(0, 1, 100), np.full(50, 5.0), n_bins=4)
    assert math.isfinite(value) and value > 1


def test_evaluate_is_consistent_and_json_serialisable() -> None:
    y, p = _sample(decimals=2)
    report = metrics.evaluate(y, p)
    assert set(report) == {
        "auc",
        "gini",
        "ks",
        "brier",
        "log_loss",
        "ece",
        "n",
        "default_rate",
        "mean_pd",
    }
    assert json.loads(json.dumps(report)) == report
    assert all(type(v) in (int, float) for v in report.values())
    assert report["n"] == len(y)
    assert report["auc"] == metrics.auc(y, p)
    assert report["gini"] == pytest.approx(2 * report["auc"] - 1)
    assert report["ks"] == metrics.ks(y, p)
    assert report["brier"] == metrics.brier(y, p)
    assert report["log_loss"] == metrics.log_loss(y, p)
    assert report["ece"] == metrics.ece(y, p)
    assert report["default_rate"] == pytest.approx(y.mean())
    assert report["mean_pd"] == pytest.approx(p.mean())


@pytest.mark.parametrize(
    "fn",
    [
        metrics.auc,
        metrics.gini,
        metrics.ks,
        metrics.ks_curve,
        metrics.roc_curve,
        metrics.evaluate,
    ],
    ids=lambda f: f.__name__,
)
def test_one_class_is_rejected(fn) -> None:
    with pytest.raises(
        ValueError, match=r"needs both classes in y, but all 3 rows are non-defaults"
    ):
        fn([0, 0, 0], [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    "y, p, message",
    [
        ([0, 1, 1], [0.1, 1.2, 0.3], r"p has 1 values outside \[0, 1\], first: 1.2 at index 1"),
        ([0, 1, 1], [0.1, 0.2, -0.5], r"p has 1 values outside \[0, 1\], first: -0.5 at index 2"),
        (
            [0, 1, 1],
            [0.1, np.nan, 0.3],
            r"p has 1 values that are not finite.*first: nan at index 1",
        ),
        (
            [0, 1, 1],
            [0.1, 0.2, np.inf],
            r"p has 1 values that are not finite.*first: inf at index 2",
        ),
        (
            [0, 2, 1, 3],
            [0.1, 0.2, 0.3, 0.4],
            r"y has 2 values that are not 0/1 labels, first: 2.0 at index 1",
        ),
        ([0, 1, 1], [0.1, 0.2], r"differ in length: 3 vs 2"),
        ([], [], r"empty"),
        ([[0, 1]], [[0.1, 0.2]], r"must be 1-D"),
    ],
    ids=["above-one", "negative", "nan", "inf", "bad-label", "length", "empty", "2-d"],
)
@pytest.mark.parametrize(
    "fn",
    [
        metrics.auc,
        metrics.roc_curve,
        metrics.brier,
        metrics.log_loss,
        metrics.ece,
        metrics.evaluate,
    ],
)
def test_invalid_inputs_name_the_problem(fn, y, p, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fn(y, p)


@pytest.mark.parametrize(
    "expected, actual, message",
    [
        ([], [0.1], r"expected must be a non-empty 1-D sample"),
        ([0.1, 0.2], [0.1, np.nan], r"actual has 1 values that are not finite.*at index 1"),
    ],
)
def test_psi_rejects_bad_samples(expected, actual, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.psi(expected, actual)
