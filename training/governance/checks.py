"""What a model validator checks on test rows besides accuracy: that the declared monotone
directions hold (by perturbation) and that the reason codes add up (completeness)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.data.preprocess import Preprocessor
from training.data.schema import Schema
from training.data.tensors import Tensors
from training.models.build import predict_pd
from training.runtime.dist import DistContext
from training.serving.explain import Explainer

STEP = 0.5  # how far a feature is raised: half a standard deviation of its normal scores
WRONG = 1e-9  # a PD move the wrong way smaller than this is float noise, not a violation


def monotonicity(
    model: nn.Module, t: Tensors, pre: Preprocessor, schema: Schema, ctx: DistContext,
    max_rows: int = 20_000,
) -> dict[str, dict]:  # fmt: skip
    """For each feature declared monotone: raise it on every test row where it has a value (a
    binary feature: from 0 to 1) and count the rows whose PD moves against the declared
    direction. The preprocessing keeps order, so raising the normal score raises the raw value.
    Counts are summed over the ranks' test rows (at most ``max_rows`` per rank)."""
    x_num, x_cat = t.x_num[:max_rows], t.x_cat[:max_rows]
    base = predict_pd(model, x_num, x_cat)
    directions, counts = pre.directions(schema), {}
    for j, name in enumerate(pre.numeric + pre.binary):
        if directions[j] == 0:
            continue
        rows = _has_value(x_num, pre, name)
        raised = x_num.clone()
        if name in pre.binary:
            rows &= x_num[:, j] == 0
            raised[:, j] = 1.0
        else:
            raised[:, j] += STEP
        moved = (predict_pd(model, raised, x_cat) - base) * directions[j]
        counts[name] = [int(rows.sum()), int((rows.numpy() & (moved < -WRONG)).sum())]
    names = list(counts)
    totals = ctx.allgather_array(np.array([c for n in names for c in counts[n]], dtype=np.int64))
    totals = totals.reshape(ctx.world_size, len(names), 2).sum(0) if names else totals
    return {
        n: {"direction": directions[(pre.numeric + pre.binary).index(n)], "rows": int(r),
            "violations": int(v), "share": v / max(int(r), 1)}
        for n, (r, v) in zip(names, totals, strict=True)
    }  # fmt: skip


def _has_value(x_num: torch.Tensor, pre: Preprocessor, name: str) -> torch.Tensor:
    """Rows where the feature is present: not missing and not a sentinel code."""
    has = torch.ones(len(x_num), dtype=torch.bool)
    flags = [
        len(pre.numeric) + len(pre.binary) + i for i, c in enumerate(pre.indicators) if c == name
    ]
    offset = len(pre.numeric) + len(pre.binary) + len(pre.indicators)
    flags += [offset + i for i, s in enumerate(pre.sentinels) if s[0] == name]
    for col in flags:
        has &= x_num[:, col] == 0
    return has


def completeness(explainer: Explainer, t: Tensors, n_rows: int = 100) -> dict:
    """Contributions of ``n_rows`` test rows against logit minus the references' mean logit."""
    _, errors = explainer.contributions(t.x_num[:n_rows], t.x_cat[:n_rows])
    worst = float(np.abs(errors).max()) if len(errors) else 0.0
    return explainer.describe() | {
        "rows_checked": len(errors),
        "max_abs_error": worst,
        "mean_abs_error": float(np.abs(errors).mean()) if len(errors) else 0.0,
        "passed": worst <= explainer.cfg.tolerance,
    }
