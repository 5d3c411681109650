"""A plain, strong MLP baseline: [Linear -> ReLU -> Dropout] x n_blocks -> Linear."""

from __future__ import annotations

import torch
from torch import nn

from training.models.dense import DenseInput


class MLP(DenseInput):
    """Numeric features (optionally embedded) and one-hot categoricals, concatenated.

    Shape:
        x_num: (batch, n_num) float32; x_cat: (batch, n_cat) int64 -> logits (batch, 1)
        (``forward_dense``: x_cat as one-hots, (batch, sum(cat_cardinalities)))
    """

    def __init__(
        self,
        *,
        n_num: int,
        cat_cardinalities: list[int],
        d_block: int,
        n_blocks: int,
        dropout: float,
        num_embeddings: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.cat_cardinalities = list(cat_cardinalities)
        self.num_embeddings = num_embeddings
        d_num = n_num if num_embeddings is None else _embedded_width(num_embeddings, n_num)
        d_in = d_num + sum(self.cat_cardinalities)
        layers: list[nn.Module] = []
        for i in range(n_blocks):
            layers += [
                nn.Linear(d_in if i == 0 else d_block, d_block),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(d_block, 1)

    def forward_dense(self, x_num: torch.Tensor, x_onehot: torch.Tensor) -> torch.Tensor:
        if self.num_embeddings is not None:
            x_num = self.num_embeddings(x_num).flatten(1)  # (B, n_num, d) -> (B, n_num * d)
        return self.head(self.backbone(torch.cat([x_num, x_onehot], dim=1)))


def _embedded_width(module: nn.Module, n_num: int) -> int:
    """n_num * d_embedding, read off one forward pass so any embedding module fits."""
    with torch.no_grad():
        return module(torch.zeros(1, n_num)).flatten(1).shape[1]
