"""The data config: where a data set is, what its columns are, how it is split (``data.*``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omegaconf import MISSING

from training.data.schema import HISTORY_STATS as STATS
from training.data.schema import FeatureSpec, Kind, Source
from training.errors import as_enum, check


class DataFormat(StrEnum):
    """How a data set is read: generated (the synthetic SME book), or a file or folder of one."""

    synthetic = "synthetic"
    csv = "csv"
    parquet = "parquet"
    arff = "arff"


class SplitMethod(StrEnum):
    """Rows to train/valid/test: at random within each class, or out of time by a period."""

    stratified = "stratified"
    time = "time"


@dataclass(kw_only=True)
class SplitConfig:
    """Stratified random split, or out-of-time by a period column (train < valid_from <= valid < test_from <= test).

    The period column holds numbers (a year, a month index) or dates: ISO dates are read as they
    are, other forms with ``period_format`` (a strptime format: ``'%b-%Y'`` reads ``Dec-2011``).
    With dates, ``valid_from``/``test_from`` are dates too (``2015-01-01``; a bare year is its
    1 January).
    """

    method: SplitMethod = SplitMethod.stratified
    train: float = 0.70
    valid: float = 0.15
    test: float = 0.15
    period_column: str | None = None
    period_format: str | None = None
    valid_from: Any = None  # a number or a date
    test_from: Any = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.method = as_enum(SplitMethod, "data.split.method", self.method)
        if self.method == "stratified":
            for key in ("train", "valid", "test"):
                v = getattr(self, key)
                check(0 < v < 1, f"data.split.{key}", v, "must be in (0, 1)")
            total = self.train + self.valid + self.test
            check(
                math.isclose(total, 1.0, abs_tol=1e-6),
                "data.split.train+valid+test",
                round(total, 6),
                "must sum to 1",
            )
            return
        for key in ("period_column", "valid_from", "test_from"):
            value = getattr(self, key)
            check(
                value not in (None, ""), f"data.split.{key}", value, "is required for method=time"
            )
        if all(isinstance(v, (int, float)) for v in (self.valid_from, self.test_from)):
            check(
                self.valid_from < self.test_from,
                "data.split.valid_from",
                self.valid_from,
                f"must be < data.split.test_from={self.test_from}",
            )


class Keep(StrEnum):
    """What a side table's key repeated on several rows means (``data.tables[i].keep``): ``error``
    refuses the file, naming a repeated key; ``first`` or ``last`` keeps that row in file order."""

    error = "error"
    first = "first"
    last = "last"


@dataclass(kw_only=True)
class TableConfig:
    """A static side table joined one-to-one: its ``key`` column equals ``join``, a column of the
    loan table or ``table.column`` of a side table listed before it (loan -> account ->
    district). Its ``features`` become inputs like the loan table's; a key on several rows is an
    error unless ``keep`` says which row to keep (file order)."""

    name: str = MISSING
    path: str = MISSING
    key: str = MISSING
    join: str = ""  # default: the key's own name in the loan table
    sep: str = ","
    encoding: str = "utf-8"
    keep: Keep = Keep.error
    features: list[FeatureSpec] = field(default_factory=list)


@dataclass(kw_only=True)
class SourceConfig:
    """An event source: a table of dated events per borrower (tax filings, court cases, previous
    loans, transactions), ``key`` matching ``join`` (a loan-table column or ``table.column``).

    For each loan only events strictly before its application date count, at most
    ``max_events`` (most recent first) within ``lookback_months``. Each numeric field gives, per
    window of ``windows`` months: ``stats`` (count, sum, mean, min, max, slope per month), and
    over the whole look-back its last value; each categorical field counts its most frequent
    values (``values``, or the ``top_values`` commonest in the file) per window. Reasons name the
    source (``name``), the field and the window.

    A wide file holds a short history as the loan table's own columns, one per field and period
    (a card's last six statements: ``PAY_AMT1`` .. ``PAY_AMT6``): ``columns`` maps each field to
    its columns, most recent first, and ``months_before`` dates them (default 1, 2, ...: the
    month before the application, the one before that, ...); no ``path``, ``key`` or ``time``.
    Without ``data.application_date`` every loan's application is the same day.
    """

    name: str = MISSING
    path: str = ""  # a dated source's file or folder of part files
    key: str = ""
    join: str = ""
    time: str = ""  # the event's date column
    time_format: str | None = None  # strptime format ('%y%m%d' reads 960728); ISO dates without
    sep: str = ","
    encoding: str = "utf-8"
    source: Source = Source.bureau  # what kind of record: legal, tax, ip, ...
    fields: list[FeatureSpec] = field(default_factory=list)
    windows: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    lookback_months: int | None = None  # default: the longest window
    max_events: int | None = None
    stats: list[str] = field(default_factory=lambda: list(STATS))
    top_values: int = 8
    values: dict[str, list[str]] = field(default_factory=dict)  # categorical field -> values
    sequence: int = 0  # the most recent events fed to the network one by one (0: statistics only)
    columns: dict[str, list[str]] = field(default_factory=dict)  # wide: field -> loan-table columns
    months_before: list[int] = field(default_factory=list)  # wide: each period's age (default 1..)


@dataclass(kw_only=True)
class DataConfig:
    """A data set: where it is, what its columns are, how to split it.

    For ``format: synthetic`` the schema comes from the generator and ``n_rows`` sets the size;
    for files, ``path`` is read relative to ``root`` (env ``RISKBRAIN_DATA_ROOT`` by default).
    """

    name: str = MISSING
    format: DataFormat = DataFormat.synthetic
    root: str = "${oc.env:RISKBRAIN_DATA_ROOT,../shared/data}"
    path: str | None = None  # a file; for parquet also a folder of part files (hive partitions too)
    target: str = "default_flag"
    positive_label: Any = None  # the target value(s) that mean default, e.g. bad or [Charged Off]
    target_map: dict[Any, int] = field(default_factory=dict)  # or every target value -> 0/1
    missing_values: list[Any] = field(default_factory=list)  # tokens meaning "no value", any column
    sep: str = ","  # csv: the field separator ("\\s+": any whitespace, as in UCI's german.data)
    column_names: list[str] = field(default_factory=list)  # csv without a header row: its columns
    encoding: str = "utf-8-sig"  # csv: the text encoding (utf-8-sig also reads plain UTF-8)
    features: list[FeatureSpec] = field(default_factory=list)
    # A book of several tables: the loan table's application date (events strictly before it
    # are inputs), static side tables joined one-to-one, and event sources (training/data/history.py).
    application_date: str | None = None
    application_date_format: str | None = None  # strptime format; ISO dates without one
    tables: list[TableConfig] = field(default_factory=list)
    sources: list[SourceConfig] = field(default_factory=list)
    true_pd: str | None = (
        None  # a column of each row's true PD (a synthetic book): Bayes-optimal AUC
    )
    synthetic_book: bool = False  # write the synthetic SME book of histories under root when absent
    protected: list[str] = field(default_factory=list)  # columns never used as inputs or reasons
    protected_bands: dict[str, Any] = field(default_factory=dict)  # {age: [25, 50]}: 3 age bands
    n_rows: int = 100_000
    seed: int = 0
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        self.format = as_enum(DataFormat, "data.format", self.format)
        if self.format == "synthetic":
            check(self.n_rows >= 100, "data.n_rows", self.n_rows, "must be >= 100")
        else:
            check(bool(self.path), "data.path", self.path, f"is required for format={self.format}")
            check(
                bool(self.features),
                "data.features",
                "[]",
                f"must list the columns for format={self.format}",
            )
        for i, f in enumerate(self.features):
            check(
                f.monotone in (-1, 0, 1),
                f"data.features[{i}].monotone",
                f.monotone,
                "must be -1, 0 or 1",
            )
            check(
                f.monotone == 0 or f.kind != Kind.categorical,
                f"data.features[{i}].monotone",
                f.monotone,
                "applies to numeric and binary columns (categories have no order): set it to 0",
            )
            check(
                not f.sentinels or f.kind != Kind.categorical,
                f"data.features[{i}].sentinels",
                f.sentinels,
                "applies to numeric and binary columns (a categorical code is already a category)",
            )
        self._check_protected()
        self._check_book()
        check(
            self.positive_label is None or not self.target_map,
            "data.positive_label",
            self.positive_label,
            "and data.target_map both label the target: set one of them",
        )
        check(
            all(v in (0, 1) for v in self.target_map.values()),
            "data.target_map",
            dict(self.target_map),
            "must map each target value to 0 or 1 (1 = default)",
        )

    def _check_book(self) -> None:
        """Side tables and event sources: a loan table in a file, an application date for the
        sources, joins to columns listed before them, windows and stats that exist."""
        if not (self.tables or self.sources):
            return
        check(self.format == "csv", "data.format", self.format,
              "must be csv for a book with data.tables or data.sources (the loan table)")  # fmt: skip
        dated = [s for s in self.sources if not s.columns]
        check(not dated or bool(self.application_date), "data.application_date",
              self.application_date, "is required with data.sources that have a path: the loan "
              "table's column whose date events must precede")  # fmt: skip
        names = [t.name for t in self.tables] + [s.name for s in self.sources]
        for i, name in enumerate(names):
            check(names.index(name) == i, "data.tables/sources name", name, "is used twice")
        for i, t in enumerate(self.tables):
            check(t.keep in Keep.__members__, f"data.tables[{i}].keep", t.keep,
                  "must be error, first or last")  # fmt: skip
            self._check_join(f"data.tables[{i}].join", t.join or t.key, self.tables[:i])
        for i, src in enumerate(self.sources):
            key = f"data.sources[{i}]"
            if src.columns:
                _check_wide(key, src)
            else:
                for part in ("path", "key", "time"):
                    check(bool(getattr(src, part)), f"{key}.{part}", getattr(src, part),
                          "is required for a source of dated events (or set columns: the "
                          "loan table's columns of each period, for a wide file)")  # fmt: skip
                self._check_join(f"{key}.join", src.join or src.key, self.tables)
            check(bool(src.fields) or "count" in src.stats, f"{key}.fields", "[]",
                  "must list the event columns to learn from (or keep 'count' in stats)")  # fmt: skip
            check(bool(src.windows) and all(int(w) > 0 for w in src.windows), f"{key}.windows",
                  list(src.windows), "must list positive numbers of months, e.g. [3, 6, 12, 24]")  # fmt: skip
            unknown = [s for s in src.stats if s not in STATS]
            check(not unknown, f"{key}.stats", unknown, f"are not stats; choose from {list(STATS)}")
            check(0 <= src.sequence <= 512, f"{key}.sequence", src.sequence,
                  "must be a number of events in [0, 512]")  # fmt: skip
            check(src.max_events is None or src.max_events > 0, f"{key}.max_events",
                  src.max_events, "must be a positive number of events (or null: all)")  # fmt: skip
            for j, f in enumerate(src.fields):
                check(f.kind != Kind.binary, f"{key}.fields[{j}].kind", f.kind.value,
                      "must be numeric or categorical for an event field")  # fmt: skip

    @staticmethod
    def _check_join(key: str, join: str, before: list[TableConfig]) -> None:
        """``join`` is a loan-table column, or ``table.column`` of a side table listed before."""
        if "." not in join:
            return
        table = join.split(".", 1)[0]
        check(table in [t.name for t in before], key, join,
              f"names table {table!r}, which is not a data.tables entry listed before it "
              f"(tables: {[t.name for t in before]})")  # fmt: skip

    def _check_protected(self) -> None:
        """A protected column is never an input; its bands are numbers in ascending order."""
        inputs = [f.name for f in self.features]
        for i, name in enumerate(self.protected):
            check(
                name not in inputs,
                f"data.protected[{i}]",
                name,
                f"is also data.features[{inputs.index(name) if name in inputs else -1}]: a "
                "protected attribute is never a model input; remove one of the two",
            )
        for name, edges in self.protected_bands.items():
            check(
                len(edges) > 0
                and all(isinstance(e, int | float) for e in edges)
                and list(edges) == sorted(edges),
                f"data.protected_bands.{name}",
                list(edges),
                "must list the band edges of a data.protected column, numbers in ascending order",
            )

    @property
    def positive_labels(self) -> list[Any]:
        """``positive_label`` as a list (a YAML scalar or list)."""
        if self.positive_label is None:
            return []
        return (
            list(self.positive_label)
            if isinstance(self.positive_label, (list, tuple))
            else [self.positive_label]
        )


def _check_wide(key: str, src: SourceConfig) -> None:
    """A wide source: each field's columns, one per period, and the periods' ages in months."""
    for part in ("path", "key", "time", "join"):
        check(not getattr(src, part), f"{key}.{part}", getattr(src, part),
              "must be empty for a source read from the loan table's columns (columns is set)")  # fmt: skip
    names = [f.name for f in src.fields]
    check(sorted(names) == sorted(src.columns), f"{key}.columns", sorted(src.columns),
          f"must map each field {names} to its columns, one per period, most recent first")  # fmt: skip
    periods = {len(v) for v in src.columns.values()}
    check(len(periods) == 1, f"{key}.columns", {k: len(v) for k, v in src.columns.items()},
          "must give every field the same number of periods")  # fmt: skip
    n = periods.pop()
    ages = list(src.months_before) or list(range(1, n + 1))
    check(len(ages) == n and all(int(m) >= 1 for m in ages) and len(set(ages)) == n,
          f"{key}.months_before", list(src.months_before), f"must list {n} distinct ages in "
          "months, at least 1 (events before the application), one per column")  # fmt: skip
    src.months_before = [int(m) for m in ages]  # the default made explicit: 1, 2, ..., n
