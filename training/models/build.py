"""Model builders, selected by ``model.name``, and PD prediction; models know nothing of training."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from training.models.config import MLPConfig, ModelConfig, ModelName, TabMConfig
from training.models.embeddings import make_num_embeddings
from training.models.events import Events, flat_columns
from training.models.mlp import MLP
from training.models.monotone import Monotone


def _build_mlp(
    cfg: MLPConfig, n_num: int, cat_cardinalities: list[int], bins: list[torch.Tensor] | None
) -> nn.Module:
    return MLP(
        n_num=n_num,
        cat_cardinalities=cat_cardinalities,
        d_block=cfg.d_block,
        n_blocks=cfg.n_blocks,
        dropout=cfg.dropout,
        num_embeddings=make_num_embeddings(cfg, n_num, bins),
    )


def _build_tabm(
    cfg: TabMConfig, n_num: int, cat_cardinalities: list[int], bins: list[torch.Tensor] | None
) -> nn.Module:
    # Imported here: the `tabm` package is needed only by TabM models (and their served copies).
    from training.models.tabm import build_tabm

    return build_tabm(cfg, n_num, cat_cardinalities, bins)


BUILDERS = {ModelName.mlp: _build_mlp, ModelName.tabm: _build_tabm}


def build_model(
    cfg: ModelConfig,
    *,
    n_num: int,
    cat_cardinalities: list[int],
    bins: list[torch.Tensor] | None = None,
    base_rate: float | None = None,
    directions: list[int] | None = None,
    events: list[dict] | None = None,
) -> nn.Module:
    """Every model maps (x_num, x_cat) to logits of shape (batch, k): k ensemble members, 1 for the MLP.

    ``base_rate`` (the training default rate) starts the output bias at its log-odds, so the first
    steps learn the features rather than the 5 % prior (an untrained net predicts 50 %).
    ``directions`` (each x_num column's declared monotone direction, 0 = none) makes the model
    monotone in those columns by construction when ``cfg.monotone`` is on (``Monotone``).
    ``events`` (the x_num columns of each source's event slots, ``History.layout``) adds the
    network of event histories (``Events``) when ``cfg.d_event`` > 0; without it those columns
    enter like any other.
    """
    if events and cfg.d_event:
        flat = flat_columns(events, n_num)
        flat_dirs = [directions[j] for j in flat] if directions is not None else None
        flat_bins = [bins[j] for j in flat] if bins is not None else None
        base = _flat_model(cfg, len(flat), cat_cardinalities, flat_bins, flat_dirs)
        free = [i for i, j in enumerate(flat) if not flat_dirs or flat_dirs[i] == 0]
        model = Events(base, events, n_num, free, cat_cardinalities, cfg.d_event)
    else:
        model = _flat_model(cfg, n_num, cat_cardinalities, bins, directions)
    if base_rate is not None:
        with torch.no_grad():
            _output_bias(model).fill_(math.log(base_rate / (1 - base_rate)))
    return model


def _flat_model(
    cfg: ModelConfig,
    n_num: int,
    cat_cardinalities: list[int],
    bins: list[torch.Tensor] | None,
    directions: list[int] | None,
) -> nn.Module:
    """The architecture ``cfg`` names, ``Monotone`` around it where directions are declared."""
    if cfg.monotone and directions is not None and any(directions):
        free = [j for j, d in enumerate(directions) if d == 0]
        free_bins = [bins[j] for j in free] if bins is not None else None
        base = BUILDERS[cfg.name](cfg, len(free), cat_cardinalities, free_bins)
        return Monotone(base, directions, cat_cardinalities)
    return BUILDERS[cfg.name](cfg, n_num, cat_cardinalities, bins)


def _output_bias(model: nn.Module) -> torch.Tensor:
    model = model.base if isinstance(model, Events) else model
    model = model.base if isinstance(model, Monotone) else model
    return model.head.bias if isinstance(model, MLP) else model.tabm.output.bias


@torch.no_grad()
def predict_pd(
    model: nn.Module, x_num: torch.Tensor, x_cat: torch.Tensor, batch_size: int = 16_384
) -> np.ndarray:
    """PD per row: the mean of the ensemble members' probabilities. Shape: (n,) float64."""
    model.eval()
    out = [
        torch.sigmoid(model(x_num[i : i + batch_size], x_cat[i : i + batch_size])).mean(1)
        for i in range(0, len(x_num), batch_size)
    ]
    return torch.cat(out).double().cpu().numpy() if out else np.empty(0)
