"""An ensemble of networks trained apart (other seeds, other configs), scored as one model."""

from __future__ import annotations

import torch
from torch import nn


class Ensemble(nn.Module):
    """Each member's PD (the mean of its own k heads), as a logit: ``predict_pd`` then averages
    them, so the ensemble's PD is the plain mean of its members' PDs, whatever each member's k.

    Shape: x_num (batch, n_num), x_cat (batch, n_cat) -> logits (batch, n_members)
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        # float64 keeps logit(sigmoid(.)) exact to ~1e-12 for PDs far from 0 and 1
        pds = [torch.sigmoid(m(x_num, x_cat).double()).mean(1) for m in self.members]
        return torch.logit(torch.stack(pds, 1)).to(x_num.dtype)
