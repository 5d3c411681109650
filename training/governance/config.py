"""What every evaluation report adds to the network's figures: the LightGBM benchmark
(``benchmark.*``) and the fairness report (``fairness.*``)."""

from __future__ import annotations

from dataclasses import dataclass

from training.errors import check


@dataclass(kw_only=True)
class BenchmarkConfig:
    """The GBDT benchmark: LightGBM on the network's split, reported next to it (``training/governance/benchmark.py``)."""

    enabled: bool = True
    n_trials: int = 8  # settings tried, the first LightGBM's default; the best by validation AUC
    max_rounds: int = 2000  # boosting rounds at most; early stopping on the validation rows
    early_stopping: int = 50  # rounds without a better validation AUC
    max_rows: int = 200_000  # training (and validation) rows it sees at most, evenly spaced
    monotone: bool = True  # hold the data config's monotone directions, as the network does
    seed: int = 0
    # A folder where the fitted model is kept by a key of its rows and settings, for jobs that
    # share a split (a sweep sets its own: its trials fit LightGBM once). None: fit every time.
    cache: str | None = None

    def __post_init__(self) -> None:
        for key in ("n_trials", "max_rounds", "early_stopping", "max_rows"):
            check(getattr(self, key) > 0, f"benchmark.{key}", getattr(self, key), "must be > 0")

    @property
    def rows(self) -> int | None:
        """The training and validation rows data preparation keeps raw for it (None: off)."""
        return self.max_rows if self.enabled else None


@dataclass(kw_only=True)
class FairnessConfig:
    """The fairness report per protected column (``training/governance/fairness.py``)."""

    approve_rate: float = 0.8  # the cut-off approves this share of rows, lowest PD first
    min_rows: int = 30  # smaller groups are listed but left out of the approval-rate ratio

    def __post_init__(self) -> None:
        check(
            0 < self.approve_rate < 1,
            "fairness.approve_rate",
            self.approve_rate,
            "must be in (0, 1)",
        )
        check(self.min_rows > 0, "fairness.min_rows", self.min_rows, "must be > 0")
