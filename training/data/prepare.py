"""A data set made ready for training on this rank: read, split, preprocessed, fingerprinted.

Each rank holds a contiguous shard of the rows and streams it in three passes, one chunk of raw
rows at a time (``Shard.scan``; for a book of several tables, a chunk of loans with their side
tables and histories assembled), so its memory is its model-ready tensors plus one chunk:

1. every row's label (and period) is gathered (small) and split the same way on every rank;
2. the preprocessing is fitted on training rows chosen by global row number (the same for any
   number of ranks), gathered from the ranks that hold them;
3. each chunk is transformed into the preallocated tensors of its split parts. Raw rows are kept
   only where a later step reads them: the GBDT benchmark's rows and the example rows.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from training.data.columns import check_target_classes, groups_of
from training.data.config import DataConfig
from training.data.loaders import Shard, check_whole
from training.data.preprocess import Preprocessor, feature_bins
from training.data.schema import Schema
from training.data.split import Split, make_split
from training.data.tensors import Tensors
from training.runtime.dist import DistContext, every_kth
from training.runtime.process import peak_rss_mib, seconds_since_start

log = logging.getLogger("riskbrain")

PREPROCESS_SAMPLE = 200_000  # training rows the preprocessing is fitted on, at most (evenly spaced)
EXAMPLE_ROWS = (
    5  # raw test rows kept for the model's input example when no benchmark needs them all
)


@dataclass(frozen=True)
class TrainingData:
    """What building and fitting a network read: this rank's training and validation tensors,
    and the preprocessing with the rows it was fitted on (the same on every rank)."""

    train: Tensors
    valid: Tensors
    pre: Preprocessor
    schema: Schema
    # The training rows the preprocessing was fitted on, preprocessed (bins, reasons' reference
    # rows, the scores' PSI baseline); their raw values are not kept, only each feature's
    # distribution (``feature_bins``: scored portfolios' PSI baseline) and the default rate.
    sample_x: tuple[torch.Tensor, torch.Tensor]
    feature_reference: dict[str, dict]
    base_rate: float
    fingerprint: str  # of what the model learns from


@dataclass(frozen=True)
class EvaluationData:
    """What measuring a trained network reads beyond that: this rank's test tensors, the raw rows
    later steps read (the benchmark's, the input example), the split and every label, the test
    rows' protected groups and, for synthetic data, their true PDs."""

    test: Tensors
    split: Split  # global row numbers, the same on every rank
    labels: np.ndarray  # every row's label, in global order
    frames: dict[str, pd.DataFrame]  # the raw rows kept of each part...
    kept: dict[str, np.ndarray]  # ...and their positions among the part's rows on this shard
    groups: dict[str, np.ndarray]  # protected column -> group label of this shard's test rows
    pd_true: np.ndarray | None  # this shard's test rows' true PDs (synthetic data), else None
    source: str  # what was read
    unused: list[str]  # the file's columns the schema does not use
    example: pd.DataFrame  # the first kept test rows as a served request carries them
    sources: dict[str, dict[str, int]] | None = None  # a book's event sources: Book.coverage


@dataclass(frozen=True)
class Prepared:
    """This rank's shard of a data set, split and preprocessed: what training reads, and what
    evaluation reads."""

    training: TrainingData
    evaluation: EvaluationData

    def tensors(self, part: str) -> Tensors:
        """One split part's tensors on this shard: ``train``, ``valid`` or ``test``."""
        t = self.training
        return {"train": t.train, "valid": t.valid, "test": self.evaluation.test}[part]


def prepare(
    data: DataConfig, ctx: DistContext | None = None, *, benchmark_rows: int | None = None
) -> Prepared:
    """Stream this rank's shard of ``data``: split it, fit the preprocessing, fill tensors.

    Raw rows are kept where a later step reads them: ``benchmark_rows`` evenly spaced training
    and validation rows and every test row for the GBDT benchmark, else a few test rows (the
    model's input example)."""
    ctx = ctx or DistContext()
    shard = Shard(data, ctx)
    target = shard.schema.target

    # 1. Every row's label (and period): small, so gathered, then split identically everywhere.
    mine: list[pd.DataFrame] = []
    shard.scan(lambda first, chunk: mine.append(chunk.astype({target: np.int8})), features=False)
    keys = pd.concat(ctx.allgather(pd.concat(mine, ignore_index=True)), ignore_index=True)
    labels = keys[target].to_numpy()
    check_target_classes(np.bincount(labels, minlength=2), data, shard.source, shard.target_values)
    split = make_split(keys, target, data.split)

    # 2. The preprocessing, fitted on evenly spaced training rows chosen by global row number.
    sample_rows = split.train[:: max(1, -(-len(split.train) // PREPROCESS_SAMPLE))]
    sample, present = _rows_and_presence(shard, sample_rows)
    check_whole(present, np.bincount(labels[shard.lo : shard.hi], minlength=2), shard)
    sample = pd.concat(ctx.allgather(sample), ignore_index=True)
    pre = Preprocessor.fit(sample, shard.schema)
    # What later steps read of those rows; the raw rows themselves (the largest fixed part of a
    # book's memory: every input of up to 200k rows) are dropped before the tensors are filled.
    sample_x = tuple(torch.from_numpy(x) for x in pre.transform(sample))
    feature_reference = feature_bins(sample, shard.schema)
    base_rate = float(sample[target].mean())
    columns = sample.columns.drop(shard.schema.protected)
    del sample

    # 3. Model-ready tensors, chunk by chunk; raw rows kept only where a later step reads them.
    parts = {name: _Part.empty(rows, shard, pre) for name, rows in split.parts().items()}
    for name, part in parts.items():
        part.keep = _kept(benchmark_rows, name, part.tensors)
    mixed = _fill(shard, parts, pre)
    sources = _coverage(shard, ctx)  # before "data ready": its memory counts too
    _log(data, shard, split, parts, ctx)
    tensors = {name: part.tensors for name, part in parts.items()}
    test_rows = parts["test"].rows - shard.lo
    training = TrainingData(
        tensors["train"], tensors["valid"], pre, shard.schema, sample_x, feature_reference,
        base_rate, _digest(mixed, columns, ctx),
    )  # fmt: skip
    evaluation = EvaluationData(
        tensors["test"], split, labels,
        {name: part.kept_frame(shard) for name, part in parts.items()},
        {name: part.keep for name, part in parts.items()},
        _groups(parts["test"], data),
        shard.pd_true[test_rows] if shard.pd_true is not None else None,
        shard.source, list(shard.unused), _example(shard, parts["test"]), sources,
    )  # fmt: skip
    return Prepared(training, evaluation)


def _coverage(shard: Shard, ctx: DistContext) -> dict[str, dict[str, int]] | None:
    """A book's event sources counted over every loan (``Book.coverage``): once, on rank 0."""
    if shard.book is None or shard.book.history is None:
        return None
    return ctx.broadcast(shard.book.coverage() if ctx.is_main else None)


def _example(shard: Shard, test: _Part) -> pd.DataFrame:
    """The first kept test rows as a request carries them: their features and, for a book of
    event histories, the application date and each source's events instead of their features."""
    first = test.kept_frame(shard).head(EXAMPLE_ROWS)
    schema = shard.schema
    if schema.history is None or shard.book is None or shard.loans is None:
        return first[schema.names()]
    loans = shard.loans.iloc[test.rows[test.keep[: len(first)]] - shard.lo]
    requests = shard.book.requests(loans).set_axis(first.index)
    return pd.concat([first[[f.name for f in schema.inputs()]], requests], axis=1)


@dataclass
class _Part:
    """One split part's rows on this shard: global row numbers, tensors filled in place, and
    the positions (within the part on this shard) whose raw values are kept."""

    rows: np.ndarray
    tensors: Tensors
    keep: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    kept: list[pd.DataFrame] = field(default_factory=list)
    protected: list[pd.DataFrame] = field(default_factory=list)  # every row's protected values

    @classmethod
    def empty(cls, part_rows: np.ndarray, shard: Shard, pre: Preprocessor) -> _Part:
        rows = part_rows[(part_rows >= shard.lo) & (part_rows < shard.hi)]
        n = len(rows)
        tensors = Tensors(
            torch.empty((n, pre.n_num_features), dtype=torch.float32),
            torch.empty((n, len(pre.categorical)), dtype=torch.int64),
            torch.empty(n, dtype=torch.float32),
            int(np.searchsorted(part_rows, shard.lo)),  # this shard's first row within the part
            len(part_rows),
        )
        return cls(rows, tensors)

    def kept_frame(self, shard: Shard) -> pd.DataFrame:
        if self.kept:
            return pd.concat(self.kept, ignore_index=True)
        return pd.DataFrame(columns=[*shard.schema.names(), shard.schema.target])


def _kept(benchmark_rows: int | None, part: str, t: Tensors) -> np.ndarray:
    """The raw rows of a part that later steps read: the benchmark's (every k-th training and
    validation row, every test row), else the first test rows for the model's input example."""
    if benchmark_rows is not None:
        if part == "test":
            return np.arange(len(t))
        return every_kth(t.global_rows, t.offset, len(t), benchmark_rows)
    return np.arange(min(EXAMPLE_ROWS, len(t))) if part == "test" else np.empty(0, np.int64)


def _groups(test: _Part, data: DataConfig) -> dict[str, np.ndarray]:
    """Each protected column's group per test row on this shard (numbers banded as configured)."""
    if not test.protected:
        return {name: np.empty(0, dtype=object) for name in data.protected}
    values = pd.concat(test.protected, ignore_index=True)
    bands = data.protected_bands
    return {name: groups_of(values[name].to_numpy(), bands.get(name)) for name in data.protected}


def _rows_and_presence(shard: Shard, rows: np.ndarray) -> tuple[pd.DataFrame, pd.Series]:
    """This shard's rows among global ``rows`` (validated), and which columns have any value."""
    picked: list[pd.DataFrame] = []
    present = pd.Series(False, index=shard.schema.names())

    def visit(first: int, chunk: pd.DataFrame) -> None:
        nonlocal present
        a, b = np.searchsorted(rows, [first, first + len(chunk)])
        picked.append(chunk.iloc[rows[a:b] - first])
        present = present | chunk[shard.schema.names()].notna().any()

    shard.scan(visit)
    return pd.concat(picked, ignore_index=True), present


def _fill(shard: Shard, parts: dict[str, _Part], pre: Preprocessor) -> int:
    """Transform each chunk into its parts' tensors; returns the training rows' mixed hash."""
    target, protected, mixed = shard.schema.target, shard.schema.protected, 0

    def visit(first: int, chunk: pd.DataFrame) -> None:
        nonlocal mixed
        for name, part in parts.items():
            a, b = np.searchsorted(part.rows, [first, first + len(chunk)])
            if a == b:
                continue
            piece = chunk.iloc[part.rows[a:b] - first]
            x_num, x_cat = pre.transform(piece)
            t = part.tensors
            t.x_num[a:b], t.x_cat[a:b] = torch.from_numpy(x_num), torch.from_numpy(x_cat)
            t.y[a:b] = torch.from_numpy(piece[target].to_numpy(np.float32))
            keep = part.keep[(part.keep >= a) & (part.keep < b)]
            if len(keep):
                part.kept.append(piece.iloc[keep - a])
            if protected:
                part.protected.append(piece[protected])
            if name == "train":  # the fingerprint is of what the model learns from
                mixed = (mixed + _mix(piece.drop(columns=protected), part.rows[a:b])) % 2**64

    shard.scan(visit)
    return mixed


def _log(
    data: DataConfig, shard: Shard, split: Split, parts: dict[str, _Part], ctx: DistContext
) -> None:
    """What each rank read and holds, the file's columns that the data config leaves out, and
    the memory the data takes."""
    log.info("rank %d/%d read %s", ctx.rank, ctx.world_size, shard.read)
    if shard.unused and ctx.is_main:
        log.info(
            "data %s: file columns not used (not in data.features): %s",
            data.name,
            list(shard.unused),
        )
    log.info(
        "data %s: %s; split %s; rank %d/%d holds %s",
        data.name, shard.source, {p: len(i) for p, i in split.parts().items()},
        ctx.rank, ctx.world_size, {p: len(part.rows) for p, part in parts.items()},
    )  # fmt: skip
    size = sum(
        t.x_num.nbytes + t.x_cat.nbytes + t.y.nbytes for t in (p.tensors for p in parts.values())
    )
    log.info(
        "rank %d/%d: data ready %.1f s after start; model-ready tensors %.0f MiB; peak RSS %.0f MiB",
        ctx.rank, ctx.world_size, seconds_since_start(), size / 2**20, peak_rss_mib(),
    )  # fmt: skip


def _mix(frame: pd.DataFrame, rows: np.ndarray) -> int:
    """The rows' hashes (values, column names aside), each weighted by its global row number."""
    row_hash = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    weights = rows.astype(np.uint64) * np.uint64(2) + np.uint64(1)
    return int((row_hash * weights).sum(dtype=np.uint64))


def _digest(mixed: int, columns, ctx: DistContext) -> str:
    """A short hash of the training data (values, row order, column names), equal for any number of ranks."""
    total = sum(ctx.allgather(mixed)) % 2**64
    return hashlib.sha256(f"{list(columns)}|{total}".encode()).hexdigest()[:16]
