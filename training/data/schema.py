"""Feature schema: what each column is, where it comes from, and how risk may move with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


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


class Parse(Enum):
    """How a numeric column's text becomes a number (a lender's export is rarely clean)."""

    number = "number"  # plain numbers: 1234.5, -3, 1e6
    percent = (
        "percent"  # "83.70%" -> 0.837 (a bare number is taken as already a percent: 83.7 -> 0.837)
    )
    money = "money"  # "$1,234.50", "EUR 2 000", "1'000" -> 1234.5, 2000, 1000 (separators and symbols dropped)
    leading_number = (
        "leading_number"  # " 36 months" -> 36, "10+ years" -> 10 (text before the number: an error)
    )
    first_number = "first_number"  # the first number anywhere: "< 1 year" -> 1, "approx. 5" -> 5


# What an event source's fields give per window (training/data/history.py), a source's config
# picks among them (data.sources[i].stats).
HISTORY_STATS = ("count", "sum", "mean", "min", "max", "last", "slope", "months_since_last")


@dataclass(kw_only=True)
class FeatureSpec:
    """One input column.

    ``monotone`` is +1 where risk must not fall as the feature rises, -1 where it must not
    rise, 0 where no direction is imposed. The network holds it by construction
    (``training/models/monotone.py``) and every evaluation report checks it on test rows.

    ``missing`` lists values that mean "no value" in this column (tokens such as ``"n/a"`` or
    codes such as ``-1``). ``sentinels`` maps special codes to what they mean (FICO's HELOC file:
    ``{-7: no record, -8: not applicable, -9: not investigated}``): the value becomes missing and
    each code present in training gets its own 0/1 indicator, so "no record" is a signal of its
    own, not a number. ``map`` gives text values their number before ``parse`` reads the rest
    (``{"< 1 year": 0, "10+ years": 10}``), as ``data.target_map`` does for the target.
    """

    name: str
    kind: Kind = Kind.numeric
    source: Source = Source.application
    monotone: int = 0
    description: str = ""
    parse: Parse = Parse.number
    missing: list[Any] = field(default_factory=list)
    sentinels: dict[Any, str] = field(default_factory=dict)
    map: dict[Any, float] = field(default_factory=dict)  # a value -> its number, before parse


@dataclass(kw_only=True)
class Schema:
    """The columns a model reads and the binary target it predicts."""

    features: list[FeatureSpec]
    target: str
    period: str | None = None  # a column used only to split out-of-time, never as an input
    protected: list[str] = field(default_factory=list)  # never an input or a reason; for fairness
    # A book's event sources (training/data/history.py): the features they give are computed
    # from each loan's events, which a served request carries instead.
    history: Any = None  # training.data.history.History (a wing above this floor), or None

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"schema: duplicate feature names {dupes}")
        if self.target in names:
            raise ValueError(f"schema: target {self.target!r} is also listed as a feature")
        if clash := sorted(set(self.protected) & set(names)):
            raise ValueError(
                f"schema: protected columns {clash} are also features: a protected attribute is "
                "never a model input (remove it from data.features or from data.protected)"
            )
        if not self.features:
            raise ValueError("schema: no features")

    def names(self, kind: Kind | None = None) -> list[str]:
        return [f.name for f in self.features if kind is None or f.kind == kind]

    def inputs(self) -> list[FeatureSpec]:
        """The features a request carries as they are (a history's features are computed)."""
        derived = set(self.history.feature_names()) if self.history else set()
        return [f for f in self.features if f.name not in derived]
