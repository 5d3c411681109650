"""Raw file columns to typed values, as a data config declares them; errors name the key to set.

A lender's export is rarely clean: targets are words (``good``/``bad``, ``Charged Off``), numbers
come as ``83.70%``, ``$1,234`` or `` 36 months``, "no value" is written ``n/a`` or coded ``-9``,
and periods are dates such as ``Dec-2011``. Each function here turns one raw column into what
the model reads, or raises a ``DataError`` that names the file, the column, the first bad data
row and the config key that fixes it. ``first_row`` is the global number of the column's first
row, so a rank reading one shard of a book still names the row of the whole book.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from training.data.config import DataConfig, SplitConfig
from training.data.preprocess import is_number, label_text
from training.data.schema import Parse
from training.errors import DataError

_PERCENT = re.compile(r"^\s*[-+]?\d[\d,]*(\.\d+)?\s*%\s*$")
_MONEY = re.compile(
    r"^\s*\(?\s*[^\d\s-]{0,3}\s*-?\d{1,3}([,' ]\d{3})+(\.\d+)?\s*\)?\s*$|^\s*[$€£¥]"
)
_NUMBER = re.compile(r"([-+]?\d+(?:\.\d+)?)")  # the first number anywhere in the text
_LEADING = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)")  # a number the text starts with


def _row(mask: np.ndarray, first_row: int) -> int:
    """The 1-based data row of the first True in ``mask`` (the header is not a data row)."""
    return first_row + int(np.flatnonzero(mask)[0]) + 1


def mark_missing(col: pd.Series, tokens: list[Any]) -> pd.Series:
    """Values listed in ``tokens`` (``data.missing_values`` and the feature's ``missing``) become missing."""
    if not tokens or len(col) == 0:
        return col
    if pd.api.types.is_numeric_dtype(col.dtype):
        codes = [float(t) for t in tokens if is_number(t)]
        return col.mask(col.isin(codes)) if codes else col
    text = {label_text(t) for t in tokens}
    uniq = pd.unique(col.dropna())
    hits = [u for u in uniq if label_text(u) in text]
    return col.mask(col.isin(hits)) if hits else col


def numeric(col: pd.Series, key: str, name: str, parse: Parse, source: str, first_row: int = 0):
    """A numeric column as float64, parsed as ``parse`` says; text that is not a number is an error
    that suggests the ``parse`` (or ``missing`` token) that would read it."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = col.astype("float64")
        if parse == Parse.percent:
            values = values / 100.0
    else:
        text = col.astype("string").str.strip()
        if parse == Parse.percent:
            values = pd.to_numeric(text.str.rstrip("%").str.replace(",", ""), errors="coerce") / 100
        elif parse == Parse.money:
            negative = text.str.startswith("(") & text.str.endswith(")") | text.str.contains("-")
            digits = text.str.replace(r"[^\d.]", "", regex=True).replace("", pd.NA)
            values = pd.to_numeric(digits, errors="coerce").where(~negative, lambda v: -v)
        elif parse in (Parse.leading_number, Parse.first_number):
            pattern = _LEADING if parse == Parse.leading_number else _NUMBER
            values = pd.to_numeric(text.str.extract(pattern, expand=False), errors="coerce")
        else:
            values = pd.to_numeric(text, errors="coerce")
        values = values.astype("float64")
    bad = values.isna().to_numpy() & col.notna().to_numpy()
    if bad.any():
        value = col.iloc[int(np.flatnonzero(bad)[0])]
        raise DataError(
            f"{source}: numeric column {name!r} has non-numeric value {value!r} at data row "
            f"{_row(bad, first_row)} ({int(bad.sum())} such rows); {_suggest(value, key, parse)}"
        )
    inf = np.isinf(values.to_numpy())
    if inf.any():
        raise DataError(
            f"{source}: numeric column {name!r} has an infinite value at data row "
            f"{_row(inf, first_row)}; list it under {key}.missing if it means no value"
        )
    return values


def _suggest(value: Any, key: str, parse: Parse) -> str:
    text = str(value)
    if parse == Parse.number and _PERCENT.match(text):
        return f"set {key}.parse=percent"
    if parse == Parse.number and _MONEY.match(text):
        return f"set {key}.parse=money"
    if parse == Parse.number and _LEADING.search(text):
        return f"set {key}.parse=leading_number (it reads the number the text starts with)"
    if parse in (Parse.number, Parse.leading_number) and _NUMBER.search(text):
        return (
            f"give it its number in {key}.map (e.g. {{{text!r}: 0}}), or set "
            f"{key}.parse=first_number to read the first number anywhere in the text"
        )
    return (
        f"if {text!r} means no value, list it under {key}.missing (or data.missing_values); "
        f"if the column is a code or a label, set {key}.kind=categorical"
    )


def mapped(col: pd.Series, mapping: dict[Any, float]) -> pd.Series:
    """``col`` with the values ``mapping`` names replaced by their numbers (compared as text, so
    YAML's ``1`` and a file's ``"1"`` are one value); the rest as they were."""
    numbers = {label_text(k): float(v) for k, v in mapping.items()}
    uniq = pd.unique(col.dropna())
    hits = {u: numbers[label_text(u)] for u in uniq if label_text(u) in numbers}
    return col.map(lambda v: hits.get(v, v)).astype(object) if hits else col


def binary(values: pd.Series, name: str, sentinels: dict, source: str, first_row: int = 0):
    """A numeric column declared binary must hold 0 and 1 only (missing values and sentinels aside)."""
    allowed = [0.0, 1.0, *(float(c) for c in sentinels if is_number(c))]
    bad = (values.notna() & ~values.isin(allowed)).to_numpy()
    if bad.any():
        raise DataError(
            f"{source}: binary column {name!r} has value {values.iloc[int(np.flatnonzero(bad)[0])]!r} "
            f"at data row {_row(bad, first_row)}; expected 0 or 1 (or set its kind to numeric)"
        )
    return values


def categorical(col: pd.Series) -> pd.Series:
    """Codes stay text (``'01'`` keeps its form); missing is ``None``."""
    codes, uniques = pd.factorize(col)  # each distinct value converted once: fast on big books
    labels = np.array([label_text(u) for u in uniques] + [None], dtype=object)
    return pd.Series(labels[codes], index=col.index, dtype=object)  # code -1 (missing) -> None


def target(col: pd.Series, cfg: DataConfig, source: str, first_row: int = 0) -> pd.Series:
    """The target as int64 0/1: numbers 0/1 as they are, or words mapped by ``data.positive_label``
    (the value(s) that mean default) or ``data.target_map`` (value -> 0/1)."""
    name = cfg.target
    if col.isna().any():
        raise DataError(
            f"{source}: target {name!r} is missing at data row {_row(col.isna().to_numpy(), first_row)} "
            "(every row needs a label: remove the unlabelled rows from the file)"
        )
    uniq = pd.unique(col)
    text = {u: label_text(u) for u in uniq}
    shown = sorted({*text.values()})[:10]
    if cfg.target_map:
        mapping = {label_text(k): int(v) for k, v in cfg.target_map.items()}
        unmapped = [u for u in uniq if text[u] not in mapping]
        if unmapped:
            bad = col.isin(unmapped).to_numpy()
            raise DataError(
                f"{source}: target {name!r} has value {text[unmapped[0]]!r} at data row "
                f"{_row(bad, first_row)} that data.target_map does not map (it maps "
                f"{sorted(mapping)}; the column has {shown})"
            )
        return col.map({u: mapping[text[u]] for u in uniq}).astype("int64")
    if cfg.positive_label is not None:
        positive = {label_text(v) for v in cfg.positive_labels}
        folded = {p.casefold() for p in positive}
        slips = [t for t in shown if t not in positive and t.casefold() in folded]
        if slips:  # "Bad" read as not default because the config says "bad"
            raise DataError(
                f"{source}: target {name!r} has value {slips[0]!r}, which data.positive_label="
                f"{cfg.positive_labels} matches only in another case (the column has {shown}): "
                "list the exact value(s) that mean default in data.positive_label"
            )
        return col.map({u: int(text[u] in positive) for u in uniq}).astype("int64")
    values = pd.to_numeric(col, errors="coerce")
    if values.isna().any() or not set(values.unique().tolist()) <= {0.0, 1.0}:
        example = next((t for t in shown if t not in ("0", "1")), shown[0])
        raise DataError(
            f"{source}: target {name!r} must be 0/1 (1 = default) but has values {shown}: "
            f"set data.positive_label to the value(s) that mean default "
            f"(e.g. data.positive_label={example!r}), or data.target_map (value: 0 or 1)"
        )
    return values.astype("int64")


def check_target_classes(
    counts: np.ndarray, cfg: DataConfig, source: str, values: Callable[[], list[str]]
) -> None:
    """Both classes present in the whole data set (``counts``: rows with 0 and with 1); else an
    error naming the raw values the column has (``values``, read only then: a collective)."""
    if (counts > 0).all():
        return
    label, n = (1, counts[1]) if counts[1] else (0, counts[0])
    hint = (
        f"; no value matched data.positive_label={cfg.positive_labels}"
        if cfg.positive_label is not None and label == 0
        else ""
    )
    raise DataError(
        f"{source}: target {cfg.target!r} has a single class ({label}) in all {int(n)} rows{hint} "
        f"(the column has {values()})"
    )


def period(col: pd.Series, cfg: SplitConfig, source: str, first_row: int = 0) -> pd.Series:
    """The out-of-time column: numbers (a year, a month index) or dates (``period_format``, or ISO)."""
    key, name = "data.split.period_format", cfg.period_column
    if cfg.period_format:
        values = pd.to_datetime(col.astype("string"), format=cfg.period_format, errors="coerce")
        bad = (values.isna() & col.notna()).to_numpy()
        if bad.any():
            raise DataError(
                f"{source}: period column {name!r} has value {col.iloc[int(np.flatnonzero(bad)[0])]!r} "
                f"at data row {_row(bad, first_row)} that {key}={cfg.period_format!r} does not read"
            )
        return values
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return col
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.astype("float64")
    values = pd.to_numeric(col, errors="coerce")
    if (values.isna() == col.isna()).all():
        return values.astype("float64")
    dates = pd.to_datetime(col.astype("string"), format="ISO8601", errors="coerce")
    bad = (dates.isna() & col.notna()).to_numpy()
    if bad.any():
        raise DataError(
            f"{source}: period column {name!r} has value {col.iloc[int(np.flatnonzero(bad)[0])]!r} "
            f"at data row {_row(bad, first_row)}, neither a number nor an ISO date: set {key} "
            "(a strptime format, e.g. '%b-%Y' for Dec-2011)"
        )
    return dates


def period_bound(value: Any, key: str, dates: bool, fmt: str | None) -> Any:
    """``valid_from``/``test_from`` in the period column's terms: a number, or a date (a year
    such as 2015 means 1 January 2015; text is read with ``period_format`` or as ISO)."""
    if not dates:
        if not is_number(value):
            raise DataError(
                f"config {key}={value!r}: the period column holds numbers; give a number"
            )
        return float(value)
    if is_number(value):
        return pd.Timestamp(year=int(float(value)), month=1, day=1)
    for f in (fmt, "ISO8601"):
        if f:
            stamp = pd.to_datetime(str(value), format=f, errors="coerce")
            if not pd.isna(stamp):
                return stamp
    raise DataError(
        f"config {key}={value!r}: not a date (use ISO, e.g. 2015-01-01, or data.split.period_format)"
    )


# ---------------------------------------------------------------------------------------------
# Protected columns as groups (fairness per group is measured by training/governance/fairness.py)


def bands(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Numbers -> band labels such as "<25", "25-35", ">=50"; missing -> "missing"."""
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    names = (
        [f"<{edges[0]:g}"]
        + [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        + [f">={edges[-1]:g}"]
    )
    out = np.asarray(names, dtype=object)[np.searchsorted(edges, x, side="right")]
    return np.where(np.isnan(x), "missing", out)


def groups_of(values: np.ndarray, edges: list[float] | None) -> np.ndarray:
    """A protected column's group label per row: its band, or its value as text."""
    if edges:
        return bands(values, edges)
    return pd.Series(values, dtype=object).astype(str).where(pd.notna(values), "missing").to_numpy()
