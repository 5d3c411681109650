"""A book read and written by rank: CSV or Parquet chunks that do not depend on the number of
ranks, the rows a model can read split from the rejects, part files written atomically.

The input is cut into chunks: a Parquet book's row groups, or a CSV's blocks of ``chunk_rows``
data rows. Chunk ``c`` goes to rank ``c % world_size`` and becomes the output part
``part-{c:06d}.parquet``, so the output folder read in path order is the input order whatever
the number of ranks. Rows with a value the model cannot read go to ``rejects-{c:06d}.csv`` parts
with the column and the reason; they are counted, never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.history import event_list
from training.data.parquet import ParquetBook
from training.errors import ConfigError, DataError
from training.tracking.registry import ScoringModel

ROW = "row"  # the output's id column: the row's 0-based number in the input

# signature types read as numbers ("any": our models' numeric inputs, which accept integers too,
# "double": models from before that); "string" as text
NUMBER_TYPES = ("any", "double", "float")

# Text that means "no value" in a number column: pandas' default missing tokens (what a CSV read
# gives as NaN), for text columns of a Parquet book; blank text too.
MISSING_TOKENS = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
)  # fmt: skip


@dataclass
class Chunk:
    index: int  # c: the output part's number
    start: int  # the input row number of its first row
    frames: Iterable[pd.DataFrame]  # its rows in order, a batch at a time
    rows: int | None = None  # its number of rows


class CsvInput:
    """A CSV read as text, in blocks of ``chunk_rows`` data rows. Every rank streams the whole
    file and keeps its own blocks (convert a big book with ``jobs.to_parquet`` to read less).
    pandas' missing tokens (empty, ``NA``, ``nan``, ...) are missing values."""

    def __init__(self, path: Path, chunk_rows: int, sep: str = ",") -> None:
        self.path, self.chunk_rows, self.sep = path, chunk_rows, sep
        try:
            header = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8-sig")
        except (OSError, ValueError) as e:
            raise DataError(f"input={path}: cannot read as CSV ({e})") from None
        self.columns = [str(c) for c in header.columns]

    def chunks(self, rank: int, world: int) -> Iterator[Chunk]:
        reader = pd.read_csv(
            self.path, sep=self.sep, dtype=str, chunksize=self.chunk_rows, encoding="utf-8-sig"
        )
        try:
            for c, frame in enumerate(reader):
                if c % world == rank:
                    yield Chunk(c, c * self.chunk_rows, [frame], len(frame))
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"input={self.path}: cannot read as CSV ({e})") from None


class ParquetInput:
    """A Parquet book: each row group is a chunk, read in batches of ``chunk_rows`` rows."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.book, self.chunk_rows = ParquetBook(path), chunk_rows
        self.columns = self.book.columns

    def chunks(self, rank: int, world: int) -> Iterator[Chunk]:
        start = 0
        for c, (_, _, n) in enumerate(self.book.groups):
            if c % world == rank:
                frames = self.book.chunks(start, start + n, self.columns, self.chunk_rows)
                yield Chunk(c, start, (frame for _, frame in frames), n)
            start += n

    def rows_of(self, rank: int, world: int) -> int:
        return sum(n for c, (_, _, n) in enumerate(self.book.groups) if c % world == rank)


def open_input(path: Path, chunk_rows: int, sep: str = ",") -> CsvInput | ParquetInput:
    """A ``.csv`` file (any other single file too), or a Parquet file or folder."""
    if not path.exists():
        raise ConfigError(f"input={path}: no such file or folder")
    if path.is_file() and path.suffix.lower() not in (".parquet", ".pq"):
        return CsvInput(path, chunk_rows, sep)
    return ParquetInput(path, chunk_rows)


# ---------------------------------------------------------------------------------------------
# Checks before anything is written


def check_columns(columns: list[str], model: ScoringModel, keep: list[str]) -> None:
    """Every input column of the model and every ``keep`` column is in the file, and the output's
    column names do not collide."""
    missing = [c for c in model.inputs if c not in columns]
    if missing:
        raise DataError(
            f"input has no column {missing[0]!r}, which the model {model.ref.uri} needs"
            + (f" (and {len(missing) - 1} more: {missing[1:]})" if len(missing) > 1 else "")
        )
    for c in keep:
        if c not in columns:
            raise ConfigError(f"config keep: the input has no column {c!r}")
    clash = {ROW, *model.outputs} & set(keep)
    if clash:
        raise ConfigError(f"config keep: {sorted(clash)} would clash with the output's columns")


def check_fresh(output: Path, rejects: Path, summary: Path) -> None:
    """Scoring writes into new places only: the output and rejects folders are absent or empty."""
    for key, path in (("output", output), ("rejects", rejects)):
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"config {key}={path}: already exists and is not empty")
    if summary.exists():
        raise ConfigError(f"config output={output}: {summary} already exists")


# ---------------------------------------------------------------------------------------------
# Rows a model can read, and the rejects


def validate(
    frame: pd.DataFrame,
    inputs: dict[str, str],
    sources: tuple[str, ...] = (),
    dates: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a batch (index: input row numbers) into model-ready rows and rejects.

    A number column's value that is not empty and does not read as a finite number rejects the
    row; missing values are kept (the model reads them as missing). Returns the ready rows (the
    model's input columns: numbers as float64, text as str with NaN for missing) and one reject
    line per rejected row: ``row, column, value, reason`` (several bad values joined by "; "),
    then the raw row. ``sources``: the columns of a model of event histories that hold a list of
    events per row (or its JSON text); one that is neither rejects the row. ``dates``: its
    application date column, passed as it is (the model reads it by the training file's format).
    """
    ready, bad = {}, {}
    for c, kind in inputs.items():
        raw = frame[c]
        if c in sources:
            ready[c], bad[c] = raw, _event_lists(raw)
        elif c in dates:
            ready[c] = raw
        elif kind in NUMBER_TYPES:
            ready[c], bad[c] = _numbers(raw)
        elif kind == "string":
            text = raw.astype(object)
            ready[c] = text.where(raw.isna(), text.astype(str))
        else:
            ready[c] = raw
    ready = pd.DataFrame(ready, index=frame.index)
    flags = pd.DataFrame(bad, index=frame.index, dtype=object)
    rejected = flags.notna().any(axis=1).to_numpy()
    return ready[~rejected], _reject_lines(frame[rejected], flags[rejected])


def _numbers(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(values as float64, per value: why it is bad, else None). Blanks and ``MISSING_TOKENS``
    are missing values, in text columns of a Parquet book as in a CSV."""
    if pd.api.types.is_numeric_dtype(raw):
        x = raw.to_numpy(np.float64)
        unread = np.zeros(len(raw), dtype=bool)
    else:
        raw = raw.astype(object)
        x = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        unread = np.isnan(x) & raw.notna().to_numpy()
        if unread.any():  # few rows, usually: look closer at those only
            text = raw[unread].astype(str).str.strip()
            unread[np.flatnonzero(unread)[text.isin(MISSING_TOKENS).to_numpy()]] = False
    reason = np.full(len(raw), None, dtype=object)
    reason[unread] = "not a number"
    reason[np.isinf(x)] = "not a finite number"
    return pd.Series(x, index=raw.index), reason


def _event_lists(raw: pd.Series) -> np.ndarray:
    """Per value, why the served model would not read it as a list of events (JSON text or a
    list of objects; ``training/data/history.py``'s ``event_list``), else None; empty is none."""
    reason = np.full(len(raw), None, dtype=object)
    for i, v in enumerate(raw.tolist()):
        try:
            event_list(v, str(raw.name), i)
        except DataError:
            reason[i] = "not a list of events (JSON)"
    return reason


def _reject_lines(raw: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """One line per row: the bad columns, their values and reasons ("; "-joined), the raw row."""
    columns, values, reasons = [], [], []
    for row, reason_of in zip(raw.index, flags.itertuples(index=False), strict=True):
        bad = [(c, r) for c, r in zip(flags.columns, reason_of, strict=True) if isinstance(r, str)]
        columns.append("; ".join(c for c, _ in bad))
        values.append("; ".join(str(raw.at[row, c]) for c, _ in bad))
        reasons.append("; ".join(r for _, r in bad))
    meta = pd.DataFrame(
        {ROW: raw.index.to_numpy(np.int64), "column": columns, "value": values, "reason": reasons}
    )
    return pd.concat([meta, raw.astype(object).reset_index(drop=True)], axis=1)


def write_part(frame: pd.DataFrame, folder: Path, name: str) -> Path:
    """``frame`` as ``folder/name`` (Parquet or, for ``.csv``, CSV), atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    path, tmp = folder / name, folder / f".{name}.tmp"
    try:
        if name.endswith(".csv"):
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_summary(summary: dict, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    tmp.rename(path)
    return path
