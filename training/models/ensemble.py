"""An ensemble of networks trained apart (other seeds, other configs), scored as one model."""

from __future__ import annotations

import torch
from torch import nn

from training.models.dense import DenseInput, mean_pd_logit


class Ensemble(DenseInput):
    """Each member's PD (the mean of its own k heads), as a logit: ``predict_pd`` then averages
    them, so the ensemble's PD is the plain mean of its members' PDs, whatever each member's k.

    Shape: x_num (batch, n_num), x_cat (batch, n_cat) -> logits (batch, n_members)
    """

    def __init__(self, members: list[DenseInput]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.cat_cardinalities = members[0].cat_cardinalities

    def forward_dense(self, x_num: torch.Tensor, x_onehot: torch.Tensor) -> torch.Tensor:
        # float64: sigmoid of the result gives each member's mean PD to ~1e-12
        logits = [mean_pd_logit(m.forward_dense(x_num, x_onehot).double()) for m in self.members]
        return torch.stack(logits, 1).to(x_num.dtype)
