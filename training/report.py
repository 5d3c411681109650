"""The evaluation report of a job (``evaluation.json``) as typed parts, built once, read back.

The report is the product's contract: the model card, the sweep, the MLflow metrics and the
registered version's tags read it. Each part is a frozen dataclass whose fields are its JSON
keys, in the file's order, so ``Report.to_dict()`` writes the same file as ever and readers
name attributes: a misspelt field is an ``AttributeError`` (and ``tests/unit/test_report.py``
finds it statically), not an "n/a" in a card.

``Report.from_dict`` reads a file (or a producer's dict) and refuses a key no part declares, and
a part that lacks one of its keys, naming the path (``report.test.acu``): a stale or misspelt key
fails where the report is read. A part the job did not produce (the GBDT benchmark when it is
off, the fairness table without protected columns, the checks rank 0 alone runs) is None and its
key is left out of the file; ``run_key``, ``run_id`` and ``model_uri`` are written as ``null``
while the tracking store has not answered.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Self

from training.errors import RiskbrainError

# The registered version's tags besides the run's: the numbers versions are compared by.
VERSION_METRICS = (
    "test_auc", "test_ks", "benchmark_test_auc", "lift_auc", "monotone_violations",
    "reasons_completeness_max_error",
)  # fmt: skip

Interval = tuple[float, float]  # a percentile bootstrap interval: [low, high] in the file


class ReportError(RiskbrainError, ValueError):
    """A report (a file, or a producer's dict) does not fit the report's parts; names the key."""


def optional() -> Any:
    """A field whose key the file leaves out when it is None. (A plain ``X | None`` field is
    written as ``null``: a group's AUC, an alias not moved.)"""
    return field(default=None, metadata={"omit_none": True})


class Part:
    """A piece of the report: a dataclass whose fields are its JSON keys, in the file's order."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if not (value is None and f.metadata.get("omit_none")):
                out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls, raw: Any, where: str = "report") -> Self:
        if not isinstance(raw, dict):
            raise ReportError(f"{where}: expected an object, got {raw!r:.80}")
        _check_keys(cls, raw, where)
        hints = typing.get_type_hints(cls)
        return cls(**{k: _read(hints[k], v, f"{where}.{k}") for k, v in raw.items()})


def _check_keys(cls: type[Part], raw: dict, where: str) -> None:
    """Every key of ``raw`` a field of ``cls``, and every field without a default a key."""
    declared = fields(cls)
    names = [f.name for f in declared]
    unknown = [k for k in raw if k not in names]
    missing = [
        f.name
        for f in declared
        if f.name not in raw and f.default is MISSING and f.default_factory is MISSING
    ]
    if unknown:
        raise ReportError(f"{where}: unknown key {unknown[0]!r} ({cls.__name__} has {names})")
    if missing:
        raise ReportError(f"{where}: missing {missing} ({cls.__name__} has {names})")


def _plain(value: Any) -> Any:
    """A field's value as JSON holds it: parts as objects, tuples as lists."""
    if isinstance(value, Part):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _read(hint: Any, value: Any, where: str) -> Any:
    """``value`` from the file as the field's type ``hint``: parts built, containers walked,
    numbers and strings kept as the file holds them."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None and hint is not Any and type(None) not in args:
        raise ReportError(f"{where}: is null")
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        options = [a for a in args if a is not type(None)]
        parts = [a for a in options if isinstance(a, type) and issubclass(a, Part)]
        if len(parts) > 1:
            return _read_one_of(parts, value, where)
        return _read(options[0], value, where)
    if isinstance(hint, type) and issubclass(hint, Part):
        return hint.from_dict(value, where)
    if origin is list:
        return [_read(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        return {k: _read(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return tuple(value) if origin is tuple else value


def _read_one_of(parts: list[type[Part]], value: Any, where: str) -> Part:
    """The first of ``parts`` that ``value`` fits (an ensemble member: a rank's, or a trial's)."""
    errors = []
    for part in parts:
        try:
            return part.from_dict(value, where)
        except ReportError as e:
            errors.append(str(e))
    raise ReportError(f"{where}: fits none of {[p.__name__ for p in parts]}: {errors}")


@dataclass(frozen=True, kw_only=True)
class Metrics(Part):
    """``training.metrics.evaluate`` on one part's rows."""

    auc: float
    gini: float
    ks: float
    brier: float
    log_loss: float
    ece: float  # 10 equal-width bins
    n: int  # rows
    default_rate: float
    mean_pd: float


@dataclass(frozen=True, kw_only=True)
class Intervals(Part):
    """``training.metrics.bootstrap_ci`` of the test metrics; a metric no resample could score
    (one class only) is left out."""

    auc: Interval | None = optional()
    ks: Interval | None = optional()
    brier: Interval | None = optional()
    ece: Interval | None = optional()
    level: float
    resamples: int  # those holding both classes
    rows: int  # the rows resampled (evenly spaced, at most bootstrap_ci's max_rows)


@dataclass(frozen=True, kw_only=True)
class MonotoneCheck(Part):
    """One feature declared monotone, raised on the test rows where it has a value."""

    direction: int  # +1: the PD must rise with it, -1: fall
    rows: int
    violations: int  # rows whose PD moved the other way
    share: float


@dataclass(frozen=True, kw_only=True)
class Completeness(Part):
    """The reason codes' check: ``Explainer.describe()`` (its ``ExplainConfig``) and how far the
    contributions of test rows are from adding up to their logit."""

    method: str
    reference_rows: int
    reasons: int
    steps: int
    tolerance: float  # logits
    max_steps: int | None = optional()  # rows missing the tolerance are integrated again up to it
    rows_checked: int
    max_abs_error: float
    mean_abs_error: float
    passed: bool


@dataclass(frozen=True, kw_only=True)
class CalibrationSummary(Part):
    """The PD calibration fitted on the validation rows (``training/models/calibration.py``):
    the map chosen, and its effect on validation log loss and test ECE (the report's ``test``
    and ``valid`` metrics are of the calibrated PDs)."""

    method: str  # none | temperature | platt | isotonic
    chosen_by: str
    scale: float
    shift: float
    valid_log_loss_before: float
    valid_log_loss_after: float
    test_ece_before: float
    test_ece_after: float


@dataclass(frozen=True, kw_only=True)
class GroupFairness(Part):
    group: Any  # the protected column's value (or band)
    rows: int
    approval_rate: float
    default_rate: float
    mean_pd: float
    auc: float | None  # None: the group holds one class only
    ece: float


@dataclass(frozen=True, kw_only=True)
class AttributeFairness(Part):
    groups: list[GroupFairness]
    approval_ratio: float | None  # None: fewer than two groups of min_rows rows


@dataclass(frozen=True, kw_only=True)
class Fairness(Part):
    """``training.governance.fairness.fairness_table`` of the test rows."""

    cutoff_pd: float
    approve_rate: float
    min_rows: int
    attributes: dict[str, AttributeFairness]


@dataclass(frozen=True, kw_only=True)
class Training(Part):
    """How training went (``FitResult.summary()``), and the processes that trained."""

    best_epoch: int
    best_valid_auc: float
    epochs_run: int
    world_size: int


@dataclass(frozen=True, kw_only=True)
class Member(Part):
    """One network of an ensemble-parallel job: its training and seed."""

    best_epoch: int
    best_valid_auc: float
    epochs_run: int
    seed: int
    member: int


@dataclass(frozen=True, kw_only=True)
class TrialMember(Part):
    """One trial of a sweep's top-k ensemble; the file keys its objective by the metric's name."""

    trial: str
    run_id: str
    metric: str  # the sweep's objective, a validation metric: valid_auc, valid_ks, ...
    objective: float

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "run_id": self.run_id, self.metric: self.objective}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "report") -> Self:
        rest = [k for k in raw if k not in ("trial", "run_id")] if isinstance(raw, dict) else []
        if len(rest) != 1 or not str(rest[0]).startswith("valid_") or len(raw) != 3:
            raise ReportError(f"{where}: not a trial (trial, run_id, valid_<metric>): {raw!r:.80}")
        metric = str(rest[0])
        return cls(trial=raw["trial"], run_id=raw["run_id"], metric=metric, objective=raw[metric])


@dataclass(frozen=True, kw_only=True)
class RecipeCandidate(Part):
    """One recipe ``recipe=auto`` tried: what it changes, how it did on the validation rows."""

    name: str
    changes: dict[str, str]  # config key -> value, over the composed config
    valid_auc: float | None = optional()  # None: not trained (skipped)
    valid_ece: float | None = optional()  # before the PD calibration
    epochs_run: int | None = optional()
    seconds: float | None = optional()
    skipped: str | None = optional()  # why it was not trained
    chosen: bool = False


@dataclass(frozen=True, kw_only=True)
class RecipeSummary(Part):
    """How ``recipe=auto`` chose the recipe the model was trained with."""

    chosen: str
    chosen_by: str
    budget_minutes: float
    candidates: list[RecipeCandidate]


@dataclass(frozen=True, kw_only=True)
class Benchmark(Part):
    """``training.governance.benchmark.gbdt_benchmark``: LightGBM on the network's split."""

    model: str
    params: dict[str, Any]  # the setting chosen on validation AUC
    rounds: int
    valid_auc: float
    monotone: bool
    train_rows: int
    valid_rows: int
    seconds: float  # the search's, when it was fitted (a reused model keeps its fit's)
    key: str | None = optional()  # with benchmark.cache: the digest of its rows and settings
    reused: bool | None = optional()  # with benchmark.cache: read from it, fitted by an earlier job
    test: Metrics


@dataclass(frozen=True, kw_only=True)
class Lift(Part):
    """The network's test metric minus LightGBM's."""

    auc: float
    ks: float


@dataclass(frozen=True, kw_only=True)
class SplitPart(Part):
    rows: int
    default_rate: float


@dataclass(frozen=True, kw_only=True)
class SplitSummary(Part):
    """``training.data.split.summary``: how to reproduce the split, and its parts' sizes."""

    method: str  # stratified | time
    seed: int
    period_column: str | None = optional()  # method time only
    valid_from: Any = optional()  # a number or a date
    test_from: Any = optional()
    train: SplitPart
    valid: SplitPart
    test: SplitPart

    def parts(self) -> dict[str, SplitPart]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


@dataclass(frozen=True, kw_only=True)
class SourceCoverage(Part):
    """``training.data.book.Book.coverage``: one event source over every loan of the book."""

    events: int
    keys: int
    keys_without_loans: int  # borrowers the source has and the loan table does not
    loans: int
    loans_without_events: int  # no event in the look-back before the application date


@dataclass(frozen=True, kw_only=True)
class DataSummary(Part):
    source: str
    rows: int
    unused_columns: list[str]  # in the file, not in the schema: kept out, and said so
    protected: list[str]
    sources: dict[str, SourceCoverage] | None = optional()  # a book's event sources


@dataclass(frozen=True, kw_only=True)
class Registered(Part):
    name: str
    version: int | str | None  # None: pending, the tracking store has not answered yet
    alias: str | None  # None: not moved (the run's log says why)


@dataclass(frozen=True, kw_only=True)
class Report(Part):
    """What one job's model does on its test rows, how it was trained, and where it is."""

    test: Metrics | None = optional()
    test_ci: Intervals | None = optional()
    valid: Metrics | None = optional()
    psi_train_test: float | None = optional()  # PDs of training rows against test rows
    bayes_auc_test: float | None = optional()  # the true PDs are known (synthetic data)
    monotonicity: dict[str, MonotoneCheck] | None = optional()
    explain: Completeness | None = optional()
    calibration: CalibrationSummary | None = optional()
    fairness: Fairness | None = optional()
    training: Training | None = optional()
    recipe: RecipeSummary | None = optional()  # recipe=auto: the candidates and the choice
    ensemble: list[Member | TrialMember] | None = optional()
    benchmark: Benchmark | None = optional()
    lift: Lift | None = optional()
    split: SplitSummary | None = optional()
    data: DataSummary | None = optional()
    data_fingerprint: str | None = optional()
    # What publishing adds: the MLflow run and model (null until the store answers).
    run_key: str | None = None
    run_id: str | None = None
    model_uri: str | None = None
    registered: Registered | None = optional()

    def monotone_violations(self) -> int:
        """Test rows whose PD moved against a declared direction, over every feature."""
        return sum(m.violations for m in (self.monotonicity or {}).values())

    def flat_metrics(self) -> dict[str, float]:
        """The numbers as flat MLflow metrics: test_*, PSI, Bayes, checks, benchmark_test_*, lift_*."""
        out = {f"test_{k}": v for k, v in (self.test.to_dict() if self.test else {}).items()}
        for key in ("psi_train_test", "bayes_auc_test"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        if self.monotonicity is not None:
            out["monotone_violations"] = float(self.monotone_violations())
        if self.explain is not None:
            out["reasons_completeness_max_error"] = self.explain.max_abs_error
        if self.benchmark is not None:
            out |= {f"benchmark_test_{k}": v for k, v in self.benchmark.test.to_dict().items()}
        if self.lift is not None:
            out |= {f"lift_{k}": v for k, v in self.lift.to_dict().items()}
        return out

    def version_tags(self) -> dict[str, str]:
        """``VERSION_METRICS`` as the registered version's tags (4 decimals)."""
        return {k: f"{v:.4f}" for k, v in self.flat_metrics().items() if k in VERSION_METRICS}


def ensemble_member(raw: dict[str, Any]) -> Member | TrialMember:
    """One member of an ensemble as its producer lists it: a rank's network, or a sweep's trial."""
    return _read_one_of([Member, TrialMember], raw, "report.ensemble[]")
