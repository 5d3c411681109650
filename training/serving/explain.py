"""Reason codes: which features raised a row's risk, by how much, validated for completeness.

Each row's contributions are measured from each row of a reference population (a fixed sample
of training rows, stored with the model) to the row, on the model's (calibrated) PD logit, and
averaged over the references, by one of two methods (``explain.method``):

- ``deeplift`` (the default): DeepLIFT's rescale rule (``training/serving/deeplift.py``), i.e.
  DeepSHAP over the references. Exact: the contributions add up to the logit difference for
  every architecture we build, at one forward and backward pass per (row, reference) pair.
- ``integrated_gradients`` (Sundararajan et al., 2017): the path integral by Gauss-Legendre
  quadrature with ``steps`` points, as captum's ``IntegratedGradients`` does by default; written
  out here (one batched forward and backward pass) because captum differentiates each output
  element apart (``torch.unbind``), a third of the time of a serving call, and it would add
  captum and matplotlib to every served model. tests/unit/test_explain.py checks each method
  equals captum's on the same rows.

Categoricals move in one-hot space (``forward_dense``); a feature's contribution is the sum over
its columns: its value, its missing indicator and its sentinel indicators, or its one-hot block.
So a missing value or "no record" code gets a contribution like any other value. Completeness:
the contributions of a row add up to its logit minus the references' mean logit
(``ExplainConfig.tolerance``, checked in every evaluation report, by the promotion gate and in
the tests). A row that misses it (integrated gradients across kinks; DeepLIFT through an
operation its rules do not know) is integrated again with 4x the points, up to ``max_steps``; a
row that still misses it is reported as it is.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch

from training.data.preprocess import Preprocessor
from training.data.schema import Schema
from training.models.calibration import uncalibrated
from training.models.dense import DenseInput, mean_pd_logit, one_hot
from training.serving.config import ExplainConfig
from training.serving.deeplift import Rescale, secant

METHODS = {
    "deeplift": "DeepLIFT rescale rule from each reference row, averaged (integrated gradients "
    "for rows that miss the tolerance)",
    "integrated_gradients": "integrated gradients (Gauss-Legendre, refined where the tolerance "
    "is missed) from each reference row, averaged",
}


def reference_sample(x_num: torch.Tensor, x_cat: torch.Tensor, n: int, seed: int = 0) -> dict:
    """``n`` training rows drawn with a fixed seed, as the bundle stores them."""
    pick = torch.randperm(len(x_num), generator=torch.Generator().manual_seed(seed))[:n]
    return {"x_num": x_num[pick].tolist(), "x_cat": x_cat[pick].tolist()}


class Explainer:
    """Per-feature contributions to the PD logit of preprocessed rows, and their reason codes."""

    def __init__(
        self,
        model: DenseInput,
        pre: Preprocessor,
        schema: Schema,
        reference: dict,
        cfg: ExplainConfig,
    ) -> None:
        self.model, self.pre, self.schema, self.cfg = model, pre, schema, cfg
        cards = pre.cat_cardinalities
        n = len(reference["x_num"])  # rows; a data set without categoricals has x_cat rows []
        ref_num = torch.tensor(reference["x_num"], dtype=torch.float32).reshape(
            n, pre.n_num_features
        )
        ref_cat = torch.tensor(reference["x_cat"], dtype=torch.int64).reshape(n, len(cards))
        self.ref = (ref_num, one_hot(ref_cat, cards, torch.float32))
        self.features, self.groups = _feature_groups(pre, schema)
        # the integration rules: cfg.steps points, then 4x as many for rows that miss the
        # tolerance, up to cfg.max_steps
        self.rules = [_rule(n) for n in _refinements(cfg.steps, cfg.max_steps)]
        with torch.no_grad():
            self.ref_logit = self._logit(*self.ref).mean()
        self._recorded: tuple[Rescale, torch.Tensor] | None = None  # deeplift's reference pass

    def _logit(self, x_num: torch.Tensor, x_onehot: torch.Tensor) -> torch.Tensor:
        """The logit of the model's PD (its members' mean PD). Shape: (batch,)."""
        return mean_pd_logit(self.model.forward_dense(x_num, x_onehot).double())

    def contributions(
        self, x_num: torch.Tensor, x_cat: torch.Tensor, block: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each row's contribution per feature, and its completeness error (contributions' sum
        minus (logit - mean reference logit)). Shape: (n, n_features), (n,). ``block`` rows at a
        time (default: about 4096 (row, reference) pairs, or 64 rows for integrated gradients)."""
        self.model.eval()
        if block is None:
            block = (
                64
                if self.cfg.method == "integrated_gradients"
                else max(1, 4096 // len(self.ref[0]))
            )
        x = torch.cat([x_num, one_hot(x_cat, self.pre.cat_cardinalities, torch.float32)], 1)
        parts, errors = [], []
        for i in range(0, len(x), block):
            dense, error = self._refined(x[i : i + block])
            parts.append(dense @ self.groups)
            errors.append(error)
        if not parts:
            return np.empty((0, len(self.features))), np.empty(0)
        return torch.cat(parts).numpy(), torch.cat(errors).numpy()

    def _refined(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attributions of dense rows and their completeness errors: the rows whose error misses
        the tolerance are integrated again with the next, finer rule (until ``max_steps``)."""
        if self.cfg.method == "deeplift":
            (dense, logit), rules = self._deeplift(x), self.rules
        else:
            with torch.no_grad():
                logit = self._logit(*self._split(x))
            dense, rules = self._integrated_gradients(x, *self.rules[0]), self.rules[1:]
        gap = logit - self.ref_logit
        error = dense.sum(1) - gap
        for rule in rules:
            redo = (error.abs() > self.cfg.tolerance).nonzero().flatten()
            if len(redo) == 0:
                break
            rows = max(1, len(x) * len(self.rules[0][0]) // len(rule[0]))  # the same memory
            for part in redo.split(rows):
                dense[part] = self._integrated_gradients(x[part], *rule)
                error[part] = dense[part].sum(1) - gap[part]
        return dense, error

    def _deeplift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: (n, d) dense rows -> (n, d) attributions, float64, averaged over references,
        and (n,) the rows' (calibrated) PD logits.

        The network's PD logit by the rescale rule (``training/serving/deeplift.py``), then the
        calibration map's by the same rule: each pair's contributions times
        ``(c(g) - c(g_ref)) / (g - g_ref)``, so they add up to the calibrated logit's difference.
        The references' pass is recorded once, on the first call.
        """
        network, calibration = uncalibrated(self.model)
        logit = lambda dense: mean_pd_logit(network.forward_dense(*self._split(dense)).double())  # noqa: E731
        ref = torch.cat(self.ref, 1)
        with frozen(network):
            if self._recorded is None:
                rescale = Rescale()
                with rescale:
                    g_ref = logit(ref.clone().requires_grad_()).detach()
                self._recorded = rescale, g_ref
            rescale, g_ref = self._recorded
            rows = x.repeat_interleave(len(ref), 0).requires_grad_()  # row i * r + j: reference j
            with rescale.replay():
                g = logit(rows)
            (grad,) = torch.autograd.grad(g.sum(), rows)
        g, g_ref = g.detach(), g_ref.repeat(len(x))
        attributions = ((rows.detach() - ref.repeat(len(x), 1)) * grad).double()
        c = g
        if calibration.method != "none":
            leaf = g.clone().requires_grad_()
            c = calibration.logit(leaf)
            (derivative,) = torch.autograd.grad(c.sum(), leaf)
            c = c.detach()
            slope = secant(g, g_ref, c, calibration.logit(g_ref), derivative)
            attributions *= slope.unsqueeze(1)
        return attributions.view(len(x), len(ref), -1).mean(1), c.view(len(x), len(ref))[:, 0]

    def _integrated_gradients(
        self, x: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Shape: (n, d) dense rows -> (n, d) attributions, float64, averaged over references."""
        ref = torch.cat(self.ref, 1)
        start = ref.repeat(len(x), 1)  # (n * r, d): every row paired with every reference
        diff = x.repeat_interleave(len(ref), 0) - start
        path = start + alphas.view(-1, 1, 1) * diff  # (steps, n * r, d)
        path = path.reshape(-1, x.shape[1]).requires_grad_()
        (grad,) = torch.autograd.grad(self._logit(*self._split(path)).sum(), path)
        mean_grad = (grad.view(len(alphas), -1, x.shape[1]) * weights.view(-1, 1, 1)).sum(0)
        return (diff * mean_grad).double().view(len(x), len(ref), -1).mean(1)

    def _split(self, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_num = self.pre.n_num_features
        return dense[:, :n_num], dense[:, n_num:]

    def reasons(self, frame: pd.DataFrame, contributions: np.ndarray, k: int) -> dict[str, list]:
        """The ``k`` largest positive contributions per row, as columns (one value per row, in
        ``frame``'s order): reason_i (feature name), reason_i_value (the row's value, or what its
        absence means), reason_i_description and reason_i_contribution (logits); blank where a
        row has fewer risk-raising features. Columns, not a frame: the caller builds one frame of
        everything it answers (a second frame and a join cost a served row about 1 ms)."""
        order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
        described = {f.name: f.description or f.name for f in self.schema.features}
        out: dict[str, list] = {}
        cells: dict[str, list] = {}  # the columns named by some reason, as lists
        for i in range(k):
            j = order[:, i] if i < contributions.shape[1] else np.zeros(len(frame), dtype=int)
            c = contributions[np.arange(len(frame)), j] if len(frame) else np.empty(0)
            raises = c > 0
            names = [self.features[f] if ok else "" for f, ok in zip(j, raises, strict=True)]
            out[f"reason_{i + 1}"] = names
            for name in set(names) - set(cells) - {""}:
                cells[name] = frame[name].tolist()  # each column read once, not once a cell
            out[f"reason_{i + 1}_value"] = [
                self._value(cells[name][row], name) if name else ""
                for row, name in enumerate(names)
            ]
            out[f"reason_{i + 1}_description"] = [described.get(n, "") for n in names]
            out[f"reason_{i + 1}_contribution"] = np.where(raises, c, np.nan)
        return out

    def _value(self, v, name: str) -> str:
        """A row's value as a person reads it: the number or category, or why it has none."""
        if pd.isna(v):
            return "missing"
        if name in self.pre.vocab:
            return str(v) if str(v) in self.pre.vocab[name] else f"{v} (not seen in training)"
        x = float(v)
        meaning = [m for c, code, m in self.pre.sentinels if c == name and code == x]
        if meaning:
            return meaning[0]
        return "missing" if x in self.pre.missing_codes.get(name, []) else f"{x:g}"

    def describe(self) -> dict:
        return asdict(self.cfg) | {
            "method": METHODS[self.cfg.method],
            "reference_rows": len(self.ref[0]),
        }


@contextmanager
def frozen(module: torch.nn.Module):
    """``module``'s parameters without gradients for the block (restored after), so only the
    input's descendants require grad."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)


def _refinements(steps: int, max_steps: int) -> list[int]:
    """The points of each rule: ``steps``, then 4x as many, ..., capped at ``max_steps``."""
    out = [steps]
    while out[-1] < max_steps:
        out.append(min(4 * out[-1], max_steps))
    return out


def _rule(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre points and weights of ``n`` points on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(n)  # on [-1, 1]
    return (
        torch.tensor((nodes + 1) / 2, dtype=torch.float32),
        torch.tensor(weights / 2, dtype=torch.float32),
    )


def _feature_groups(pre: Preprocessor, schema: Schema) -> tuple[list[str], torch.Tensor]:
    """Which dense input columns (x_num, then the one-hot blocks) belong to which feature.
    Shape of the matrix: (n_num_features + sum(cat_cardinalities), n_features), 0/1."""
    features = schema.names()
    owner = pre.numeric + pre.binary + pre.indicators + [s[0] for s in pre.sentinels]
    for c, card in zip(pre.categorical, pre.cat_cardinalities, strict=True):
        owner += [c] * card
    groups = torch.zeros(len(owner), len(features), dtype=torch.float64)
    for col, name in enumerate(owner):
        groups[col, features.index(name)] = 1.0
    return features, groups
