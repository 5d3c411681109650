"""The input every network differentiates through: numeric features and one-hot categoricals.

Networks take ``(x_num, x_cat)`` with categorical codes, as training and serving hold them; each
one-hots the codes here and runs ``forward_dense``. Reason codes (``training/serving/explain.py``)
call ``forward_dense`` directly, so integrated gradients can move a categorical from the
reference's category to the row's along a straight line, like a number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_hot(x_cat: torch.Tensor, cardinalities: list[int], dtype: torch.dtype) -> torch.Tensor:
    """Shape: (batch, n_cat) int64 -> (batch, sum(cardinalities)), the columns' one-hots side by side."""
    parts = [F.one_hot(x_cat[:, j], c) for j, c in enumerate(cardinalities)]
    return torch.cat(parts, 1).to(dtype) if parts else x_cat.new_zeros(len(x_cat), 0).to(dtype)


class DenseInput(nn.Module):
    """A network whose ``forward_dense(x_num, x_onehot) -> logits (batch, k)`` does the work."""

    cat_cardinalities: list[int]

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        return self.forward_dense(x_num, one_hot(x_cat, self.cat_cardinalities, x_num.dtype))

    def forward_dense(self, x_num: torch.Tensor, x_onehot: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def mean_pd_logit(logits: torch.Tensor) -> torch.Tensor:
    """The logit of the mean of sigmoid(logits) over the heads, in log space (finite even where
    a PD rounds to 0 or 1). Shape: (batch, k) -> (batch,)."""
    if logits.shape[1] == 1:
        return logits[:, 0]  # one head: its own logit
    log_pd, log_not = F.logsigmoid(logits), F.logsigmoid(-logits)
    return torch.logsumexp(log_pd, 1) - torch.logsumexp(log_not, 1)
