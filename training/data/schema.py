"""Feature schema: what each column is, where it comes from, and how risk may move with it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    numeric = "numeric"
    categorical = "categorical"
    binary = "binary"


class Source(Enum):
    """The data source a feature comes from (SME lending uses many of them)."""

    operations = "operations"  # business operations: revenue, growth, employees
    financials = "financials"  # financial statements and ratios
    tax = "tax"  # VAT paid, filings, tax-credit grade
    legal = "legal"  # lawsuits, enforcement and court records
    ip = "ip"  # patents, trademarks, software copyrights
    social_credit = "social_credit"  # administrative penalties, abnormal-operation lists
    bureau = "bureau"  # credit bureau and repayment history
    application = "application"  # what the applicant states: amount, term, sector


@dataclass(kw_only=True)
class FeatureSpec:
    """One input column.

    ``monotone`` is +1 where risk must not fall as the feature rises, -1 where it must not
    rise, 0 where no direction is imposed. It is recorded with the model (in its schema); nothing
    enforces it in training or checks it in the evaluation report yet.
    """

    name: str
    kind: Kind = Kind.numeric
    source: Source = Source.application
    monotone: int = 0
    description: str = ""


@dataclass(kw_only=True)
class Schema:
    """The columns a model reads and the binary target it predicts."""

    features: list[FeatureSpec]
    target: str
    period: str | None = None  # a column used only to split out-of-time, never as an input

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"schema: duplicate feature names {dupes}")
        if self.target in names:
            raise ValueError(f"schema: target {self.target!r} is also listed as a feature")
        if not self.features:
            raise ValueError("schema: no features")

    def names(self, kind: Kind | None = None) -> list[str]:
        return [f.name for f in self.features if kind is None or f.kind == kind]
