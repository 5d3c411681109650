"""Read a data set (synthetic, CSV, Parquet, ARFF) and validate it against its schema.

Every error names the file and, where it applies, the column and the first bad row, so a user
can fix their portfolio file without reading code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.config import DataConfig
from training.data import synthetic
from training.data.schema import Kind, Schema
from training.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """A validated frame: the schema's feature columns (+ period column) and an int64 0/1 target.

    Under data parallelism it holds one rank's shard: rows ``offset .. offset + len(frame) - 1``
    of the whole data set.
    """

    name: str
    frame: pd.DataFrame
    schema: Schema
    source: str  # file path, or "synthetic(n_rows=..., seed=...)"
    pd_true: np.ndarray | None = None  # synthetic only: the true PD of each row
    offset: int = 0


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous, near-equal shards in rank order: rank r holds rows [lo, hi)."""
    return n * rank // world_size, n * (rank + 1) // world_size


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_path(cfg: DataConfig) -> Path:
    """``data.path`` under ``data.root``; a relative root is taken from the project's root folder."""
    root = Path(cfg.root).expanduser()
    return (root if root.is_absolute() else PROJECT_ROOT / root) / Path(cfg.path).expanduser()


def load_dataset(cfg: DataConfig, rank: int = 0, world_size: int = 1) -> Dataset:
    """This rank's shard. Synthetic rows are generated for the shard only; files are read and
    validated whole (so errors name the file's row), then sliced."""
    if cfg.format == "synthetic":
        lo, hi = shard_bounds(cfg.n_rows, rank, world_size)
        data = synthetic.generate(hi - lo, seed=cfg.seed, start=lo)
        source = f"synthetic(n_rows={cfg.n_rows}, seed={cfg.seed})"
        return Dataset(cfg.name, data.frame, synthetic.SCHEMA, source, data.pd_true, lo)

    schema = Schema(features=list(cfg.features), target=cfg.target, period=cfg.split.period_column)
    path = data_path(cfg)
    if not path.is_file():
        raise DataError(
            f"data file not found: {path} (data.root={cfg.root!r}, data.path={cfg.path!r}; "
            "set data.root=... or the RISKBRAIN_DATA_ROOT environment variable)"
        )
    frame = validate(read_file(path, cfg.format, schema), schema, str(path))
    lo, hi = shard_bounds(len(frame), rank, world_size)
    return Dataset(cfg.name, frame.iloc[lo:hi].reset_index(drop=True), schema, str(path), None, lo)


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


def validate(raw: pd.DataFrame, schema: Schema, source: str) -> pd.DataFrame:
    """Check columns, types and target; return only the schema's columns, typed."""
    if len(raw) == 0:
        raise DataError(f"{source}: no data rows")
    wanted = [*schema.names(), schema.target] + ([schema.period] if schema.period else [])
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DataError(
            f"{source}: missing columns {missing} (named in data.features / data.target / data.split.period_column)"
        )

    out = {}
    for f in schema.features:
        col = raw[f.name]
        if f.kind == Kind.categorical:
            out[f.name] = (
                col.astype("object")
                .where(col.notna(), None)
                .map(lambda v: v if v is None else str(v))
            )
        else:
            out[f.name] = _numeric(col, f.name, source)
            if f.kind == Kind.binary:
                bad = out[f.name].notna() & ~out[f.name].isin([0.0, 1.0])
                if bad.any():
                    row = int(np.flatnonzero(bad.to_numpy())[0])
                    raise DataError(
                        f"{source}: binary column {f.name!r} has value {col.iloc[row]!r} at data row {row + 1}; expected 0 or 1"
                    )
        if out[f.name].isna().all():
            raise DataError(f"{source}: column {f.name!r} is missing in every row")
    if schema.period:
        out[schema.period] = _numeric(raw[schema.period], schema.period, source)
    out[schema.target] = _target(raw[schema.target], schema.target, source)
    return pd.DataFrame(out)


def _numeric(col: pd.Series, name: str, source: str) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce").astype("float64")
    bad = values.isna() & col.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: numeric column {name!r} has non-numeric value {col.iloc[row]!r} at data row {row + 1} ({int(bad.sum())} such rows)"
        )
    inf = np.isinf(values.to_numpy())
    if inf.any():
        row = int(np.flatnonzero(inf)[0])
        raise DataError(
            f"{source}: numeric column {name!r} has an infinite value at data row {row + 1}"
        )
    return values


def _target(col: pd.Series, name: str, source: str) -> pd.Series:
    values = _numeric(col, name, source)
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(f"{source}: target {name!r} is missing at data row {row + 1}")
    levels = sorted(values.unique().tolist())
    if not set(levels) <= {0.0, 1.0}:
        raise DataError(f"{source}: target {name!r} must be binary 0/1, found values {levels[:10]}")
    if len(levels) < 2:
        raise DataError(
            f"{source}: target {name!r} has a single class ({levels[0]:g}) in all {len(values)} rows"
        )
    return values.astype("int64")
