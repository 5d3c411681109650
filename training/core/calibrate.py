"""Fitting the PD calibration (``training/models/calibration.py``) on the validation rows.

SciPy's bounded scalar search finds the temperature, scikit-learn's logistic regression Platt's
two parameters and its isotonic regression the knots; ``auto`` compares none, temperature and
platt by their log loss on held-out folds of the validation rows (so a map with more parameters
wins only if it generalises), then fits the choice on them all. Every rank fits on every rank's
rows in global order, so under MPI or Ray the calibration equals one process's.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from training.models.calibration import EPS, Calibration, logit
from training.models.config import CalibrationConfig, CalibrationMethod


def fit_calibration(cfg: CalibrationConfig, y: np.ndarray, p: np.ndarray) -> Calibration:
    """The calibration of PDs ``p`` against labels ``y`` (the validation rows, every rank's, in
    global order: so every rank fits the same one, equal to one process's)."""
    z, y = logit(np.asarray(p, dtype=np.float64)), np.asarray(y, dtype=np.int64)
    if cfg.method != CalibrationMethod.auto:
        return _fit(str(cfg.method), z, y)
    losses = {m: _cross_validated_log_loss(m, z, y, cfg.folds) for m in _AUTO}
    best = min(losses, key=losses.__getitem__)
    said = ", ".join(f"{m} {v:.5f}" for m, v in losses.items())
    return dataclasses.replace(_fit(best, z, y), chosen_by=f"{cfg.folds}-fold log loss: {said}")


_AUTO = ("none", "temperature", "platt")


def _fit(method: str, z: np.ndarray, y: np.ndarray) -> Calibration:
    if method == "none":
        return Calibration()
    if method == "temperature":
        from scipy.optimize import minimize_scalar

        # log loss of logit * s, for s = 1 / T in (0.01, 100), searched in log space
        def loss(log_s: float) -> float:
            return _log_loss(y, np.exp(log_s) * z)

        found = minimize_scalar(loss, bounds=(np.log(0.01), np.log(100.0)), method="bounded")
        return Calibration("temperature", scale=float(np.exp(found.x)))
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        unpenalised = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
        fit = unpenalised.fit(z[:, None], y)
        a, b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
        if a <= 0:  # a PD that falls as the network's risk rises: not a calibration
            return Calibration(chosen_by="platt's slope was not positive: left uncalibrated")
        return Calibration("platt", scale=a, shift=b)
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(z, y)
    return Calibration(
        "isotonic",
        knots_x=iso.X_thresholds_.tolist(),
        knots_y=logit(iso.y_thresholds_).tolist(),
    )


def _cross_validated_log_loss(method: str, z: np.ndarray, y: np.ndarray, folds: int) -> float:
    """The log loss of ``method`` on each fold of the rows, fitted on the others (stratified,
    shuffled with a fixed seed)."""
    from sklearn.model_selection import StratifiedKFold

    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(z[:, None], y)
    total = 0.0
    for fit_rows, held in splits:
        fitted = _fit(method, z[fit_rows], y[fit_rows])
        total += _log_loss(y[held], fitted.logit(torch.from_numpy(z[held])).numpy()) * len(held)
    return total / len(z)


def _log_loss(y: np.ndarray, z: np.ndarray) -> float:
    """Mean log loss of logits ``z`` (computed from logits: exact where a PD rounds to 0 or 1)."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))
