"""A book of several tables, read by DuckDB: the loan table's rows joined one-to-one to static
side tables, and each loan's event history aggregated point-in-time (``training/data/history.py``).

``Book.assemble`` turns one rank's loan rows into flat rows the rest of the pipeline reads as it
reads any file: the loan table's columns, the side tables' features, and every event source's
inputs. It reads only the events of those loans (a semi-join on their keys; with Parquet,
DuckDB skips row groups and files it does not need). Errors name the table, the column, the
first bad row and the config key to set, as the flat loader's do.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.config import DataConfig, Keep, SourceConfig, TableConfig
from training.data.history import (
    SAME_DAY,
    EventField,
    EventSource,
    History,
    connect,
    date_sql,
    parse_dates,
    quote,
    row_keys,
    sql_text,
)
from training.data.preprocess import label_text
from training.data.schema import FeatureSpec, Kind
from training.errors import DataError

log = logging.getLogger("riskbrain")
HIDDEN = "__join__"  # prefix of the columns carried only for a later join


class Book:
    """The side tables and event sources of ``cfg``, with files under ``root``, for the loan
    table ``loans`` (raw, every row: a categorical field's commonest values are counted over the
    events some loan may see, so events after every application date never shape the inputs)."""

    def __init__(self, cfg: DataConfig, root: Path, loans: pd.DataFrame, where: str) -> None:
        self.cfg, self.root, self.con = cfg, root, connect()
        # per source, every loan's key and application date (what coverage() counts against)
        self._every_loan: dict[str, pd.DataFrame] = {}
        self.events_read: dict[str, int] = {}  # per source, the events the last assemble read
        self.history = None
        if cfg.sources:
            self.history = History(
                application_date=cfg.application_date or None,
                application_date_format=cfg.application_date_format,
            )
            frame, app = self._dated(loans, 0, where)
            self.history.sources = [
                self._source(i, s, frame, app) for i, s in enumerate(cfg.sources)
            ]
        side = [f for t in cfg.tables for f in t.features]
        self.features: list[FeatureSpec] = side + (self.history.features() if self.history else [])
        self._reconnect()  # what DuckDB used to resolve the sources (every loan's events) back

    def _reconnect(self) -> None:
        """A new DuckDB connection: DuckDB keeps the memory a connection used until it closes
        (570 MiB after assembling a 200k-loan book, its tables dropped)."""
        self.con.close()
        self.con = connect()

    # -- files -----------------------------------------------------------------------------
    def _path(self, table: TableConfig | SourceConfig) -> Path:
        return self.root / Path(table.path).expanduser()

    def _scan(self, key: str, table: TableConfig | SourceConfig) -> tuple[str, Path]:
        """The DuckDB relation that reads a table (every column as text, ``seq`` its row number
        in the file) and the path it reads."""
        path = self._path(table)
        if not path.exists():
            raise DataError(
                f"{key}: {table.name!r} file not found: {path} (set {key}.path, relative to "
                f"data.root={self.cfg.root!r})"
            )
        if path.is_dir() or path.suffix == ".parquet":
            return self._parquet(path), path
        encoding = table.encoding.lower().replace("utf-8-sig", "utf-8")
        scan = (f"read_csv({sql_text(str(path))}, delim = {sql_text(table.sep)}, header = true, "
                f"all_varchar = true, encoding = {sql_text(encoding)})")  # fmt: skip
        return f"(SELECT *, row_number() OVER () - 1 AS seq FROM {scan})", path

    def _parquet(self, path: Path) -> str:
        """A Parquet file or folder of parts (in name order), ``seq`` each row's number across
        them: the rows before its file (from the files' footers) plus its row in its file. Not
        a row number over the whole scan, so a filter on a column (a rank's range of keys)
        reaches the reader, which skips the row groups and files outside it."""
        import pyarrow.parquet as pq

        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{path}: no .parquet files in the folder")
        rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]])
        first = " ".join(f"WHEN {sql_text(str(f))} THEN {int(o)}"
                         for f, o in zip(files, offsets, strict=True))  # fmt: skip
        scan = (f"read_parquet([{', '.join(sql_text(str(f)) for f in files)}], "
                "hive_partitioning = true, filename = true, file_row_number = true)")  # fmt: skip
        return (f"(SELECT * EXCLUDE (filename, file_row_number), file_row_number + "
                f"CASE filename {first} END AS seq FROM {scan})")  # fmt: skip

    def _columns(self, key: str, table: TableConfig | SourceConfig, names: list[str]) -> str:
        """The table's scan, after checking it has the columns ``names``."""
        from training.data.loaders import closest_columns

        rel, path = self._scan(key, table)
        try:
            have = [r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
        except Exception as e:  # duckdb's own errors: a file it cannot read as configured
            raise DataError(
                f"{path}: cannot read {key} ({str(e).splitlines()[0]}); check {key}.sep "
                f"({table.sep!r}) and {key}.encoding"
            ) from None
        if missing := [n for n in names if n not in have]:
            raise DataError(
                f"{path}: missing columns {missing} (named in {key}; "
                f"{closest_columns(missing, [c for c in have if c != 'seq'])})"
            )
        return rel

    def _source(self, i: int, s: SourceConfig, loans: pd.DataFrame, app: np.ndarray) -> EventSource:
        """A source's definition, each categorical field's values resolved: as configured, or the
        ``top_values`` commonest among the events dated before some loan's application date and
        within its look-back (``loans``: the loan table joined to its side tables)."""
        key = f"data.sources[{i}]"
        spec = EventSource(
            name=s.name, time=s.time or "date", time_format=s.time_format, source=s.source.value,
            windows=[int(w) for w in s.windows], lookback_months=s.lookback_months,
            max_events=s.max_events, stats=list(s.stats), sequence=s.sequence,
            columns_by_period={k: list(v) for k, v in s.columns.items()},
            months_before=[int(m) for m in s.months_before],
        )  # fmt: skip
        if s.columns:
            rel = self._wide(i, spec, loans, app)
            ln = pd.DataFrame({"k": row_keys(len(loans)), "app": app})
        else:
            rel = self._columns(key, s, [s.key, s.time, *(f.name for f in s.fields)])
            ln = pd.DataFrame({"k": self._keys(loans, key, s, key), "app": app})
        self._every_loan[s.name] = ln
        self.con.register("ln", ln)
        for f in s.fields:
            values = [str(v) for v in s.values.get(f.name, [])]
            if f.kind == Kind.categorical and not values:
                missing = ", ".join(sql_text(label_text(m)) for m in f.missing) or "''"
                values = [r[0] for r in self.con.execute(
                    f"SELECT v FROM (SELECT trim(CAST(e.{quote(f.name)} AS VARCHAR)) AS v, "
                    f"{date_sql(spec.time, s.time_format)} AS t, CAST(e.{quote(s.key or 'k')} AS VARCHAR) "
                    f"AS k FROM {rel} AS e) AS e JOIN ln ON e.k = ln.k AND e.t < ln.app "
                    f"AND e.t >= ln.app - to_months({spec.lookback}) "
                    f"WHERE v IS NOT NULL AND v <> '' AND v NOT IN ({missing}) GROUP BY v "
                    f"ORDER BY count(*) DESC, v LIMIT {int(s.top_values)}").fetchall()]  # fmt: skip
            spec.fields.append(EventField(name=f.name, kind=f.kind.value, description=f.description,
                                          missing=list(f.missing), values=values))  # fmt: skip
        self.con.unregister("ln")
        if s.columns:
            self.con.unregister(rel)
        return spec

    def _wide(self, i: int, spec: EventSource, loans: pd.DataFrame, app: np.ndarray) -> str:
        """A wide source's events of ``loans`` (``EventSource.wide``) as the relation
        ``events_<i>``, after checking the loan table has its columns."""
        key, have = f"data.sources[{i}]", set(loans.columns)
        named = [c for columns in spec.columns_by_period.values() for c in columns]
        if missing := [c for c in named if c not in have]:
            from training.data.loaders import closest_columns

            raise DataError(
                f"{key}.columns: the loan table has no columns {missing} "
                f"({closest_columns(missing, list(loans.columns))})"
            )
        self.con.register(f"events_{i}", spec.wide(loans.reset_index(drop=True), app))
        return f"events_{i}"

    def coverage(self) -> dict[str, dict[str, int]]:
        """Per source, over the whole book: its events and keys, the keys no loan has (records of
        borrowers the loan table does not hold), and the loans with no event in their look-back
        before the application date (an empty history: a valid input, counted so a wrong join
        or date format shows)."""
        out = {}
        for i, s in enumerate(self.cfg.sources):
            key, spec, ln = f"data.sources[{i}]", self.history.sources[i], self._every_loan[s.name]
            if s.columns:  # a wide source: every loan has each of its periods
                out[s.name] = {"events": len(ln) * len(spec.months_before), "keys": len(ln),
                               "keys_without_loans": 0, "loans": len(ln),
                               "loans_without_events": 0}  # fmt: skip
                continue
            rel = self._columns(key, s, [s.key, s.time])
            self.con.register("ln", ln.assign(row=np.arange(len(ln))))
            # Each a query of its own that streams the events (a CTE read four times was
            # materialized: 1.1 GB for a 600k-loan book); the loans, not the events, are hashed.
            e = (f"(SELECT CAST({quote(s.key)} AS VARCHAR) AS k, "
                 f"{date_sql(s.time, s.time_format)} AS t FROM {rel})")  # fmt: skip
            events, n_keys, orphans = self.con.execute(
                f"SELECT count(*), count(DISTINCT k), count(DISTINCT k) FILTER (WHERE k NOT IN "
                f"(SELECT k FROM ln WHERE k IS NOT NULL)) FROM {e}"
            ).fetchall()[0]
            seen = self.con.execute(
                f"SELECT count(DISTINCT ln.row) FROM ln JOIN {e} AS e ON e.k = ln.k AND "
                f"e.t < ln.app AND e.t >= ln.app - to_months({spec.lookback})"
            ).fetchall()[0][0]
            empty = len(ln) - seen
            self.con.unregister("ln")
            out[s.name] = {"events": int(events), "keys": int(n_keys),
                           "keys_without_loans": int(orphans), "loans": len(ln),
                           "loans_without_events": int(empty)}  # fmt: skip
            log.info(
                "source %s: %d events of %d keys; %d keys have no loan; %d of %d loans have no "
                "event in the %d months before their application date", s.name, events, n_keys,
                orphans, empty, len(ln), spec.lookback,
            )  # fmt: skip
        return out

    # -- assembling ------------------------------------------------------------------------
    def assemble(self, loans: pd.DataFrame, first_row: int, where: str) -> pd.DataFrame:
        """``loans`` (raw rows of the loan table, the first being data row ``first_row`` + 1 of
        ``where``) with the side tables' features and every source's inputs as columns."""
        if self.history is None:
            return self.join_tables(loans)
        h = self.history
        frame, app = self._dated(loans, first_row, where)
        keys, events = {}, {}
        for i, (s, spec) in enumerate(zip(self.cfg.sources, h.sources, strict=True)):
            if s.columns:
                keys[s.name] = row_keys(len(frame))
                table = self._wide(i, spec, frame, app)
            else:
                keys[s.name] = self._keys(frame, f"data.sources[{i}]", s, where)
                table = self._events(i, s, keys[s.name])
            try:
                events[s.name] = h.typed(self.con, spec, table, self._where(s, where))
            finally:
                self._done(i)
            n = self.con.execute(f"SELECT count(*) FROM typed_{table}").fetchall()[0][0]
            self.events_read[s.name] = n
            log.debug("source %s: %d events of %d loans read", s.name, n, len(frame))
        inputs = h.aggregate(self.con, app, keys, events)
        self._reconnect()  # the events' memory back before the next chunk
        hidden = [c for c in frame.columns if c.startswith(HIDDEN)]
        return pd.concat([frame.drop(columns=hidden), inputs.set_axis(frame.index)], axis=1)

    def _where(self, s: SourceConfig, where: str) -> str:
        """Where a source's events come from, for errors: its file, or the loan table's."""
        return f"{where} (data.sources[{s.name}].columns)" if s.columns else str(self._path(s))

    def _dated(self, loans: pd.DataFrame, first_row: int, where: str):
        """The loans joined to the side tables, and their application dates (one day for all
        of a book without them: its sources are the loan table's own columns)."""
        frame, column = self.join_tables(loans), self.cfg.application_date
        if not column:
            return frame, np.full(len(frame), SAME_DAY)
        if column not in frame:
            raise DataError(f"{where}: no column {column!r} (data.application_date)")
        app = parse_dates(self.con, frame[column], self.cfg.application_date_format,
                          f"{where}: application date {column!r}",
                          pd.Series(first_row + np.arange(len(frame))),
                          "data.application_date_format")  # fmt: skip
        return frame, app

    def join_tables(self, loans: pd.DataFrame) -> pd.DataFrame:
        """The side tables joined in order (a left join: a loan without a match gets missing
        values); a column another table or source joins on is carried as ``__join__table.column``."""
        frame = loans.reset_index(drop=True)
        joins = [x.join for x in [*self.cfg.tables, *self.cfg.sources] if "." in (x.join or "")]
        for i, t in enumerate(self.cfg.tables):
            key = f"data.tables[{i}]"
            carried = [j.split(".", 1)[1] for j in joins if j.split(".", 1)[0] == t.name]
            names = [f.name for f in t.features]
            if clash := [n for n in names if n in frame.columns]:
                raise DataError(
                    f"{key}: {t.name!r} features {clash} are also columns of the loan table or "
                    "an earlier side table: rename one (a feature name is unique)"
                )
            rel = self._columns(key, t, [t.key, *names, *carried])
            table = self._one_per_key(key, t, rel)
            k = self._keys(frame, key, t, key)
            cols = ", ".join([*(f"{quote(n)}" for n in names),
                              *(f"{quote(c)} AS {quote(HIDDEN + t.name + '.' + c)}" for c in carried)])  # fmt: skip
            self.con.register("loan_keys", pd.DataFrame({"pos": np.arange(len(frame)), "k": k}))
            side = self.con.execute(
                f"SELECT {cols} FROM loan_keys LEFT JOIN {table} AS t "
                f"ON CAST(t.{quote(t.key)} AS VARCHAR) = loan_keys.k ORDER BY loan_keys.pos"
            ).df()
            self.con.unregister("loan_keys")
            unmatched = int(side[names[0]].isna().sum()) if names else 0
            if unmatched:
                log.info("table %s: %d of %d loans have no row (their features are missing)",
                         t.name, unmatched, len(frame))  # fmt: skip
            frame = pd.concat([frame, side.set_axis(frame.index)], axis=1)
        return frame

    def _one_per_key(self, key: str, t: TableConfig, rel: str) -> str:
        """The table with one row per key: a repeated key is an error unless ``keep`` is set."""
        col = quote(t.key)
        repeated = self.con.execute(
            f"SELECT CAST({col} AS VARCHAR), count(*) AS n, count(*) OVER () AS keys FROM {rel} "
            f"GROUP BY 1 HAVING n > 1 ORDER BY n DESC, 1 LIMIT 1"
        ).fetchall()
        if repeated and t.keep == Keep.error:
            value, n, keys = repeated[0]
            raise DataError(
                f"{key}: table {t.name!r} repeats key {t.key!r}: {value!r} is on {n} rows "
                f"({keys} keys repeat); a side table joins one row per key: set {key}.keep=first "
                "or last to keep one row of each (file order)"
            )
        order = "DESC" if t.keep == Keep.last else "ASC"
        return (f"(SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY CAST({col} AS VARCHAR) "
                f"ORDER BY seq {order}) AS _r FROM {rel}) WHERE _r = 1)")  # fmt: skip

    def _keys(self, frame: pd.DataFrame, key: str, x: TableConfig | SourceConfig, where: str):
        """Each loan's key for ``x`` as text: the loan-table column ``x.join`` (default its key's
        name), or a carried side-table column."""
        join = x.join or x.key
        column = HIDDEN + join if "." in join else join
        if column not in frame:
            raise DataError(
                f"{where}: {key}.join={join!r} is not a column of the loan table; set "
                f"{key}.join to the loan-table column (or table.column) that {x.key!r} matches"
            )
        return frame[column].map(label_text, na_action="ignore").astype(object).to_numpy()

    def _events(self, i: int, s: SourceConfig, keys: np.ndarray) -> str:
        """A temporary view of the events of the loans' keys (``k`` as text, ``seq``, the time
        column and the fields as read; ``_done`` drops it). A view, not a table: the typed copy
        (``History.typed``) is the one kept, read from the file without a text copy beside it."""
        rel = self._columns(f"data.sources[{i}]", s, [s.key, s.time])
        names = [s.time, *(f.name for f in s.fields)]
        wanted = pd.unique(keys[pd.notna(keys)])
        self.con.register(f"loan_keys_{i}", pd.DataFrame({"k": wanted}))
        table = f"events_{i}"
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT CAST({quote(s.key)} AS VARCHAR) AS k, "
            f"seq, {', '.join(quote(n) for n in names)} FROM {rel} "
            f"WHERE {self._key_range(rel, s.key, wanted)}"
            f"CAST({quote(s.key)} AS VARCHAR) IN (SELECT k FROM loan_keys_{i}) ORDER BY seq"
        ).fetchall()
        return table

    def _key_range(self, rel: str, key: str, wanted: np.ndarray) -> str:
        """``key BETWEEN lo AND hi AND `` over the keys ``wanted`` (text), in the key column's
        own type, or nothing: a filter the Parquet reader applies to its row groups' statistics,
        so a rank of a book written in key order (as ``jobs.make_portfolio`` writes it) reads
        only the row groups and files of its borrowers. The exact match follows it."""
        if not len(wanted):
            return ""
        kind = self.con.execute(f"DESCRIBE SELECT {quote(key)} FROM {rel}").fetchall()[0][1]
        if kind == "VARCHAR":
            bounds = [sql_text(min(wanted)), sql_text(max(wanted))]
        elif kind in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"):
            try:  # exact integers (a float would round 19-digit keys)
                numbers = [int(k) for k in wanted]
            except ValueError:
                return ""
            bounds = [str(min(numbers)), str(max(numbers))]
        else:
            return ""
        return f"{quote(key)} BETWEEN {bounds[0]} AND {bounds[1]} AND "

    def _done(self, i: int) -> None:
        """Source i's view of events and the keys it reads gone."""
        if self.cfg.sources[i].columns:
            self.con.unregister(f"events_{i}")
            return
        self.con.execute(f"DROP VIEW IF EXISTS events_{i}")
        self.con.unregister(f"loan_keys_{i}")

    def requests(self, loans: pd.DataFrame) -> pd.DataFrame:
        """What a served request carries for these loans beyond their flat features: the
        application date and, per source, the events as JSON text (the file's values)."""
        assert self.history is not None
        frame, column, out = self.join_tables(loans), self.history.application_date, {}
        if column:
            out[column] = frame[column].map(label_text, na_action="ignore").to_numpy()
        flat = {f.name for f in self.cfg.features}
        for i, s in enumerate(self.cfg.sources):
            if s.columns:  # the loan table's own columns, as the file holds them
                spec = self.history.sources[i]
                out |= {
                    c: frame[c].to_numpy() for c in History.event_columns(spec) if c not in flat
                }
                continue
            keys = self._keys(frame, f"data.sources[{i}]", s, "the example")
            table = self._events(i, s, keys)
            try:
                raw = self.con.execute(f"SELECT * FROM {table} ORDER BY seq").df().astype(object)
            finally:
                self._done(i)
            raw = raw.where(raw.notna(), None)  # JSON null, not NaN
            by_key = {k: g.drop(columns=["k", "seq"]).to_dict("records")
                      for k, g in raw.groupby("k", sort=False)}  # fmt: skip
            out[s.name] = [json.dumps(by_key.get(k, []), default=str) for k in keys]
        return pd.DataFrame(out, index=loans.index)


def requests_of_rows(cfg: DataConfig, rows: np.ndarray) -> pd.DataFrame:
    """What a served request carries beyond the flat features (``Book.requests``) for the loan
    table's rows ``rows``: the promotion gate scores hold-out rows as a deployment would."""
    from training.data.loaders import data_path, data_root, read_file
    from training.data.schema import Schema

    path = data_path(cfg)
    loans = read_file(path, cfg, Schema(features=list(cfg.features), target=cfg.target))
    book = Book(cfg, data_root(cfg), loans, str(path))
    return book.requests(loans.iloc[rows]).reset_index(drop=True)
