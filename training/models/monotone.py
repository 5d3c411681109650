"""Monotone constraints that hold by construction, around any network.

A feature declared ``monotone: +1`` (risk must not fall as it rises) or ``-1`` is kept out of the
wrapped network and enters only through a side network that is non-decreasing in it: every path
from a monotone input to the logit has non-negative weights (``|w|``) and non-decreasing
activations, so ``d logit / d x_j * sign_j >= 0`` for every parameter value, not just the trained
ones (Runje & Shankaranarayana, "Constrained Monotonic Neural Networks", ICML 2023: half the
units convex (ReLU), half concave (its point reflection), so the side network is not limited to
convex shapes). The free features enter the side network's first layer with unconstrained
weights, so a monotone feature's effect can still depend on them (industry, region, ...).

The logit is ``base(free features) + side(monotone, free)``: with k heads (TabM) the same
monotone term is added to each, and an ensemble's PD is a mean of monotone PDs, so the guarantee
holds for every model family. The preprocessing is non-decreasing too (a quantile map), so it
holds for the raw values. Written here because the maintained monotone libraries we found are
Keras-only (airt's mono-dense) or unmaintained since 2022 (monotonenorm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.dense import DenseInput


class NonNegLinear(nn.Linear):
    """A linear layer whose effective weights are ``|w|`` >= 0 (its bias is free)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.abs(), self.bias)


def _convex_concave(h: torch.Tensor) -> torch.Tensor:
    """ReLU on the first half of the units, -ReLU(-h) on the rest: both non-decreasing."""
    half = h.shape[1] // 2
    return torch.cat([F.relu(h[:, :half]), -F.relu(-h[:, half:])], 1)


class Monotone(DenseInput):
    """Shape: x_num (batch, n_num), x_cat (batch, n_cat) -> logits (batch, k) of ``base``.

    ``directions[j]`` is x_num column j's declared direction (+1, -1, 0 = free); ``base`` is a
    network built for the free columns only.
    """

    def __init__(
        self,
        base: DenseInput,
        directions: list[int],
        cat_cardinalities: list[int],
        d_hidden: int = 64,
    ) -> None:
        super().__init__()
        signs = torch.tensor(directions, dtype=torch.float32)
        self.base, self.cat_cardinalities = base, list(cat_cardinalities)
        self.register_buffer("mono", signs.nonzero().flatten(), persistent=False)
        self.register_buffer("free", (signs == 0).nonzero().flatten(), persistent=False)
        self.register_buffer("sign", signs[signs != 0], persistent=False)
        n_mono, d_free = len(self.sign), len(self.free) + sum(self.cat_cardinalities)
        self.mono_in = NonNegLinear(n_mono, d_hidden, bias=False)
        self.free_in = nn.Linear(d_free, d_hidden)
        self.hidden = NonNegLinear(d_hidden, d_hidden)
        self.out = NonNegLinear(d_hidden, 1, bias=False)
        self.direct = NonNegLinear(n_mono, 1, bias=False)  # the plain linear trend, for free
        nn.init.uniform_(self.out.weight, 0.0, 1.0 / d_hidden)  # starts near the base's logit

    def forward_dense(self, x_num: torch.Tensor, x_onehot: torch.Tensor) -> torch.Tensor:
        m, free = x_num[:, self.mono] * self.sign, x_num[:, self.free]
        h = _convex_concave(self.mono_in(m) + self.free_in(torch.cat([free, x_onehot], 1)))
        side = self.out(_convex_concave(self.hidden(h))) + self.direct(m)
        return self.base.forward_dense(free, x_onehot) + side
