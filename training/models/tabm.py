"""TabM (Gorishniy et al., ICLR 2025): a parameter-efficient ensemble of k MLPs, from ``tabm``."""

from __future__ import annotations

import torch
from tabm import TabM

from training.models.config import TabMConfig
from training.models.dense import DenseInput
from training.models.embeddings import make_num_embeddings


class TabMLogits(DenseInput):
    """Shape: x_num (batch, n_num), x_cat (batch, n_cat) -> logits (batch, k)."""

    def __init__(self, tabm: TabM, cat_cardinalities: list[int]) -> None:
        super().__init__()
        self.tabm = tabm
        self.cat_cardinalities = list(cat_cardinalities)

    def forward_dense(self, x_num: torch.Tensor, x_onehot: torch.Tensor) -> torch.Tensor:
        # TabM.forward with the one-hot encoding (a module without parameters) already applied;
        # tests/unit/test_explain.py checks the two agree.
        t, parts = self.tabm, []
        if x_num.shape[1]:
            parts.append((x_num if t.num_module is None else t.num_module(x_num)).flatten(1))
        if x_onehot.shape[1]:
            parts.append(x_onehot)
        x = t.backbone(t.ensemble_view(torch.cat(parts, 1)))
        return t.output(x).squeeze(-1)


def build_tabm(
    cfg: TabMConfig, n_num: int, cat_cardinalities: list[int], bins: list[torch.Tensor] | None
) -> TabMLogits:
    tabm = TabM.make(
        n_num_features=n_num,
        cat_cardinalities=cat_cardinalities or None,
        d_out=1,
        num_embeddings=make_num_embeddings(cfg, n_num, bins),
        k=cfg.k,
        n_blocks=cfg.n_blocks,
        d_block=cfg.d_block,
        dropout=cfg.dropout,
    )
    return TabMLogits(tabm, cat_cardinalities)
