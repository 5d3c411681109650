"""Portfolio scoring: a registered model's outputs for every row of a CSV or Parquet book, by rank.

The input is cut into chunks that do not depend on the number of ranks: a Parquet book's row
groups, or a CSV's blocks of ``chunk_rows`` data rows. Chunk ``c`` goes to rank
``c % world_size`` and becomes the output part ``part-{c:06d}.parquet``, so the output folder
read in path order is the input order whatever the number of ranks. No rank holds the
portfolio: a rank holds one chunk at a time, and one float per row it scored (the score, for the
summary's histogram). Rows with a value the model cannot read go to ``rejects-{c:06d}.csv`` parts
with the column and the reason; they are counted, never dropped silently.

MLflow stays out of this module (``jobs/score.py`` loads the model into a ``ScoringModel``;
the scoring run goes through ``training.tracking.tracker``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.constants import EXIT_FAILED, EXIT_USER_ERROR
from training.data.parquet import ParquetBook
from training.errors import ConfigError, DataError, RiskbrainError
from training.runtime.dist import DistContext

log = logging.getLogger("riskbrain")

ROW = "row"  # the output's id column: the row's 0-based number in the input
NUMBER_TYPES = ("double", "float")  # signature types read as numbers; "string" as text
HIST_BINS = 1000  # fine histogram of the scores (quantiles to 1/1000 of the range)
SUMMARY_BINS = 20  # the histogram the summary shows
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
PSI_FLOOR = 1e-6  # as training.metrics.psi: an empty bin stays finite
# Text that means "no value" in a number column: pandas' default missing tokens (what a CSV read
# gives as NaN), for text columns of a Parquet book; blank text too.
MISSING_TOKENS = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
)  # fmt: skip


@dataclass(kw_only=True)
class ModelRef:
    """Which model scored: the URI asked for, the pinned one every rank loads, its registry entry."""

    uri: str
    pinned: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None  # the training run that logged the version


@dataclass(kw_only=True)
class ScoringModel:
    """What scoring needs from a loaded model, free of MLflow (``jobs/score.py`` builds it)."""

    predict: Callable[[pd.DataFrame], pd.DataFrame]  # model-ready rows -> one output row each
    inputs: dict[str, str]  # the signature's input columns: name -> type ("double", "string")
    outputs: list[str]  # the signature's output columns (pd; score and reasons when it has them)
    ref: ModelRef
    score_reference: dict | None = None  # {"edges", "shares"} of the training scores, for PSI
    feature_reference: dict | None = None  # each feature's training bins and shares (drift)
    notes: list[str] = field(default_factory=list)  # what the summary should say about it

    @property
    def score_column(self) -> str:
        """The column whose distribution is summarised: ``score``, else ``pd`` (a fallback)."""
        return "score" if "score" in self.outputs else "pd"


# ---------------------------------------------------------------------------------------------
# Input: chunks that do not depend on the number of ranks


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
# Checks before anything is written, agreed by every rank


class Agreed(Exception):
    """A step failed on some rank and every rank raises this, so none waits in a collective."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code  # the exit code: EXIT_USER_ERROR for a RiskbrainError, else EXIT_FAILED


def agree(ctx: DistContext, step: Callable[[], object]) -> object:
    """``step()`` on every rank; if it raised on any, raise ``Agreed`` on all (the first
    failing rank's message), else return this rank's result."""
    try:
        result, error = step(), None
    except RiskbrainError as e:
        result, error = None, (str(e), EXIT_USER_ERROR)
    except Exception as e:
        log.exception("rank %d of %d failed", ctx.rank, ctx.world_size)
        result, error = None, (f"rank {ctx.rank}: {type(e).__name__}: {e}", EXIT_FAILED)
    errors = [e for e in ctx.allgather(error) if e is not None]
    if errors:
        raise Agreed(*errors[0])
    return result


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
# One batch: validate, predict, assemble


def validate(frame: pd.DataFrame, inputs: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a batch (index: input row numbers) into model-ready rows and rejects.

    A number column's value that is not empty and does not read as a finite number rejects the
    row; missing values are kept (the model reads them as missing). Returns the ready rows (the
    model's input columns: numbers as float64, text as str with NaN for missing) and one reject
    line per rejected row: ``row, column, value, reason`` (several bad values joined by "; "),
    then the raw row.
    """
    ready, bad = {}, {}
    for c, kind in inputs.items():
        raw = frame[c]
        if kind in NUMBER_TYPES:
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


def score_batch(
    frame: pd.DataFrame, start: int, model: ScoringModel, keep: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(output rows, reject lines) of one batch whose first row is input row ``start``.

    Output columns: ``row`` (int64), the ``keep`` columns, then every column ``predict`` returns.
    """
    frame = frame.set_axis(pd.RangeIndex(start, start + len(frame)), axis=0)
    ready, rejects = validate(frame, model.inputs)
    if ready.empty:
        return pd.DataFrame(), rejects
    pred = model.predict(ready[list(model.inputs)])
    if len(pred) != len(ready):
        raise RuntimeError(f"the model returned {len(pred)} rows for {len(ready)}")
    ids = pd.DataFrame({ROW: ready.index.to_numpy(np.int64)})
    kept = frame.loc[ready.index, keep].reset_index(drop=True)
    return pd.concat([ids, kept, pred.reset_index(drop=True)], axis=1), rejects


# ---------------------------------------------------------------------------------------------
# Writing parts: a temporary name, renamed when complete


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


# ---------------------------------------------------------------------------------------------
# A rank's share: its chunks, one part each


@dataclass
class Tally:
    """What one rank scored: counts, the time, and the summarised column's values."""

    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    chunks: int = 0
    seconds: float = 0.0
    rejected_by_column: Counter = field(default_factory=Counter)
    values: list[np.ndarray] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # scored rows per training bin

    def add_features(self, counts: dict[str, np.ndarray]) -> None:
        for name, c in counts.items():
            self.features[name] = self.features.get(name, 0) + c

    def add(self, out: pd.DataFrame, rejects: pd.DataFrame, column: str) -> None:
        self.rows_scored += len(out)
        self.rows_rejected += len(rejects)
        self.rows_read += len(out) + len(rejects)
        if len(rejects):
            for cols in rejects["column"]:
                self.rejected_by_column.update(cols.split("; "))
        if len(out) and column in out:
            self.values.append(out[column].to_numpy(np.float64))

    def scores(self) -> np.ndarray:
        x = np.concatenate(self.values) if self.values else np.empty(0)
        return x[np.isfinite(x)]


def score_shard(
    source: CsvInput | ParquetInput,
    model: ScoringModel,
    *,
    output: Path,
    rejects: Path,
    keep: list[str],
    ctx: DistContext,
    progress: ScoringProgress,
) -> Tally:
    """Score this rank's chunks (chunk c when c % world_size == rank), one output part each."""
    tally, t0 = Tally(), time.perf_counter()
    for chunk in source.chunks(ctx.rank, ctx.world_size):
        t_chunk, outs, bads, start = time.perf_counter(), [], [], chunk.start
        for frame in chunk.frames:
            out, bad = score_batch(frame, start, model, keep)
            if model.feature_reference and len(out):
                scored = frame.iloc[out[ROW].to_numpy() - start]
                tally.add_features(feature_counts(scored, model.feature_reference))
            start += len(frame)
            outs.append(out)
            bads.append(bad)
            progress.advance(len(frame))
        out = pd.concat([o for o in outs if len(o)] or [pd.DataFrame()], ignore_index=True)
        bad = pd.concat([b for b in bads if len(b)] or [pd.DataFrame()], ignore_index=True)
        if len(out):
            write_part(out, output, f"part-{chunk.index:06d}.parquet")
        if len(bad):
            write_part(bad, rejects, f"rejects-{chunk.index:06d}.csv")
        tally.add(out, bad, model.score_column)
        tally.chunks += 1
        progress.chunk_done(chunk.index, len(out), len(bad), time.perf_counter() - t_chunk)
    tally.seconds = time.perf_counter() - t0
    return tally


class ScoringProgress:
    """A live bar on rank 0 in a terminal; otherwise one log line per chunk, from every rank."""

    def __init__(self, ctx: DistContext, total: int | None, enabled: bool | None = None) -> None:
        self.who = f"rank {ctx.rank}/{ctx.world_size}"
        self.enabled = (sys.stderr.isatty() and ctx.is_main) if enabled is None else enabled
        self.t0, self.bar, self.task = time.perf_counter(), None, None
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn(f"scoring ({self.who})"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.bar.add_task("score", total=total, rate="-")
            self.bar.start()

    def advance(self, rows: int) -> None:
        if self.bar is not None:
            task = self.bar.tasks[0]
            rate = (task.completed + rows) / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, advance=rows, rate=f"{rate:,.0f}")

    def chunk_done(self, c: int, scored: int, rejected: int, seconds: float) -> None:
        if self.bar is None:
            rate = (scored + rejected) / max(seconds, 1e-9)
            log.info(
                "%s chunk %d: %s rows scored, %d rejected, %s rows/s",
                self.who,
                c,
                f"{scored:,}",
                rejected,
                f"{rate:,.0f}",
            )

    def close(self, tally: Tally) -> None:
        if self.bar is not None:
            self.bar.stop()
        log.info(
            "%s done: %s rows scored, %s rejected in %d chunks, %.1f s, %s rows/s",
            self.who,
            f"{tally.rows_scored:,}",
            f"{tally.rows_rejected:,}",
            tally.chunks,
            tally.seconds,
            f"{tally.rows_read / max(tally.seconds, 1e-9):,.0f}",
        )


# ---------------------------------------------------------------------------------------------
# PSI against the model's training scores


def reference_bins(reference: dict) -> tuple[np.ndarray, np.ndarray]:
    """(interior edges, shares) of a score reference ``{"edges": [...], "shares": [...]}``.

    ``edges`` may hold the outer bounds too (``len(shares) + 1`` edges, as ``np.histogram``
    gives) or only the interior ones (``len(shares) - 1``); either way the outer bins are open,
    so scores beyond the training range still count. A score on an edge goes to the upper bin.
    """
    edges = np.asarray(reference.get("edges", []), dtype=np.float64)
    shares = np.asarray(reference.get("shares", []), dtype=np.float64)
    if len(edges) == len(shares) + 1:
        edges = edges[1:-1]
    ok = (
        len(shares) >= 1
        and len(edges) == len(shares) - 1
        and np.all(np.diff(edges) > 0)
        and np.all(shares >= 0)
        and abs(shares.sum() - 1) < 1e-3
    )
    if not ok:
        raise DataError(f"score reference is malformed: {len(edges)} edges, shares {shares}")
    return edges, shares


def bin_counts(edges: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows per bin of the interior ``edges`` (``len(edges) + 1`` bins)."""
    return np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(edges) + 1)


def psi_from_counts(shares: np.ndarray, counts: np.ndarray) -> float:
    """PSI = sum_b (a_b - e_b) * ln(a_b / e_b), shares floored as ``training.metrics.psi``."""
    e = np.maximum(shares, PSI_FLOOR)
    a = np.maximum(counts / max(counts.sum(), 1), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_against(reference: dict, scores: np.ndarray) -> float:
    """Population stability index of ``scores`` against the model's training-score reference."""
    edges, shares = reference_bins(reference)
    return psi_from_counts(shares, bin_counts(edges, np.asarray(scores, dtype=np.float64)))


# ---------------------------------------------------------------------------------------------
# Drift: each feature's PSI against its training distribution (characteristic stability)


def feature_counts(frame: pd.DataFrame, reference: dict[str, dict]) -> dict[str, np.ndarray]:
    """Rows per training bin of each feature: a number's deciles, then missing; a category's
    training categories, then any other."""
    out = {}
    for name, ref in reference.items():
        if name not in frame:
            continue
        if ref["kind"] == "categorical":
            cats = ref["categories"]
            index = pd.Index(cats).get_indexer(frame[name].astype("string").fillna("missing"))
            out[name] = np.bincount(np.where(index < 0, len(cats), index), minlength=len(cats) + 1)
            continue
        x = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
        missing = np.isnan(x)
        present = bin_counts(np.asarray(ref["edges"], dtype=np.float64), x[~missing])
        out[name] = np.append(present, missing.sum())
    return out


def feature_psi(reference: dict[str, dict], counts: dict[str, np.ndarray]) -> dict[str, dict]:
    """PSI per feature with its band: < 0.10 stable, 0.10-0.25 some shift, >= 0.25 major."""
    out = {}
    for name, c in counts.items():
        ref = reference[name]
        tail = 0.0 if ref["kind"] == "categorical" else ref["missing_share"]
        value = psi_from_counts(np.append(ref["shares"], tail), np.asarray(c, dtype=np.float64))
        band = "stable" if value < 0.10 else "some shift" if value < 0.25 else "major shift"
        out[name] = {"psi": value, "band": band}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["psi"]))


# ---------------------------------------------------------------------------------------------
# The summary: gathered to rank 0, the same for any number of ranks


def gather_summary(ctx: DistContext, tally: Tally, model: ScoringModel) -> dict | None:
    """Counts, the score distribution and PSI over every rank (rank 0's copy; None elsewhere).

    Ranks share only counts: a histogram of ``HIST_BINS`` bins over the global range of the
    scores and the counts in the reference's bins, so the summary is the same for any number
    of ranks (quantiles are read from the histogram, to 1/HIST_BINS of the range).
    """
    scores = tally.scores()
    ranges = ctx.allgather((float(scores.min()), float(scores.max())) if len(scores) else None)
    ranges = [r for r in ranges if r is not None]
    bounds = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else (0.0, 1.0)
    ranks = ctx.allgather(rank_counts(tally, model, bounds))
    return summarize(ranks, model, bounds) if ctx.is_main else None


def rank_counts(tally: Tally, model: ScoringModel, bounds: tuple[float, float]) -> dict:
    """What a rank sends to rank 0: its counts, and its scores binned over the global ``bounds``."""
    scores, (lo, hi) = tally.scores(), bounds
    hist, _ = np.histogram(scores, bins=HIST_BINS, range=(lo, hi if hi > lo else lo + 1.0))
    reference, _ = _usable_reference(model)
    ref_counts = bin_counts(reference_bins(reference)[0], scores) if reference else None
    return {
        "rows_read": tally.rows_read,
        "rows_scored": tally.rows_scored,
        "rows_rejected": tally.rows_rejected,
        "chunks": tally.chunks,
        "seconds": tally.seconds,
        "rejected_by_column": dict(tally.rejected_by_column),
        "hist": hist,
        "ref_counts": ref_counts,
        "sum": float(scores.sum()),
        "features": tally.features,
    }


def _usable_reference(model: ScoringModel) -> tuple[dict | None, str | None]:
    """The model's score reference when PSI can use it, else None and why not."""
    reference = model.score_reference
    if reference is None:
        return None, "the model carries no training-score reference: PSI skipped"
    column = reference.get("column", "score")
    if column != model.score_column:
        return None, f"the reference is of {column!r}, not {model.score_column!r}: PSI skipped"
    try:
        reference_bins(reference)
    except DataError as e:
        return None, f"{e}: PSI skipped"
    return reference, None


def summarize(ranks: list[dict], model: ScoringModel, bounds: tuple[float, float]) -> dict:
    """Rank 0's summary from every rank's ``rank_counts``."""
    reference, note = _usable_reference(model)
    total = {k: sum(r[k] for r in ranks) for k in ("rows_read", "rows_scored", "rows_rejected")}
    seconds = max(r["seconds"] for r in ranks)
    by_column = sum((Counter(r["rejected_by_column"]) for r in ranks), Counter())
    hist = np.sum([r["hist"] for r in ranks], axis=0)
    column, n = model.score_column, int(hist.sum())
    distribution = _distribution(hist, bounds, sum(r["sum"] for r in ranks), n)
    psi: dict = {"column": column, "value": None, "note": note}
    if reference is not None:
        counts = np.sum([r["ref_counts"] for r in ranks], axis=0)
        psi["value"] = psi_from_counts(reference_bins(reference)[1], counts)
        psi["actual_shares"] = (counts / max(counts.sum(), 1)).tolist()
        psi["expected_shares"] = list(reference["shares"])
    notes = list(model.notes) + ([note] if note else [])
    if column != "score":
        notes.append("the model returns no `score` column: the distribution is of `pd`")
    return {
        "model": asdict(model.ref),
        "world_size": len(ranks),
        **total,
        "chunks": sum(r["chunks"] for r in ranks),
        "seconds": seconds,
        "rows_per_s": total["rows_read"] / max(seconds, 1e-9),
        "rejected_by_column": dict(sorted(by_column.items())),
        "distribution": {"column": column, **distribution},
        "psi": psi,
        "feature_psi": _feature_psi(ranks, model),
        "notes": notes,
    }


def _feature_psi(ranks: list[dict], model: ScoringModel) -> dict[str, dict]:
    if not model.feature_reference:
        return {}
    counts = {
        n: sum(r["features"][n] for r in ranks if n in r["features"])
        for n in model.feature_reference
    }
    return feature_psi(model.feature_reference, {n: c for n, c in counts.items() if np.sum(c) > 0})


def _distribution(hist: np.ndarray, bounds: tuple[float, float], total: float, n: int) -> dict:
    """Mean, range, quantiles (read from the fine histogram) and a ``SUMMARY_BINS``-bin histogram."""
    if n == 0:
        return {"n": 0}
    lo, hi = bounds
    edges = np.linspace(lo, hi, len(hist) + 1)
    cum = np.concatenate([[0], np.cumsum(hist)])
    qs = np.interp(np.asarray(QUANTILES) * n, cum, edges)
    coarse = hist.reshape(SUMMARY_BINS, -1).sum(axis=1)
    return {
        "n": n,
        "mean": total / n,
        "min": float(lo),
        "max": float(hi),
        "quantiles": {
            f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs, strict=True)
        },
        "histogram": {
            "edges": np.linspace(lo, hi, SUMMARY_BINS + 1).tolist(),
            "counts": coarse.astype(int).tolist(),
        },
    }


# ---------------------------------------------------------------------------------------------
# Rank 0: where it went


def write_summary(summary: dict, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    tmp.rename(path)
    return path


def log_scoring_run(summary: dict, *, tracking_uri: str | None, experiment: str) -> str | None:
    """The scoring run in MLflow: params, counts and PSI, tags naming the model version, and the
    summary as ``summary.json``; returns its run id."""
    from training.tracking.config import TrackingConfig
    from training.tracking.tracker import open_run

    ref = summary["model"]
    name = f"score-{ref['name']}-v{ref['version']}" if ref["name"] else "score"
    with open_run(TrackingConfig(uri=tracking_uri, experiment=experiment), name=name) as tracker:
        tracker.log_params(
            {
                "model_uri": ref["uri"],
                "model_pinned_uri": ref["pinned"],
                **summary["paths"],
                **summary["settings"],
                "world_size": summary["world_size"],
            }
        )
        metrics = {k: summary[k] for k in ("rows_scored", "rows_rejected", "rows_per_s")}
        if summary["psi"]["value"] is not None:
            metrics[f"psi_{summary['psi']['column']}"] = summary["psi"]["value"]
        for name, drift in summary.get("feature_psi", {}).items():  # characteristic stability
            metrics[f"psi_feature.{re.sub(r'[^0-9A-Za-z_.-]+', '_', name)}"] = drift["psi"]
        tracker.log_metrics(metrics)
        tags = {
            "kind": "scoring",
            "model_name": ref["name"],
            "model_version": ref["version"],
            "model_run_id": ref["run_id"],
        }
        tracker.set_tags({k: v for k, v in tags.items() if v is not None})
        tracker.log_dict(summary, "summary.json")
        return tracker.run_id


def describe(summary: dict) -> str:
    """What rank 0 prints at the end: the counts and where everything went."""
    paths, psi = summary["paths"], summary["psi"]
    psi_text = f"{psi['value']:.4f}" if psi["value"] is not None else "skipped"
    lines = [
        f"scored {summary['rows_scored']:,} rows, rejected {summary['rows_rejected']:,}, "
        f"in {summary['seconds']:.1f} s ({summary['rows_per_s']:,.0f} rows/s, "
        f"{summary['world_size']} rank(s)); PSI of {psi['column']}: {psi_text}",
        f"scores:  {paths['output']}  (pd.read_parquet reads the parts in input order)",
        f"rejects: {paths['rejects']}" + ("" if summary["rows_rejected"] else "  (none)"),
        f"summary: {paths['summary']}",
    ]
    if summary.get("mlflow_run_id"):
        lines.append(
            f"mlflow:  run {summary['mlflow_run_id']} in experiment {summary['experiment']!r}"
        )
    return "\n".join(lines + [f"note: {n}" for n in summary["notes"]])
