"""Data path: in-memory batching (randperm + Tensors.take) vs a per-row Dataset and DataLoader."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import BATCH, figure, interleave, median, paired_ratio, synthetic_tensors
from training.data.tensors import Tensors
from training.runtime.dist import local_rows

GOAL = ">= 10"


class RowDataset(Dataset):
    """The usual baseline: one ``__getitem__`` per row, stacked into batches by the DataLoader."""

    def __init__(self, data: Tensors) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.data.x_num[i], self.data.x_cat[i], self.data.y[i]


def riskbrain_pass(data: Tensors) -> float:
    """One epoch of batches as ``fit`` draws them (permutation, this rank's mask, take); seconds."""
    generator = torch.Generator().manual_seed(0)
    lo, hi = data.offset, data.offset + len(data)
    t0 = time.perf_counter()
    perm = torch.randperm(data.global_rows, generator=generator)
    for start in range(0, data.global_rows, BATCH):
        pos = perm[start : start + BATCH]
        data.take(local_rows(pos, lo, hi))
    return time.perf_counter() - t0


def dataloader_pass(data: Tensors) -> float:
    loader = DataLoader(RowDataset(data), batch_size=BATCH, shuffle=True, num_workers=0)
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def measure(rows: int, repeats: int) -> list[dict]:
    """Rows per second of iterating one epoch of batches, no model."""
    data = synthetic_tensors(rows)
    times = interleave(
        {"riskbrain": lambda: riskbrain_pass(data), "dataloader": lambda: dataloader_pass(data)},
        repeats,
    )
    rows_per_s = {name: rows / median(t) for name, t in times.items()}
    return [
        figure(
            "data_path",
            paired_ratio(times["dataloader"], times["riskbrain"]),  # same rows: rows/s ratio
            GOAL,
            "rows/s of in-memory batching / per-row Dataset + DataLoader (num_workers=0)",
            rows=rows,
            rows_per_s=rows_per_s,
            seconds=times,
        )
    ]
