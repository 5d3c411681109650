"""Drift of a scored book against the model's training distributions: PSI of the scores and of
each feature (characteristic stability), from bin counts that add up across ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.errors import DataError
from training.metrics import bin_counts, psi_of_shares
from training.tracking.registry import ScoringModel


def reference_bins(reference: dict) -> tuple[np.ndarray, np.ndarray]:
    """(interior edges, shares) of a score reference ``{"edges": [...], "shares": [...]}``.

    ``edges`` may hold the outer bounds too (``len(shares) + 1`` edges, as ``np.histogram``
    gives) or only the interior ones (``len(shares) - 1``); either way the outer bins are open,
    so scores beyond the training range still count. A score on an edge goes to the upper bin.
    """
    edges = np.asarray(reference.get("edges", []), dtype=np.float64)
    shares = np.asarray(reference.get("shares", []), dtype=np.float64)
    if len(edges) == len(shares) + 1:
        edges = edges[1:-1]
    ok = (
        len(shares) >= 1
        and len(edges) == len(shares) - 1
        and np.all(np.diff(edges) > 0)
        and np.all(shares >= 0)
        and abs(shares.sum() - 1) < 1e-3
    )
    if not ok:
        raise DataError(f"score reference is malformed: {len(edges)} edges, shares {shares}")
    return edges, shares


def psi_against(reference: dict, scores: np.ndarray) -> float:
    """Population stability index of ``scores`` against the model's training-score reference."""
    edges, shares = reference_bins(reference)
    return psi_of_shares(shares, bin_counts(edges, np.asarray(scores, dtype=np.float64)))


def feature_counts(frame: pd.DataFrame, reference: dict[str, dict]) -> dict[str, np.ndarray]:
    """Rows per training bin of each feature: a number's deciles, then missing; a category's
    training categories, then any other."""
    out = {}
    for name, ref in reference.items():
        if name not in frame:
            continue
        if ref["kind"] == "categorical":
            cats = ref["categories"]
            index = pd.Index(cats).get_indexer(frame[name].astype("string").fillna("missing"))
            out[name] = np.bincount(np.where(index < 0, len(cats), index), minlength=len(cats) + 1)
            continue
        x = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
        missing = np.isnan(x)
        present = bin_counts(np.asarray(ref["edges"], dtype=np.float64), x[~missing])
        out[name] = np.append(present, missing.sum())
    return out


def feature_psi(reference: dict[str, dict], counts: dict[str, np.ndarray]) -> dict[str, dict]:
    """PSI per feature with its band: < 0.10 stable, 0.10-0.25 some shift, >= 0.25 major."""
    out = {}
    for name, c in counts.items():
        ref = reference[name]
        tail = 0.0 if ref["kind"] == "categorical" else ref["missing_share"]
        value = psi_of_shares(np.append(ref["shares"], tail), np.asarray(c, dtype=np.float64))
        band = "stable" if value < 0.10 else "some shift" if value < 0.25 else "major shift"
        out[name] = {"psi": value, "band": band}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["psi"]))


def usable_reference(model: ScoringModel) -> tuple[dict | None, str | None]:
    """The model's score reference when PSI can use it, else None and why not."""
    reference = model.score_reference
    if reference is None:
        return None, "the model carries no training-score reference: PSI skipped"
    column = reference.get("column", "score")
    if column != model.score_column:
        return None, f"the reference is of {column!r}, not {model.score_column!r}: PSI skipped"
    try:
        reference_bins(reference)
    except DataError as e:
        return None, f"{e}: PSI skipped"
    return reference, None


def gathered_feature_psi(ranks: list[dict], model: ScoringModel) -> dict[str, dict]:
    """Each feature's PSI from every rank's bin counts (``rank["features"]``)."""
    if not model.feature_reference:
        return {}
    counts = {
        n: sum(r["features"][n] for r in ranks if n in r["features"])
        for n in model.feature_reference
    }
    return feature_psi(model.feature_reference, {n: c for n, c in counts.items() if np.sum(c) > 0})
