"""Read a data set (synthetic, CSV, Parquet, ARFF) and validate it against its data config.

Every error names the file and, where it applies, the column, the first bad row and the config
key to change, so a user can fix their portfolio file or its YAML without reading code. How each
column's text becomes a value (targets as words, percent strings, sentinels, dates) is in
``training/data/columns.py``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.data import columns, synthetic
from training.data.book import Book
from training.data.config import DataConfig
from training.data.parquet import ParquetBook
from training.data.schema import Kind, Schema
from training.errors import DataError
from training.runtime.dist import DistContext

log = logging.getLogger("riskbrain")


@dataclass(frozen=True)
class Dataset:
    """A validated frame: the schema's feature columns (+ period column) and an int64 0/1 target.

    Under data parallelism it holds one rank's shard: rows ``offset .. offset + len(frame) - 1``
    of the whole data set, which has ``n_rows`` rows.
    """

    name: str
    frame: pd.DataFrame
    schema: Schema
    source: str  # file path, or "synthetic(n_rows=..., seed=...)"
    pd_true: np.ndarray | None = None  # synthetic only: the true PD of each row
    offset: int = 0
    n_rows: int = 0
    unused: tuple[str, ...] = ()  # the file's columns that no config key names
    read: str = ""  # what this rank read: "rows 0-999 of 1000 (the whole file)", row groups


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous, near-equal shards in rank order: rank r holds rows [lo, hi)."""
    return n * rank // world_size, n * (rank + 1) // world_size


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_root(cfg: DataConfig) -> Path:
    """``data.root``; a relative root is taken from the project's root folder."""
    root = Path(cfg.root).expanduser()
    return root if root.is_absolute() else PROJECT_ROOT / root


def data_path(cfg: DataConfig) -> Path:
    """``data.path`` under ``data.root``."""
    return data_root(cfg) / Path(cfg.path).expanduser()


CHUNK = 1 << 20  # rows validated (and made into tensors) at a time: bounds the memory a pass needs
# ... and at most this many bytes of float64 values a chunk: a book's 308 inputs, 27k rows (at
# 128 MiB, DuckDB's memory for a chunk's events made the peak of a book's preparation, 330 MiB more)
CHUNK_BYTES = 1 << 26


class Shard:
    """This rank's rows of a data set, read chunk by chunk: a generated block, a Parquet row
    group (only this rank's), or a slice of a CSV/ARFF file read whole.

    ``scan`` validates each chunk and hands it on, so a pass over a 100M-row book holds one chunk
    of raw rows at a time. Errors name the row of the whole data set, and every rank raises the
    same (the first) error.
    """

    def __init__(self, cfg: DataConfig, ctx: DistContext | None = None) -> None:
        self.cfg, self.ctx = cfg, ctx or DistContext()
        self.pd_true: np.ndarray | None = None  # synthetic only: each row's true PD
        self.unused: tuple[str, ...] = ()  # the file's columns that no config key names
        self._raw: pd.DataFrame | None = None
        self._parquet: ParquetBook | None = None
        self.book: Book | None = None  # side tables and event sources (data.tables, data.sources)
        self.loans: pd.DataFrame | None = None  # a book's loan-table rows of this shard, raw
        self._events_logged = False  # a book's events read, logged after the first pass
        if cfg.format == "synthetic":
            self.schema, self.n_rows = synthetic.SCHEMA, cfg.n_rows
            self.source = f"synthetic(n_rows={cfg.n_rows}, seed={cfg.seed})"
            self.lo, self.hi = shard_bounds(self.n_rows, self.ctx.rank, self.ctx.world_size)
            self.pd_true = np.empty(self.hi - self.lo)
            self.read = f"rows {self.lo}-{self.hi - 1} of {self.n_rows} (generated)"
            return
        if cfg.synthetic_book:
            ensure_synthetic_book(cfg, self.ctx)
        path = self._path()
        self.schema = Schema(
            features=list(cfg.features),
            target=cfg.target,
            period=cfg.split.period_column,
            protected=list(cfg.protected),
        )
        self.source = str(path)
        if cfg.format == "parquet":
            self._parquet = ParquetBook(path)
            self.n_rows, columns = self._parquet.n_rows, self._parquet.columns
        else:
            self._raw = read_file(path, cfg, self.schema)
            self.n_rows, columns = len(self._raw), list(self._raw.columns)
        if cfg.tables or cfg.sources:  # the loan table's side tables and event sources
            self.book = Book(cfg, data_root(cfg), self._raw, str(path))
            self.schema.features += self.book.features
            self.schema.history = self.book.history
        self.lo, self.hi = shard_bounds(self.n_rows, self.ctx.rank, self.ctx.world_size)
        if self._raw is not None:  # keep this shard's rows only
            self._raw = self._raw.iloc[self.lo : self.hi].reset_index(drop=True)
            self.read = f"rows {self.lo}-{self.hi - 1} of {self.n_rows} (read the whole file, kept this shard)"
        else:
            self.read = self._parquet.describe(self.lo, self.hi)
        if cfg.true_pd:
            self.pd_true = self._raw[cfg.true_pd].to_numpy(dtype=np.float64)
        if self.book is not None:  # side tables and histories: assembled a chunk at a time
            self.loans = self._raw
            columns += [f.name for f in self.book.features]
            self.read += "; their side tables and events (DuckDB, a chunk of loans at a time)"
        if self.n_rows == 0:
            raise DataError(f"{path}: no data rows")
        named = wanted_columns(self.schema)
        missing = [c for c in named if c not in columns]
        if missing:
            raise DataError(
                f"{path}: missing columns {missing} (named in data.features / data.target / "
                f"data.split.period_column / data.protected; {closest_columns(missing, columns)})"
            )
        if self.book is not None and self.book.history is not None:
            named += self.book.history.request_columns()  # a wide source's columns are read
        self.unused = tuple(c for c in columns if c not in named)

    def _path(self) -> Path:
        cfg, path = self.cfg, data_path(self.cfg)
        env_root = os.environ.get("RISKBRAIN_DATA_ROOT")
        overridden = env_root and Path(env_root).expanduser() != Path(cfg.root).expanduser()
        if overridden and self.ctx.is_main:
            log.warning("data.root=%s wins over RISKBRAIN_DATA_ROOT=%s", cfg.root, env_root)
        if not (path.is_file() or (cfg.format == "parquet" and path.is_dir())):
            raise DataError(
                f"data file not found: {path} (data.root={cfg.root!r}, data.path={cfg.path!r}; "
                "set data.root=... or the RISKBRAIN_DATA_ROOT environment variable; a data "
                "config that sets root itself wins over the variable)"
            )
        return path

    def __len__(self) -> int:
        return self.hi - self.lo

    def chunks(self, names: list[str]) -> Iterator[tuple[int, pd.DataFrame]]:
        """(global number of its first row, raw columns ``names``) for each chunk, in row order."""
        rows = max(1024, min(CHUNK, CHUNK_BYTES // (8 * max(1, len(names)))))
        if self.book is not None:
            yield from self._assembled(names, rows)
            return
        if self._parquet is not None:
            yield from self._parquet.chunks(self.lo, self.hi, names, rows)
            return
        for first in range(self.lo, self.hi, rows):
            last = min(first + rows, self.hi)
            if self._raw is not None:
                yield first, self._raw.iloc[first - self.lo : last - self.lo][names]
                continue
            data = synthetic.generate(last - first, seed=self.cfg.seed, start=first)
            self.pd_true[first - self.lo : last - self.lo] = data.pd_true
            yield first, data.frame

    def _assembled(self, names: list[str], rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
        """A book's chunks: its loan rows, with their side tables and event histories assembled
        (``Book.assemble``) when ``names`` asks for them. A chunk's events and inputs, not the
        shard's, are in memory at once: the rank holds its tensors plus one chunk (each pass
        that reads the features assembles again; the Parquet reader skips other chunks' row
        groups)."""
        built = {f.name for f in self.book.features}
        read: dict[str, int] = {}
        for first in range(self.lo, self.hi, rows):
            loans = self.loans.iloc[first - self.lo : min(first + rows, self.hi) - self.lo]
            if built.isdisjoint(names):
                yield first, loans[names]
                continue
            frame = self.book.assemble(loans, first, self.source)
            read = {k: read.get(k, 0) + v for k, v in self.book.events_read.items()}
            yield first, frame.set_axis(loans.index)[names]
        if read and not self._events_logged:
            self._events_logged = True
            for name, n in read.items():
                log.info("source %s: %d events of this shard's %d loans read", name, n, len(self))

    def scan(self, visit: Callable[[int, pd.DataFrame], None], features: bool = True) -> None:
        """Validate each chunk (only the target and period when not ``features``) and call
        ``visit(first_row, typed_chunk)``; then the ranks agree on the first error, if any."""
        names = wanted_columns(self.schema)
        if not features:
            names = [c for c in names if c not in self.schema.names() + self.schema.protected]
        error = None
        try:
            for first, raw in self.chunks(names):
                visit(first, validate(raw, self.schema, self.cfg, self.source, first, features))
        except DataError as e:
            error = str(e)
        if errors := [e for e in self.ctx.allgather(error) if e]:
            raise DataError(errors[0])

    def target_values(self, limit: int = 10) -> list[str]:
        """The target column's distinct raw values, every rank's, sorted (at most ``limit``): what
        an error about the target shows. A collective: every rank calls it."""
        seen: set[str] = set()
        for _, raw in self.chunks([self.schema.target]):
            seen |= {columns.label_text(v) for v in pd.unique(raw[self.schema.target].dropna())}
        return sorted(set().union(*self.ctx.allgather(seen)))[:limit]


def ensure_synthetic_book(cfg: DataConfig, ctx: DistContext) -> None:
    """The synthetic SME book of histories (``training/data/synthetic_book.py``) under
    ``data.root``: written by rank 0 when absent (into a sibling folder, then renamed, so a book
    is whole or absent), while the other ranks wait."""
    import shutil

    from training.data.synthetic_book import write_book

    root = data_root(cfg)
    if ctx.is_main and not data_path(cfg).exists():
        log.info(
            "writing the synthetic book of %d loans (seed %d) to %s", cfg.n_rows, cfg.seed, root
        )
        partial = root.with_name(root.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        write_book(partial, cfg.n_rows, cfg.seed, workers=os.cpu_count() or 1)
        if not data_path(cfg).exists():
            shutil.rmtree(root, ignore_errors=True)
            partial.rename(root)
        shutil.rmtree(partial, ignore_errors=True)
    ctx.allgather(None)  # the others wait for it


def load_dataset(cfg: DataConfig, ctx: DistContext | None = None) -> Dataset:
    """This rank's shard as one validated frame (``prepare`` streams it chunk by chunk instead)."""
    shard = Shard(cfg, ctx)
    parts: list[pd.DataFrame] = []
    shard.scan(lambda first, chunk: parts.append(chunk))
    frame = pd.concat(parts, ignore_index=True)
    check_whole(frame.notna().any(), np.bincount(frame[shard.schema.target], minlength=2), shard)
    return Dataset(cfg.name, frame, shard.schema, shard.source, shard.pd_true, shard.lo,
                   shard.n_rows, shard.unused, shard.read)  # fmt: skip


def wanted_columns(schema: Schema) -> list[str]:
    period = [schema.period] if schema.period else []
    return [*schema.names(), schema.target, *period, *schema.protected]


def read_file(path: Path, cfg: DataConfig, schema: Schema) -> pd.DataFrame:
    """Read a CSV or ARFF file whole; categorical columns stay text so codes like '01' keep their
    form. ``data.sep`` and ``data.column_names`` read files such as UCI's space-separated,
    header-less ``german.data``."""
    text_cols = {name: "string" for name in schema.names(Kind.categorical)}
    try:
        if cfg.format == "csv":
            names = list(cfg.column_names) or None
            # utf-8-sig strips a byte-order mark (the SBA file starts with one)
            frame = pd.read_csv(path, sep=cfg.sep, header=None if names else "infer", names=names,
                                encoding=cfg.encoding, dtype=text_cols, low_memory=False)  # fmt: skip
            if len(frame) and (frame.shape[1] == 1 or frame.iloc[:, 1:].isna().all().all()):
                raise DataError(
                    f"{path}: every row reads as one column with data.sep={cfg.sep!r}: set "
                    "data.sep to the file's separator (e.g. ';', '\\t', or '\\s+' for spaces)"
                )
            return frame
        if cfg.format == "arff":
            return read_arff(path, text_cols)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(
            f"{path}: cannot read as {cfg.format} ({str(e).splitlines()[0]}); check data.sep "
            f"({cfg.sep!r}) and data.encoding ({cfg.encoding!r})"
        ) from None
    raise DataError(f"unknown data.format {cfg.format!r} for {path}")


_ATTRIBUTE = re.compile(r"""@attribute\s+(?:'([^']*)'|"([^"]*)"|(\S+))\s+(.+)""", re.IGNORECASE)


def read_arff(path: Path, dtype: dict[str, str]) -> pd.DataFrame:
    """ARFF: ``@attribute`` header lines, then CSV rows with ``?`` for missing values."""
    names: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n_header, line in enumerate(f, start=1):
            stripped = line.strip()
            if stripped.lower().startswith("@attribute"):
                m = _ATTRIBUTE.match(stripped)
                if not m:
                    raise DataError(
                        f"{path}: cannot parse ARFF attribute at line {n_header}: {stripped[:80]}"
                    )
                names.append(next(g for g in m.groups()[:3] if g is not None))
            elif stripped.lower().startswith("@data"):
                break
        else:
            raise DataError(f"{path}: no @data section (is this an ARFF file?)")
    if not names:
        raise DataError(f"{path}: no @attribute lines")
    try:
        return pd.read_csv(
            path,
            skiprows=n_header,
            header=None,
            names=names,
            na_values=["?"],
            comment="%",
            dtype=dtype,
            skipinitialspace=True,
            quotechar="'",
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=names)


def validate(
    raw: pd.DataFrame,
    schema: Schema,
    cfg: DataConfig,
    source: str,
    first_row: int = 0,
    features: bool = True,
) -> pd.DataFrame:
    """Type every column as its config says (``training/data/columns.py``): the features (unless
    not ``features``), the period and the target; protected columns pass as read (missing tokens
    marked), for the fairness report only. ``first_row`` is the global number of ``raw``'s first
    row, for errors."""
    out = {}
    for i, f in enumerate(schema.features if features else []):
        key = f"data.features[{i}]"
        col = columns.mark_missing(raw[f.name], [*cfg.missing_values, *f.missing])
        if f.map:
            col = columns.mapped(col, f.map)
        if f.kind == Kind.categorical:
            out[f.name] = columns.categorical(col)
            continue
        out[f.name] = columns.numeric(col, key, f.name, f.parse, source, first_row)
        if f.kind == Kind.binary:
            columns.binary(out[f.name], f.name, f.sentinels, source, first_row)
    if schema.period:
        out[schema.period] = columns.period(raw[schema.period], cfg.split, source, first_row)
    out[schema.target] = columns.target(raw[schema.target], cfg, source, first_row)
    for name in schema.protected if features else []:
        out[name] = columns.mark_missing(raw[name], cfg.missing_values)
    return pd.DataFrame(out)


def check_whole(present: pd.Series, counts: np.ndarray, shard: Shard) -> None:
    """What only the whole data set shows, from every rank's counts: no feature column missing
    in every row (``present``: has this shard a value in each column), both target classes."""
    ctx, names = shard.ctx, shard.schema.names()
    anywhere = np.logical_or.reduce(ctx.allgather(present[names].to_numpy(dtype=bool)))
    if not anywhere.all():
        name = names[int(np.flatnonzero(~anywhere)[0])]
        raise DataError(
            f"{shard.source}: column {name!r} is missing in every row (check data.missing_values "
            "and the feature's missing list, or remove it from data.features)"
        )
    columns.check_target_classes(
        sum(ctx.allgather(counts)), shard.cfg, shard.source, shard.target_values
    )


def closest_columns(missing: list[str], columns: list[str], shown: int = 20) -> str:
    """The file's columns, those closest to each missing name first (a case or spelling slip must
    show), then the rest up to ``shown``."""
    import difflib

    lower = {c.lower(): c for c in columns}
    near: list[str] = []
    for name in missing:
        found = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)
        near += [lower[c] for c in found if lower[c] not in near]
    rest = [c for c in columns if c not in near]
    listed = near + rest[: max(0, shown - len(near))]
    more = f" and {len(columns) - len(listed)} more" if len(columns) > len(listed) else ""
    said = f"closest first: {near}; " if near else ""
    return f"{said}the file has {listed}{more}"
