"""A served request's event histories turned into inputs in numpy: the same numbers as
``History.aggregate``'s SQL, for the one borrower (or few) a request carries.

DuckDB computes every input of a book (``training/data/history.py``). For one borrower it is slow
where it does not matter at scale: each query's operators cost about a millisecond whatever the
rows, and a request of four sources needs about thirty queries (40 ms of a 30 ms budget, measured
in docs/benchmarks.md). Here the same definitions run over one borrower's events in a few
hundred microseconds. ``tests/unit/test_history_rows.py`` holds the two equal on random books.

Only values read the same way by both are read here: JSON numbers, plain decimal text, ISO dates
(or dates of the source's format, written as that format writes them). Anything else returns
None, and the request goes through DuckDB, which reads it or names what is wrong.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import datetime

import numpy as np

from training.data.history import DAYS_PER_MONTH, WINDOWED
from training.data.preprocess import is_number, label_text

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}:\d{2})?")


class Unread(Exception):
    """A value this module does not read as DuckDB does: the request goes through DuckDB."""


def inputs(history, app: np.ndarray, cells: dict[str, list[list[dict]]]) -> np.ndarray | None:
    """Every input of ``history`` (``History``) for loans with application dates ``app``, one
    row per loan in ``history.feature_names()`` order; ``cells[source][i]`` is loan i's list of
    events. None when a value needs DuckDB's reading."""
    try:
        rows = [
            [v for src in history.sources for v in _source(src, when, cells[src.name][i])]
            for i, when in enumerate(app.astype("datetime64[us]").tolist())
        ]
    except Unread:
        return None
    return np.asarray(rows, dtype=np.float64).reshape(len(app), len(history.feature_names()))


def dates(values: list, fmt: str | None) -> np.ndarray | None:
    """Application dates as ``parse_dates`` reads them, or None where DuckDB must read one."""
    try:
        return np.array([_time(v, fmt) for v in values], dtype="datetime64[us]")
    except Unread:
        return None


def _source(src, app: datetime, events: list[dict]) -> list[float]:
    """One loan's inputs from one source, in ``EventSource.columns()`` order."""
    t = [_time(e.get(src.time), src.time_format) for e in events]
    keep = [j for j, tj in enumerate(t) if _months_back(app, src.lookback) <= tj < app]
    keep.sort(key=lambda j: (t[j], j), reverse=True)  # most recent first; ties: later row first
    keep = keep[: src.max_events] if src.max_events else keep
    age = np.array([(app.date() - t[j].date()).days / DAYS_PER_MONTH for j in keep])
    when = np.array([t[j] for j in keep], dtype="datetime64[us]")
    numeric = [f for f in src.fields if f.kind == "numeric"]
    missing = {f.name: _missing(f.missing) for f in src.fields}  # once per field, not per value
    values = {f.name: np.array([_number(events[j].get(f.name), *missing[f.name]) for j in keep],
                               dtype=np.float64) for f in numeric}  # fmt: skip
    labels = {f.name: [_text(events[j].get(f.name), missing[f.name][0]) for j in keep]
              for f in src.fields if f.kind == "categorical"}  # fmt: skip
    out = []
    for w in src.windows:
        inside = when >= np.datetime64(_months_back(app, w), "us")
        if "count" in src.stats:
            out.append(float(inside.sum()))
        for f in numeric:
            out += _windowed(values[f.name], age, inside, src.stats)
        for f in (f for f in src.fields if f.kind == "categorical"):
            out += [float(sum(i and x == v for i, x in zip(inside, labels[f.name], strict=True)))
                    for v in f.values]  # fmt: skip
    if "last" in src.stats:
        for f in numeric:
            seen = values[f.name][~np.isnan(values[f.name])]
            out.append(seen[0] if len(seen) else math.nan)
    if "months_since_last" in src.stats:
        out.append(age.min() if len(age) else math.nan)
    for k in range(src.sequence):  # the k-th most recent event's slots
        there = k < len(keep)
        out += [values[f.name][k] if there else math.nan for f in numeric]
        out.append(age[k] if there else math.nan)
        for f in (f for f in src.fields if f.kind == "categorical"):
            x = labels[f.name][k] if there else None
            out += [math.nan if x is None else float(x == v) for v in f.values]
    return out


def _windowed(x: np.ndarray, age: np.ndarray, inside: np.ndarray, stats: list[str]) -> list[float]:
    """sum, mean, min, max and slope (per month, against -age) of the window's known values."""
    known = inside & ~np.isnan(x)
    y, m = x[known], -age[known]
    out = {
        "sum": float(y.sum()),
        "mean": float(y.mean()) if len(y) else math.nan,
        "min": float(y.min()) if len(y) else math.nan,
        "max": float(y.max()) if len(y) else math.nan,
        "slope": _slope(y, m),
    }
    return [out[s] for s in WINDOWED if s in stats]


def _slope(y: np.ndarray, x: np.ndarray) -> float:
    """regr_slope(y, x): covar_pop / var_pop, NaN for no rows or no spread in x (tested without
    the mean: three equal ages have a mean an ulp away from them)."""
    if len(y) == 0 or x.min() == x.max():
        return math.nan
    dx = x - x.mean()
    var = float((dx * dx).mean())
    return float((dx * (y - y.mean())).mean()) / var if var > 0 else math.nan


def _months_back(app: datetime, months: int) -> datetime:
    """``app - to_months(months)`` as DuckDB computes it: the day kept, or the month's last."""
    total = app.year * 12 + app.month - 1 - int(months)
    year, month = divmod(total, 12)
    day = min(app.day, calendar.monthrange(year, month + 1)[1])
    return app.replace(year=year, month=month + 1, day=day)


def _time(value, fmt: str | None) -> datetime:
    """An event's date, read only where DuckDB's reading is certain to be the same."""
    if not isinstance(value, str):
        raise Unread
    text = value.strip(" ")
    if fmt:
        try:
            t = datetime.strptime(text, fmt)
        except ValueError:
            raise Unread from None
        if t.strftime(fmt) != text:  # only as the format writes it: "1/2/2021" goes to DuckDB
            raise Unread
        return t
    if not _ISO.fullmatch(text):
        raise Unread
    return datetime.fromisoformat(text)


def _missing(missing: list) -> tuple[set[str], set[float]]:
    """A field's missing tokens as text (as DuckDB compares them), and those that are numbers as
    numbers (-1 also marks -1.0)."""
    return {label_text(m) for m in missing}, {float(m) for m in missing if is_number(m)}


def _number(value, tokens: set[str], codes: set[float]) -> float:
    """A numeric field's value (NaN: missing), as DuckDB's TRY_CAST reads its text."""
    if value is None or (text := str(value).strip(" ")) == "" or text in tokens:
        return math.nan
    if isinstance(value, bool) or not (
        isinstance(value, int | float) and math.isfinite(value) or _NUMBER.fullmatch(text)
    ):
        raise Unread
    x = float(value) if isinstance(value, int | float) else float(text)
    return math.nan if x in codes else x


def _text(value, tokens: set[str]) -> str | None:
    """A categorical field's value as trimmed text (None: missing)."""
    if value is None or (text := str(value).strip(" ")) == "":
        return None
    return None if text in tokens else text
