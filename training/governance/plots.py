"""Evaluation plots (ROC, KS, calibration, score distribution) written as PNG files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from training import metrics

# matplotlib looks up its mathtext fonts (STIX, Computer Modern) once and logs a WARNING line per
# missing family: twenty lines of noise in every train.log on a machine without them.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

DPI = 110
FIGSIZE = (5.0, 4.0)
MAX_LINE_POINTS = 2_000  # enough for a smooth curve; 1e6-point lines are slow to draw
N_CALIBRATION_BINS = 10
BAD_COLOR, GOOD_COLOR = "tab:red", "tab:blue"


def _label(ax, title: str, legend: str, **axes) -> None:
    """A plot's axes (labels, limits), its title and where its legend goes."""
    ax.set(title=title, **axes)
    ax.legend(loc=legend)


def _titled(name: str, title: str) -> str:
    return f"{name}: {title}" if title else name


def _thin(n: int, keep: int) -> np.ndarray:
    """Indices of at most MAX_LINE_POINTS evenly spaced points out of n, always including `keep`."""
    if n <= MAX_LINE_POINTS:
        return np.arange(n)
    return np.union1d(np.linspace(0, n - 1, MAX_LINE_POINTS).astype(np.int64), [0, keep, n - 1])


def _plot_roc(fig: Figure, y: np.ndarray, p: np.ndarray, title: str) -> None:
    ax = fig.subplots()
    fpr, tpr = metrics.roc_curve(y, p)
    i = _thin(len(fpr), keep=int(np.argmax(tpr - fpr)))
    ax.plot(fpr[i], tpr[i], color=BAD_COLOR, label=f"model (AUC = {metrics.auc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="random (AUC = 0.5)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title=_titled("ROC", title))
    ax.set(
        xlabel="false positive rate (goods flagged)", ylabel="true positive rate (defaults caught)"
    )
    ax.legend(loc="lower right")


def _plot_ks(fig: Figure, y: np.ndarray, p: np.ndarray, title: str) -> None:
    ax = fig.subplots()
    thresholds, cdf_bad, cdf_good = metrics.ks_curve(y, p)
    at = int(np.argmax(np.abs(cdf_good - cdf_bad)))
    i = _thin(len(thresholds), keep=at)
    ax.step(thresholds[i], cdf_good[i], where="post", color=GOOD_COLOR, label="goods (y=0)")
    ax.step(thresholds[i], cdf_bad[i], where="post", color=BAD_COLOR, label="defaults (y=1)")
    lo, hi = sorted((cdf_bad[at], cdf_good[at]))
    ax.vlines(
        thresholds[at],
        lo,
        hi,
        color="black",
        linewidth=2,
        label=f"KS = {hi - lo:.3f} at PD {thresholds[at]:.3g}",
    )
    _label(ax, _titled("KS", title), "lower right", xlabel="predicted PD",
           ylabel="cumulative share with p <= PD", ylim=(0, 1.01))  # fmt: skip


def _plot_calibration(
    fig: Figure, y: np.ndarray, p: np.ndarray, title: str, p_before: np.ndarray | None = None
) -> None:
    """The reliability curve of ``p``; with ``p_before``, the uncalibrated network's beside it."""
    ax, ax_count = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    curves = [(p_before, "before calibration", GOOD_COLOR, "s")] if p_before is not None else []
    for pds, name, color, marker in [*curves, (p, "model", BAD_COLOR, "o")]:
        mean_p, frac_pos, _ = metrics.reliability(y, pds, n_bins=N_CALIBRATION_BINS)
        ece = metrics.ece(y, pds, n_bins=N_CALIBRATION_BINS)
        ax.plot(mean_p, frac_pos, marker=marker, color=color, label=f"{name} (ECE = {ece:.3f})")
    _label(ax, _titled("Calibration", title), "upper left", ylabel="observed default rate",
           xlim=(0, 1), ylim=(0, 1.01))  # fmt: skip
    # Counts span orders of magnitude in imbalanced books, so a log axis keeps the tail visible.
    ax_count.hist(p, bins=N_CALIBRATION_BINS, range=(0, 1), color="grey", log=True)
    ax_count.set(xlabel=f"predicted PD ({N_CALIBRATION_BINS} equal-width bins)", ylabel="count")


def _plot_score_distribution(fig: Figure, y: np.ndarray, p: np.ndarray, title: str) -> None:
    ax = fig.subplots()
    for label, name, color in ((0, "goods (y=0)", GOOD_COLOR), (1, "defaults (y=1)", BAD_COLOR)):
        scores = p[y == label]
        ax.hist(
            scores,
            bins=50,
            range=(0, 1),
            density=True,
            histtype="stepfilled",
            alpha=0.4,
            color=color,
            label=f"{name}, n={len(scores):,}",
        )
    _label(ax, _titled("Score distribution", title), "upper right", xlabel="predicted PD",
           ylabel="density", xlim=(0, 1))  # fmt: skip


PLOTS = {
    "roc.png": (_plot_roc, FIGSIZE),
    "ks.png": (_plot_ks, FIGSIZE),
    "calibration.png": (_plot_calibration, (FIGSIZE[0], FIGSIZE[1] * 1.25)),  # two stacked panels
    "score_distribution.png": (_plot_score_distribution, FIGSIZE),
}


def save_evaluation_plots(
    y: ArrayLike, p: ArrayLike, out_dir: Path, title: str = "", p_before: ArrayLike | None = None
) -> list[Path]:
    """Write roc.png, ks.png, calibration.png and score_distribution.png into out_dir; return
    their paths. ``p_before``: the PDs before calibration, drawn beside ``p`` in calibration.png."""
    metrics.auc(y, p)  # validates y and p (both classes present) before any file is written
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (draw, figsize) in PLOTS.items():
        # A bare Figure (not pyplot) keeps no global state: thread-safe, nothing to close, and
        # savefig renders PNG with Agg whatever backend the process has selected.
        fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
        if draw is _plot_calibration and p_before is not None:
            draw(fig, y, p, title, np.asarray(p_before, dtype=np.float64))
        else:
            draw(fig, y, p, title)
        fig.savefig(out_dir / name, dpi=DPI)
        paths.append(out_dir / name)
    return paths
