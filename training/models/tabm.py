"""TabM (Gorishniy et al., ICLR 2025): a parameter-efficient ensemble of k MLPs, from ``tabm``."""

from __future__ import annotations

import torch
from tabm import TabM
from torch import nn

from training.models.config import TabMConfig
from training.models.embeddings import make_num_embeddings


class TabMLogits(nn.Module):
    """Shape: x_num (batch, n_num), x_cat (batch, n_cat) -> logits (batch, k)."""

    def __init__(self, tabm: TabM) -> None:
        super().__init__()
        self.tabm = tabm

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        # TabM takes None for a kind of column the data set does not have.
        x_num_or_none = x_num if x_num.shape[1] else None
        return self.tabm(x_num_or_none, x_cat if x_cat.shape[1] else None).squeeze(-1)


def build_tabm(
    cfg: TabMConfig, n_num: int, cat_cardinalities: list[int], bins: list[torch.Tensor] | None
) -> nn.Module:
    return TabMLogits(
        TabM.make(
            n_num_features=n_num,
            cat_cardinalities=cat_cardinalities or None,
            d_out=1,
            num_embeddings=make_num_embeddings(cfg, n_num, bins),
            k=cfg.k,
            n_blocks=cfg.n_blocks,
            d_block=cfg.d_block,
            dropout=cfg.dropout,
        )
    )
