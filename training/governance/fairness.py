"""Fairness per protected attribute: approval rates at the model's cut-off, AUC and calibration
per group (fairlearn's ``MetricFrame``), and the approval-rate ratio the 80 % rule reads.

The cut-off approves the ``approve_rate`` share of rows with the lowest PD (0.8: the riskiest
20 % are declined), so the same rule applies to any portfolio's default rate. Numeric protected
columns (age) are grouped into bands (``data.protected_bands``); a group with fewer than
``min_rows`` rows is reported but left out of the ratio (its rate is noise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training import metrics


def fairness_table(
    y: np.ndarray, p: np.ndarray, groups: dict[str, np.ndarray], approve_rate: float = 0.8,
    min_rows: int = 30,
) -> dict:  # fmt: skip
    """Per protected attribute: each group's rows, approval rate, default rate, mean PD, AUC and
    ECE, and the ratio of the lowest to the highest approval rate among groups of ``min_rows``
    or more (the 80 % rule passes at >= 0.8)."""
    from fairlearn.metrics import MetricFrame

    cutoff = float(np.quantile(p, approve_rate)) if len(p) else 0.0
    per_group = {
        "rows": lambda yt, pt: len(yt),
        "approval_rate": lambda yt, pt: float((pt <= cutoff).mean()),
        "default_rate": lambda yt, pt: float(np.mean(yt)),
        "mean_pd": lambda yt, pt: float(np.mean(pt)),
        "auc": lambda yt, pt: metrics.auc(yt, pt) if 0 < yt.sum() < len(yt) else None,
        "ece": lambda yt, pt: metrics.ece(yt, pt),
    }
    out: dict = {
        "cutoff_pd": cutoff,
        "approve_rate": approve_rate,
        "min_rows": min_rows,
        "attributes": {},
    }
    for name, g in groups.items():
        frame = MetricFrame(
            metrics=per_group, y_true=y, y_pred=p, sensitive_features=pd.Series(g, name=name)
        )
        table = frame.by_group.reset_index().rename(columns={name: "group"})
        rows = [r | {"rows": int(r["rows"])} for r in table.to_dict(orient="records")]
        rated = [r["approval_rate"] for r in rows if r["rows"] >= min_rows]
        ratio = min(rated) / max(rated) if len(rated) > 1 and max(rated) > 0 else None
        out["attributes"][name] = {"groups": rows, "approval_ratio": ratio}
    return out
