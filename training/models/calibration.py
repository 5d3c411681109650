"""PD calibration: a map of the network's PD logit fitted on validation rows after training.

A network trained for ranking (early stopping on validation AUC) can rank well and still be off
in level: a lender prices and provisions from the PD itself. So after training, the job fits one
of these maps on the validation rows' logits, never on test rows (``training/core/calibrate.py``),
and stores it with the model:

- ``temperature``: ``logit / T`` (one parameter; keeps the base rate where the network put it),
- ``platt``: ``a * logit + b`` (Platt scaling: a one-feature logistic regression, scikit-learn's),
- ``isotonic``: a monotone piecewise-linear map of the logit (scikit-learn's isotonic regression,
  interpolated between its knots), for large validation sets; set it explicitly,
- ``auto`` chooses among none, temperature and platt by their log loss on held-out folds of the
  validation rows, then fits the choice on all of them.

Every map is increasing, so a calibrated model ranks as before (AUC, monotone directions and
scorecard order unchanged). ``Calibrated`` applies the map inside the network's
``forward_dense``, so reasons are computed on the calibrated logit: for temperature and Platt the
contributions are the uncalibrated ones times ``a`` and completeness holds exactly as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from training.models.dense import DenseInput, mean_pd_logit

EPS = 1e-12  # PDs are clipped to [EPS, 1 - EPS] before taking logits


@dataclass(frozen=True)
class Calibration:
    """A fitted map of the PD logit (``method``), as the bundle stores it. Part of the serving
    runtime (torch and NumPy only); the fitting, with SciPy and scikit-learn, is
    ``training/core/calibrate.py``."""

    method: str = "none"
    scale: float = 1.0  # temperature: 1 / T; platt: a
    shift: float = 0.0  # platt: b
    knots_x: list[float] = field(default_factory=list)  # isotonic: logit in...
    knots_y: list[float] = field(default_factory=list)  # ...calibrated logit out
    chosen_by: str = "calibration.method"  # or the cross-validated log loss of each candidate

    def logit(self, z: torch.Tensor) -> torch.Tensor:
        """The calibrated logit of logits ``z`` (float64 in, float64 out; differentiable)."""
        if self.method == "isotonic":
            return _interpolate(z, self.knots_x, self.knots_y)
        return self.scale * z + self.shift

    def pd(self, p: np.ndarray) -> np.ndarray:
        """Calibrated PDs of uncalibrated ones."""
        z = torch.from_numpy(logit(np.asarray(p, dtype=np.float64)))
        return torch.sigmoid(self.logit(z)).numpy()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Calibration:
        return cls(**d) if d else cls()  # a bundle from before calibration: none


class Calibrated(DenseInput):
    """A network whose PD logit (its heads' mean PD) goes through a ``Calibration``.

    Shape: x_num (batch, n_num), x_onehot (batch, sum(cards)) -> logits (batch, 1)
    """

    def __init__(self, network: DenseInput, calibration: Calibration) -> None:
        super().__init__()
        self.network, self.calibration = network, calibration
        self.cat_cardinalities = network.cat_cardinalities

    def forward_dense(self, x_num: torch.Tensor, x_onehot: torch.Tensor) -> torch.Tensor:
        z = mean_pd_logit(self.network.forward_dense(x_num, x_onehot).double())
        return self.calibration.logit(z).unsqueeze(1).to(x_num.dtype)


def calibrated(network: DenseInput, calibration: Calibration) -> DenseInput:
    """``network`` with ``calibration`` applied (itself when the method is none)."""
    return network if calibration.method == "none" else Calibrated(network, calibration)


def uncalibrated(model: DenseInput) -> tuple[DenseInput, Calibration]:
    """The network inside ``model`` and its calibration (none for a bare network)."""
    if isinstance(model, Calibrated):
        return model.network, model.calibration
    return model, Calibration()


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _interpolate(z: torch.Tensor, xs: list[float], ys: list[float]) -> torch.Tensor:
    """Piecewise-linear through the knots ``(xs, ys)``, constant beyond them."""
    x = torch.tensor(xs, dtype=z.dtype, device=z.device)
    y = torch.tensor(ys, dtype=z.dtype, device=z.device)
    if len(x) == 1:
        return y.expand_as(z).clone()
    zc = z.clamp(x[0], x[-1])
    i = torch.searchsorted(x, zc.detach().contiguous()).clamp(1, len(x) - 1)
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    return y0 + (zc - x0) / (x1 - x0).clamp_min(1e-12) * (y1 - y0)
