"""Each loan's event histories as model inputs: events strictly before the application date,
aggregated per source and window by DuckDB.

One definition serves training and the served model: ``History`` holds each source's fields,
windows and statistics (stored in the model's bundle), ``History.aggregate`` runs the same SQL
over a book's events (``training/data/book.py`` reads them from files) and over the events a
request carries (``History.from_request``). DuckDB does the point-in-time join, the per-loan
ranking (most recent first, for ``max_events``) and the grouped window statistics: an embedded
engine with the window functions and date arithmetic this needs, which reads CSV and Parquet
itself, rather than hand-written pandas group-bys.

Every feature is named ``<source>.<field>.<stat>_<months>m`` (``transactions.amount.mean_12m``),
``<source>.count_<months>m``, ``<source>.<field>.last``, ``<source>.months_since_last`` or
``<source>.<field>=<value>.count_<months>m``, and described in words, so a reason names the
source, the field and the period. A loan with no events in a source has count 0 and sum 0 and
its other statistics missing: an empty history is a state the network learns from.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.data.schema import HISTORY_STATS, FeatureSpec, Source
from training.errors import DataError

STATS = HISTORY_STATS
WINDOWED = ("sum", "mean", "min", "max", "slope")  # per numeric field and window
DAYS_PER_MONTH = 30.4375
_WORDS = {"sum": "total", "mean": "mean", "min": "lowest", "max": "highest",
          "slope": "trend per month of"}  # fmt: skip


def connect():
    """One DuckDB connection, single-threaded: aggregates then add up in the same order on every
    rank, so 1 process and N ranks give bit-identical inputs."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 1")
    return con


@dataclass(kw_only=True)
class EventField:
    name: str
    kind: str = "numeric"  # numeric | categorical
    description: str = ""
    missing: list[Any] = field(default_factory=list)
    values: list[str] = field(default_factory=list)  # categorical: the values counted


@dataclass(kw_only=True)
class EventSource:
    """One event table's definition: which fields, windows and statistics become inputs."""

    name: str
    time: str
    time_format: str | None = None
    source: str = "bureau"
    fields: list[EventField] = field(default_factory=list)
    windows: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    lookback_months: int | None = None
    max_events: int | None = None
    stats: list[str] = field(default_factory=lambda: list(STATS))

    @property
    def lookback(self) -> int:
        return int(self.lookback_months or max(self.windows))

    def columns(self) -> list[tuple[str, str, str]]:
        """(feature name, SQL aggregate, description) of every input this source gives."""
        out, n, when = [], self.name, "before the application"
        numeric = [f for f in self.fields if f.kind == "numeric"]
        for w in self.windows:
            inside = f"j.t >= j.app - to_months({int(w)})"
            if "count" in self.stats:
                out.append((f"{n}.count_{w}m", f"count(j.t) FILTER (WHERE {inside})",
                            f"{n}: events in the {w} months {when}"))  # fmt: skip
            for f in numeric:
                col = quote(f.name)
                for stat in (s for s in WINDOWED if s in self.stats):
                    sql = {
                        "sum": f"coalesce(sum({col}) FILTER (WHERE {inside}), 0)",
                        "slope": f"regr_slope({col}, -j.age) FILTER (WHERE {inside})",
                    }.get(stat, f"{stat.replace('mean', 'avg')}({col}) FILTER (WHERE {inside})")
                    out.append((f"{n}.{f.name}.{stat}_{w}m", sql,
                                f"{n}: {_WORDS[stat]} {f.name} in the {w} months {when}"))  # fmt: skip
            for f in (f for f in self.fields if f.kind == "categorical"):
                for v in f.values:
                    sql = f"count(j.t) FILTER (WHERE {inside} AND {quote(f.name)} = {sql_text(v)})"
                    out.append((f"{n}.{f.name}={safe_value(v)}.count_{w}m", sql,
                                f"{n}: events with {f.name} {v} in the {w} months {when}"))  # fmt: skip
        if "last" in self.stats:
            for f in numeric:
                out.append((f"{n}.{f.name}.last", f"arg_min({quote(f.name)}, j.rn)",
                            f"{n}: {f.name} of the last event {when}"))  # fmt: skip
        if "months_since_last" in self.stats:
            out.append((f"{n}.months_since_last", "min(j.age)",
                        f"{n}: months from the last event to the application (none: missing)"))  # fmt: skip
        return out

    def features(self) -> list[FeatureSpec]:
        kind = Source(self.source)
        return [FeatureSpec(name=name, source=kind, description=text)
                for name, _, text in self.columns()]  # fmt: skip

    def sql(self) -> str:
        """Per loan (``ln``: row, k, app), the statistics of its events (``ev``: k, seq, t,
        fields) dated strictly before ``app`` and within the look-back, the ``max_events`` most
        recent kept (ties on the date broken by file order)."""
        cap = f"WHERE rn <= {int(self.max_events)}" if self.max_events else ""
        aggregates = ",\n  ".join(f"{sql} AS {quote(name)}" for name, sql, _ in self.columns())
        return f"""
WITH j AS (
  SELECT * FROM (
    SELECT ln.row, ln.app, ev.*, date_diff('day', ev.t, ln.app) / {DAYS_PER_MONTH} AS age,
           row_number() OVER (PARTITION BY ln.row ORDER BY ev.t DESC, ev.seq DESC) AS rn
    FROM ln JOIN ev ON ev.k = ln.k AND ev.t < ln.app
                   AND ev.t >= ln.app - to_months({self.lookback})
  ) {cap}
)
SELECT ln.row,
  {aggregates}
FROM ln LEFT JOIN j ON j.row = ln.row
GROUP BY ln.row ORDER BY ln.row"""


@dataclass(kw_only=True)
class History:
    """A book's event sources and the loan table's application date: the inputs it derives."""

    application_date: str
    application_date_format: str | None = None
    sources: list[EventSource] = field(default_factory=list)

    def features(self) -> list[FeatureSpec]:
        return [f for s in self.sources for f in s.features()]

    def feature_names(self) -> list[str]:
        return [f.name for f in self.features()]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        sources = [
            EventSource(**{**s, "fields": [EventField(**f) for f in s["fields"]]})
            for s in d["sources"]
        ]
        return cls(**{**d, "sources": sources})

    def aggregate(
        self, con, app: np.ndarray, keys: dict[str, np.ndarray], events: dict[str, pd.DataFrame]
    ) -> pd.DataFrame:
        """Every source's inputs for the loans whose application dates are ``app``, one row per
        loan in its order: ``keys[source]`` is each loan's key in that source (text) and
        ``events[source]`` its events, with ``k`` (key as text), ``seq`` (file order), ``t``
        (date) and the typed fields."""
        parts = []
        for src in self.sources:
            ln = pd.DataFrame({"row": np.arange(len(app)), "k": keys[src.name], "app": app})
            con.register("ln", ln)
            con.register("ev", events[src.name])
            parts.append(con.execute(src.sql()).df().drop(columns="row"))
            con.unregister("ev")
            con.unregister("ln")
        out = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=range(len(app)))
        return out.astype("float64")

    def typed(self, con, src: EventSource, raw: pd.DataFrame, where: str) -> pd.DataFrame:
        """Raw events (``k``, ``seq``, the time column and the fields, as text or numbers) typed:
        ``t`` a date, numeric fields float64, categorical fields text. ``where`` names the file
        or request in errors, which name the column and the event's row (``seq`` + 1)."""
        out = {"k": raw["k"].astype(str), "seq": raw["seq"].astype("int64")}
        out["t"] = parse_dates(con, raw[src.time], src.time_format,
                               f"{where}: time column {src.time!r}", raw["seq"],
                               f"data.sources[{src.name}].time_format")  # fmt: skip
        for f in src.fields:
            col = _missing(raw[f.name], f.missing)
            if f.kind == "categorical":
                out[f.name] = col.map(label, na_action="ignore").astype(object)
                continue
            values = pd.to_numeric(col, errors="coerce").astype("float64")
            bad = (values.isna() & col.notna()).to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{where}: numeric field {f.name!r} has non-numeric value {col.iloc[i]!r} at "
                    f"row {int(raw['seq'].iloc[i]) + 1} ({int(bad.sum())} such rows); list it "
                    f"under the field's missing (data.sources[{src.name}].fields), or set its "
                    "kind to categorical"
                )
            out[f.name] = values
        return pd.DataFrame(out)

    def from_request(self, con, frame: pd.DataFrame) -> pd.DataFrame:
        """A served request's rows (application date and, per source, a list of events or its
        JSON text) with every source's inputs added as columns."""
        missing = [c for c in [self.application_date, *(s.name for s in self.sources)]
                   if c not in frame]  # fmt: skip
        if missing:
            raise DataError(
                f"request lacks columns {missing}: a model of event histories reads the "
                f"application date ({self.application_date!r}) and, per source, the list of that "
                "borrower's events (an empty list for none)"
            )
        keys = np.arange(len(frame)).astype(str).astype(object)
        app = parse_dates(con, frame[self.application_date].reset_index(drop=True),
                          self.application_date_format,
                          f"request: application date {self.application_date!r}",
                          pd.Series(np.arange(len(frame))),
                          "the date as the training file wrote it")  # fmt: skip
        events = {}
        for src in self.sources:
            rows = []
            for i, cell in enumerate(frame[src.name].tolist()):
                for event in _events(cell, src.name, i):
                    rows.append({"k": str(i), "seq": len(rows), **event})
            wanted = ["k", "seq", src.time, *(f.name for f in src.fields)]
            raw = pd.DataFrame(rows).reindex(columns=wanted) if rows else pd.DataFrame(
                {c: pd.Series(dtype=object) for c in wanted})  # fmt: skip
            events[src.name] = self.typed(con, src, raw, f"request source {src.name!r}")
        inputs = self.aggregate(con, app, {s.name: keys for s in self.sources}, events)
        return frame.assign(**{c: inputs[c].to_numpy() for c in inputs.columns})


def parse_dates(con, values: pd.Series, fmt: str | None, what: str, rows: pd.Series, key: str):
    """Text or numbers (``960728``, ``2019-03-01``) as dates by ``fmt`` (strptime; ISO dates
    without one), parsed by DuckDB for training and serving alike; a value that does not parse
    is an error naming ``what``, the row (``rows`` + 1) and the ``key`` that sets the format."""
    text = pd.DataFrame({"v": values.map(label, na_action="ignore").astype(object)})
    con.register("dates", text)
    parse = f"try_strptime(v, {sql_text(fmt)})" if fmt else "TRY_CAST(v AS TIMESTAMP)"
    out = con.execute(f"SELECT CAST({parse} AS TIMESTAMP) AS d FROM dates").df()["d"]
    con.unregister("dates")
    bad = (out.isna() & text["v"].notna()).to_numpy()
    if bad.any() or text["v"].isna().any():
        i = int(np.flatnonzero(bad | text["v"].isna().to_numpy())[0])
        raise DataError(
            f"{what}: {text['v'].iloc[i]!r} at row {int(rows.iloc[i]) + 1} is not a date"
            + (f" of format {fmt!r}" if fmt else " (ISO, e.g. 2019-03-01)")
            + f"; {key if ' ' in key else 'set ' + key + ' (a strptime format: %y%m%d, %d/%m/%Y)'}"
        )
    return out.to_numpy(dtype="datetime64[us]")


def _events(cell: Any, source: str, row: int) -> list[dict]:
    """A request cell: a list of events (dicts), its JSON text, or nothing (no events)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    if isinstance(cell, str):
        try:
            cell = json.loads(cell) if cell.strip() else []
        except json.JSONDecodeError as e:
            raise DataError(f"request row {row}: {source!r} is not JSON ({e.msg})") from None
    if isinstance(cell, np.ndarray):
        cell = cell.tolist()
    if not isinstance(cell, list) or not all(isinstance(e, dict) for e in cell):
        raise DataError(
            f"request row {row}: {source!r} must be a list of events, each an object of the "
            f"source's time column and fields; got {type(cell).__name__}"
        )
    return cell


def _missing(col: pd.Series, tokens: list[Any]) -> pd.Series:
    if not tokens:
        return col
    text = {label(t) for t in tokens}
    return col.mask(col.map(label, na_action="ignore").isin(text))


def label(v: Any) -> str:
    """A value as text: ``1.0`` and ``1`` are both ``'1'`` (as file values and YAML agree)."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_text(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def safe_value(v: str) -> str:
    """A category value as part of a feature name: characters LightGBM and file names refuse
    become ``_``."""
    return re.sub(r"[^\w \-+.]", "_", str(v)).strip() or "_"
