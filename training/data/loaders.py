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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.config import DataConfig
from training.data import columns, synthetic
from training.data.parquet import ParquetBook
from training.data.schema import Kind, Schema
from training.dist import DistContext
from training.errors import DataError

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


def data_path(cfg: DataConfig) -> Path:
    """``data.path`` under ``data.root``; a relative root is taken from the project's root folder."""
    root = Path(cfg.root).expanduser()
    return (root if root.is_absolute() else PROJECT_ROOT / root) / Path(cfg.path).expanduser()


def load_dataset(cfg: DataConfig, ctx: DistContext | None = None) -> Dataset:
    """This rank's shard, validated. Synthetic rows are generated for the shard only and a
    Parquet book is read for the shard only (its row groups); a CSV or ARFF file is read whole,
    then sliced. Errors name the row of the whole data set on every rank."""
    ctx = ctx or DistContext()
    rank, world_size = ctx.rank, ctx.world_size
    if cfg.format == "synthetic":
        lo, hi = shard_bounds(cfg.n_rows, rank, world_size)
        data = synthetic.generate(hi - lo, seed=cfg.seed, start=lo)
        source = f"synthetic(n_rows={cfg.n_rows}, seed={cfg.seed})"
        read = f"rows {lo}-{hi - 1} of {cfg.n_rows} (generated)"
        return Dataset(
            cfg.name, data.frame, synthetic.SCHEMA, source, data.pd_true, lo, cfg.n_rows, (), read
        )

    schema = Schema(features=list(cfg.features), target=cfg.target, period=cfg.split.period_column)
    path = data_path(cfg)
    env_root = os.environ.get("RISKBRAIN_DATA_ROOT")
    if env_root and Path(env_root).expanduser() != Path(cfg.root).expanduser() and ctx.is_main:
        log.warning("data.root=%s wins over RISKBRAIN_DATA_ROOT=%s", cfg.root, env_root)
    if not (path.is_file() or (cfg.format == "parquet" and path.is_dir())):
        raise DataError(
            f"data file not found: {path} (data.root={cfg.root!r}, data.path={cfg.path!r}; "
            "set data.root=... or the RISKBRAIN_DATA_ROOT environment variable; a data config "
            "that sets root itself wins over the variable)"
        )
    if cfg.format == "parquet":
        book = ParquetBook(path)
        n_rows, columns = book.n_rows, book.columns
        lo, hi = shard_bounds(n_rows, rank, world_size)
        raw, read = book.read(lo, hi, [c for c in wanted_columns(schema) if c in columns])
    else:
        raw = read_file(path, cfg.format, schema)
        n_rows, columns = len(raw), list(raw.columns)
        lo, hi = shard_bounds(n_rows, rank, world_size)
        raw = raw.iloc[lo:hi].reset_index(drop=True)
        read = f"rows {lo}-{hi - 1} of {n_rows} (read the whole file, kept this shard)"
    if n_rows == 0:
        raise DataError(f"{path}: no data rows")
    missing = [c for c in wanted_columns(schema) if c not in columns]
    if missing:
        more = " ..." if len(columns) > 20 else ""
        raise DataError(
            f"{path}: missing columns {missing} (named in data.features / data.target / "
            f"data.split.period_column; the file has {columns[:20]}{more})"
        )
    # Each rank validates its own rows; the ranks agree on the first error (the lowest row).
    try:
        frame, error = validate(raw, schema, cfg, str(path), first_row=lo), None
    except DataError as e:
        frame, error = None, str(e)
    if errors := [e for e in ctx.allgather(error) if e]:
        raise DataError(errors[0])
    check_whole(frame, schema, cfg, str(path), ctx)
    unused = tuple(c for c in columns if c not in wanted_columns(schema))
    return Dataset(cfg.name, frame, schema, str(path), None, lo, n_rows, unused, read)


def wanted_columns(schema: Schema) -> list[str]:
    return [*schema.names(), schema.target] + ([schema.period] if schema.period else [])


def read_file(path: Path, fmt: str, schema: Schema) -> pd.DataFrame:
    """Read the raw file; categorical columns stay text so codes like '01' keep their form."""
    text_cols = {name: "string" for name in schema.names(Kind.categorical)}
    try:
        if fmt == "csv":
            # utf-8-sig strips a byte-order mark (the SBA file starts with one)
            return pd.read_csv(path, encoding="utf-8-sig", dtype=text_cols, low_memory=False)
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "arff":
            return read_arff(path, text_cols)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    raise DataError(f"unknown data.format {fmt!r} for {path}")


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
    raw: pd.DataFrame, schema: Schema, cfg: DataConfig, source: str, first_row: int = 0
) -> pd.DataFrame:
    """Type every column as its config says (``training/data/columns.py``); return only the
    schema's columns. ``first_row`` is the global number of ``raw``'s first row, for errors."""
    out = {}
    for i, f in enumerate(schema.features):
        key = f"data.features[{i}]"
        col = columns.mark_missing(raw[f.name], [*cfg.missing_values, *f.missing])
        if f.kind == Kind.categorical:
            out[f.name] = columns.categorical(col)
            continue
        out[f.name] = columns.numeric(col, key, f.name, f.parse, source, first_row)
        if f.kind == Kind.binary:
            columns.binary(out[f.name], f.name, f.sentinels, source, first_row)
    if schema.period:
        out[schema.period] = columns.period(raw[schema.period], cfg.split, source, first_row)
    out[schema.target] = columns.target(raw[schema.target], cfg, source, first_row)
    return pd.DataFrame(out)


def check_whole(
    frame: pd.DataFrame, schema: Schema, cfg: DataConfig, source: str, ctx: DistContext
) -> None:
    """What only the whole data set can show (counted over every rank's shard): no feature
    column missing in every row, and both classes in the target."""
    names = schema.names()
    present = np.logical_or.reduce(ctx.allgather(frame[names].notna().any().to_numpy()))
    if not present.all():
        name = names[int(np.flatnonzero(~present)[0])]
        raise DataError(
            f"{source}: column {name!r} is missing in every row (check data.missing_values and "
            "the feature's missing list, or remove it from data.features)"
        )
    counts = sum(ctx.allgather(np.bincount(frame[schema.target].to_numpy(), minlength=2)))
    columns.check_target_classes(counts, cfg, source)
