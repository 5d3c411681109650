"""Numeric feature embeddings (Gorishniy et al., 2022) from ``rtdl_num_embeddings``.

The package is imported only when a model uses embeddings, so a served model without them does
not need it installed.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.config import ModelConfig, NumEmbeddings


def fit_bins(cfg: ModelConfig, x_num: torch.Tensor) -> list[torch.Tensor] | None:
    """Bin edges for piecewise-linear embeddings, from the (transformed) training features only."""
    if cfg.num_embeddings is not NumEmbeddings.piecewise or x_num.shape[1] == 0:
        return None
    from rtdl_num_embeddings import compute_bins

    return compute_bins(x_num, n_bins=cfg.n_bins)


def make_num_embeddings(
    cfg: ModelConfig, n_num: int, bins: list[torch.Tensor] | None
) -> nn.Module | None:
    """Shape: (batch, n_num) -> (batch, n_num, d_embedding), or None for raw features."""
    if cfg.num_embeddings is NumEmbeddings.none or n_num == 0:
        return None
    from rtdl_num_embeddings import PeriodicEmbeddings, PiecewiseLinearEmbeddings

    if cfg.num_embeddings is NumEmbeddings.piecewise:
        if bins is None:
            raise ValueError("piecewise embeddings need bins (fit_bins on the training features)")
        return PiecewiseLinearEmbeddings(bins, cfg.d_embedding, activation=False, version="B")
    return PeriodicEmbeddings(n_num, cfg.d_embedding, lite=False)
