"""What turns a PD into a decision, stored with every model: the scorecard's points (``score.*``)
and how reason codes are computed (``explain.*``).

Part of the serving runtime (``training/serving/package.py``): the standard library, numpy and
``training.errors`` only, so a served model reads these from its bundle without Hydra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.errors import check


@dataclass(kw_only=True)
class ScoreScale:
    """``base_points`` at good:bad odds of ``base_odds``; every ``pdo`` points double the odds.

    score = base_points + pdo / ln 2 * ln(odds / base_odds), odds = (1 - PD) / PD, so a higher
    score is a safer borrower (600 at 50:1, 620 at 100:1, 580 at 25:1 with the defaults).
    """

    base_points: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    def __post_init__(self) -> None:
        check(self.base_odds > 0, "score.base_odds", self.base_odds, "must be > 0 (good:bad odds)")
        check(self.pdo > 0, "score.pdo", self.pdo, "must be > 0 (points to double the odds)")

    def score(self, pd: np.ndarray) -> np.ndarray:
        """Shape: (n,) PDs -> (n,) points, float64; PDs of 0 or 1 are taken as 1e-12 from them."""
        p = np.clip(np.asarray(pd, dtype=np.float64), 1e-12, 1 - 1e-12)
        return self.base_points + self.pdo / math.log(2) * (
            np.log((1 - p) / p) - math.log(self.base_odds)
        )


@dataclass(kw_only=True)
class ExplainConfig:
    """How reasons are computed; stored with the model."""

    reasons: int = 4  # reasons per row (a request's params {"reasons": k} overrides; 0 = none)
    reference_rows: int = 16  # training rows the contributions are measured from
    method: str = "deeplift"  # or integrated_gradients (training/serving/explain.py)
    steps: int = 16  # integration points per reference row (integrated gradients)
    tolerance: float = 0.02  # the completeness error the report and the tests accept, in logits
    max_steps: int = 256  # rows missing the tolerance: again with 4x the points, up to this

    def __post_init__(self) -> None:
        for key in ("reference_rows", "steps"):
            check(getattr(self, key) > 0, f"explain.{key}", getattr(self, key), "must be > 0")
        check(self.max_steps >= self.steps, "explain.max_steps", self.max_steps,
              f"must be >= explain.steps={self.steps}")  # fmt: skip
        check(self.reasons >= 0, "explain.reasons", self.reasons, "must be >= 0")
        methods = ("deeplift", "integrated_gradients")
        check(self.method in methods, "explain.method", self.method, f"must be one of {methods}")
