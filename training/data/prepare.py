"""A data set made ready for training on this rank: loaded, split, preprocessed, fingerprinted.

Each rank holds a contiguous shard of the rows. The split uses every row's label (gathered: small)
and the preprocessing is fitted on training rows chosen by global row number, so both are the
same for any number of ranks.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from training.config import TrainConfig
from training.data.loaders import Dataset, load_dataset
from training.data.preprocess import Preprocessor
from training.data.split import Split, make_split
from training.dist import DistContext, local_rows
from training.loop import Tensors

log = logging.getLogger("riskbrain")

PREPROCESS_SAMPLE = 200_000  # training rows the preprocessing is fitted on, at most (evenly spaced)


@dataclass(frozen=True)
class Prepared:
    """This rank's shard of a data set, split and preprocessed: raw frames and model-ready tensors."""

    dataset: Dataset
    split: Split  # global row numbers, the same on every rank
    pre: Preprocessor
    frames: dict[str, pd.DataFrame]
    tensors: dict[str, Tensors]
    train_sample: pd.DataFrame  # the rows the preprocessing was fitted on (every rank has them)
    sample_x: tuple[torch.Tensor, torch.Tensor]  # those rows preprocessed: bins, PSI baseline
    labels: np.ndarray  # every row's label, in global order
    fingerprint: str
    rows: dict[str, np.ndarray]  # this shard's rows of each part, as positions in the shard

    @property
    def train(self) -> Tensors:
        return self.tensors["train"]

    @property
    def valid(self) -> Tensors:
        return self.tensors["valid"]


def prepare(cfg: TrainConfig, ctx: DistContext | None = None) -> Prepared:
    """Load this rank's shard of ``cfg.data``, split it, fit the preprocessing, make tensors."""
    ctx = ctx or DistContext()
    ds = load_dataset(cfg.data, ctx)
    target, period = ds.schema.target, ds.schema.period
    lo, hi = ds.offset, ds.offset + len(ds.frame)

    # The split needs every row's label (and period): small, so gathered, then split identically everywhere.
    keys = pd.concat(
        ctx.allgather(ds.frame[[target] + ([period] if period else [])]), ignore_index=True
    )
    split = make_split(keys, target, cfg.data.split)
    local = {part: local_rows(idx, lo, hi) for part, idx in split.parts().items()}
    frames = {part: ds.frame.iloc[idx].reset_index(drop=True) for part, idx in local.items()}

    # Preprocessing is fitted on evenly spaced training rows chosen by global row number, so it
    # is the same whatever the number of ranks (all training rows when there are few enough).
    sample_rows = split.train[:: max(1, -(-len(split.train) // PREPROCESS_SAMPLE))]
    sample = pd.concat(
        ctx.allgather(ds.frame.iloc[local_rows(sample_rows, lo, hi)]), ignore_index=True
    )
    pre = Preprocessor.fit(sample, ds.schema)

    tensors = {}
    for part, frame in frames.items():
        x_num, x_cat = pre.transform(frame)
        y = torch.from_numpy(frame[target].to_numpy(np.float32))
        # This shard's first row within the part.
        offset = int(np.searchsorted(split.parts()[part], lo))
        tensors[part] = Tensors(
            torch.from_numpy(x_num), torch.from_numpy(x_cat), y, offset, len(split.parts()[part])
        )
    labels = keys[target].to_numpy()
    _log(cfg, ds, split, frames, ctx)
    return Prepared(
        ds,
        split,
        pre,
        frames,
        tensors,
        sample,
        tuple(torch.from_numpy(x) for x in pre.transform(sample)),
        labels,
        fingerprint(frames["train"], local["train"] + lo, ctx),
        local,
    )


def _log(
    cfg: TrainConfig, ds: Dataset, split: Split, frames: dict[str, pd.DataFrame], ctx: DistContext
) -> None:
    """What each rank read and holds, and the file's columns that the data config leaves out."""
    log.info("rank %d/%d read %s", ctx.rank, ctx.world_size, ds.read)
    if ds.unused and ctx.is_main:
        log.info(
            "data %s: file columns not used (not in data.features): %s",
            cfg.data.name,
            list(ds.unused),
        )
    log.info(
        "data %s: %s; split %s; rank %d/%d holds %s",
        cfg.data.name,
        ds.source,
        {p: len(i) for p, i in split.parts().items()},
        ctx.rank,
        ctx.world_size,
        {p: len(f) for p, f in frames.items()},
    )


def fingerprint(frame: pd.DataFrame, rows: np.ndarray, ctx: DistContext) -> str:
    """A short hash of the training data (values, row order, column names), equal for any number of ranks."""
    row_hash = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    mixed = int(
        (row_hash * (rows.astype(np.uint64) * np.uint64(2) + np.uint64(1))).sum(dtype=np.uint64)
    )
    total = sum(ctx.allgather(mixed)) % 2**64
    return hashlib.sha256(f"{list(frame.columns)}|{total}".encode()).hexdigest()[:16]
