"""A network of event histories around any network: each borrower's most recent events, one by
one, encoded and pooled per source, fused with the flat features.

The data wing lays a source's ``sequence`` most recent events out as columns of x_num (event k's
fields, its age in months, a 0/1 column per category, and their missing indicators: an empty
slot is all missing; ``training/data/history.py``). Here each event goes through one encoder
per source (shared weights across events, plus a learned bias per position, so recency and
order are learned), the encodings are averaged over the slots (a Deep Sets pooling), and a
fusion network reads the pooled vectors of every source with the free flat features (so it
learns interactions across sources and with the loan's fields). Its logit is added to the
wrapped network's, which reads the flat features as before: monotone directions and numeric
embeddings apply to them unchanged, and the fusion never sees a monotone column.

Every operation is linear or a ReLU, so DeepLIFT's rescale rule gives reasons that add up
exactly (``training/serving/deeplift.py``). Not a GRU or attention: a recurrence's gates and
softmax's normalisation are products of inputs, which the rescale rule does not split exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.dense import DenseInput


def flat_columns(layout: list[dict], n_num: int) -> list[int]:
    """The x_num columns that are not an event slot's value or missing indicator."""
    slots = {j for s in layout for key in ("values", "missing") for event in s[key] for j in event}
    return [j for j in range(n_num) if j not in slots]


class EventEncoder(nn.Module):
    """Shape: values, missing (batch, n_events, n_fields) -> (batch, d) pooled over events.

    Each event is read with the ``window - 1`` events before it (a temporal convolution: changes
    from one filing to the next, gaps, volatility), beyond the oldest an empty event."""

    def __init__(self, n_events: int, n_fields: int, d: int, window: int = 3) -> None:
        super().__init__()
        self.window = window
        self.first = nn.Linear(2 * n_fields * window, d)
        self.position = nn.Parameter(torch.zeros(n_events, d))
        self.second = nn.Linear(d, d)

    def forward(self, values: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        n = values.shape[1]
        x = torch.cat([values, missing], -1)
        empty = torch.cat([torch.zeros_like(values[:, :1]), torch.ones_like(missing[:, :1])], -1)
        x = torch.cat([x, empty.expand(-1, self.window - 1, -1)], 1)  # older than the oldest
        x = torch.cat([x[:, i : i + n] for i in range(self.window)], -1)
        h = torch.relu(self.first(x) + self.position)
        return torch.relu(self.second(h)).mean(1)


class Events(DenseInput):
    """Shape: x_num (batch, n_num), x_cat (batch, n_cat) -> logits (batch, k) of ``base``.

    ``layout``: per source, ``values[k][f]`` and ``missing[k][f]``, the x_num columns of field f
    of event k and of its missing indicator (-1: none, read as 0). ``base`` is a network built for
    the other x_num columns (``flat``, in order); ``free`` are those among them without a
    monotone direction, which the fusion reads.
    """

    def __init__(
        self,
        base: DenseInput,
        layout: list[dict],
        n_num: int,
        free: list[int],
        cat_cardinalities: list[int],
        d: int = 32,
    ) -> None:
        super().__init__()
        self.base, self.cat_cardinalities = base, list(cat_cardinalities)
        flat = flat_columns(layout, n_num)
        zero = n_num  # the index of a column of zeros appended to x_num (an absent indicator)
        self.register_buffer("flat", torch.tensor(flat, dtype=torch.long), persistent=False)
        self.register_buffer("free", torch.tensor(free, dtype=torch.long), persistent=False)
        self.encoders = nn.ModuleList()
        for i, s in enumerate(layout):
            values = torch.tensor(s["values"], dtype=torch.long)
            missing = torch.tensor(s["missing"], dtype=torch.long)
            self.register_buffer(f"values_{i}", values, persistent=False)
            self.register_buffer(
                f"missing_{i}", missing.where(missing >= 0, zero), persistent=False
            )
            self.encoders.append(EventEncoder(*values.shape, d))
        d_fuse = d * len(layout) + len(free) + sum(self.cat_cardinalities)
        self.fuse = nn.Sequential(nn.Linear(d_fuse, d), nn.ReLU(), nn.Linear(d, 1))
        nn.init.normal_(self.fuse[2].weight, std=0.01)  # starts near the base network alone

    def forward_dense(self, x_num: torch.Tensor, x_onehot: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([x_num, x_num.new_zeros(len(x_num), 1)], 1)
        pooled = [
            encoder(
                padded[:, getattr(self, f"values_{i}")], padded[:, getattr(self, f"missing_{i}")]
            )
            for i, encoder in enumerate(self.encoders)
        ]
        flat = x_num[:, self.flat]
        fused = self.fuse(torch.cat([*pooled, flat[:, self.free], x_onehot], 1))
        return self.base.forward_dense(flat, x_onehot) + fused
