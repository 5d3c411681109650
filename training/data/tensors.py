"""A split's rows as tensors: what the loop trains on and the checks measure."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tensors:
    """This rank's rows of one split, ready for the model.

    Shape: x_num (n, d_num) float32, x_cat (n, n_cat) int64, y (n,) float32. The rows are
    positions ``offset .. offset + n - 1`` of the split's ``total`` rows across all ranks.
    """

    x_num: torch.Tensor
    x_cat: torch.Tensor
    y: torch.Tensor
    offset: int = 0
    total: int = -1  # -1: this rank holds the whole split

    def __len__(self) -> int:
        return len(self.y)

    @property
    def global_rows(self) -> int:
        return len(self) if self.total < 0 else self.total

    def take(self, idx: torch.Tensor) -> Tensors:
        return Tensors(
            self.x_num.index_select(0, idx),
            self.x_cat.index_select(0, idx),
            self.y.index_select(0, idx),
        )

    def to(self, device: torch.device) -> Tensors:
        return Tensors(
            self.x_num.to(device), self.x_cat.to(device), self.y.to(device), self.offset, self.total
        )
