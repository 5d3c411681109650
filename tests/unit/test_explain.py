"""Decisions a lender can explain: monotone by construction, reasons that add up, score points.

The networks here are untrained, with weights drawn at random, on synthetic SME rows: the
guarantees must hold for any weights, not just for the ones a good run happens to learn.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import compose_config
from training.data import synthetic
from training.data.preprocess import Preprocessor
from training.data.schema import Kind
from training.data.tensors import Tensors
from training.errors import ConfigError
from training.governance.checks import monotonicity
from training.models.build import build_model
from training.models.calibration import Calibrated, Calibration
from training.models.config import MLPConfig, ModelConfig, TabMConfig
from training.models.dense import mean_pd_logit, one_hot
from training.models.embeddings import fit_bins
from training.models.ensemble import Ensemble
from training.models.monotone import Monotone
from training.runtime.dist import DistContext
from training.serving.config import ExplainConfig, ScoreScale
from training.serving.explain import Explainer, reference_sample
from training.serving.scorecard import score_bins

SCHEMA = synthetic.SCHEMA
CONFIGS = {
    "mlp": MLPConfig(d_block=32, n_blocks=2),
    "mlp-periodic": MLPConfig(d_block=32, n_blocks=2, num_embeddings="periodic"),
    "tabm-piecewise": TabMConfig(k=4, d_block=32, n_blocks=2, num_embeddings="piecewise", n_bins=8),
}


@pytest.fixture(scope="module")
def rows():
    frame = synthetic.generate(3000, seed=3).frame
    pre = Preprocessor.fit(frame, SCHEMA)
    x_num, x_cat = (torch.from_numpy(x) for x in pre.transform(frame))
    return frame, pre, Tensors(x_num, x_cat, torch.zeros(len(frame)))


def _random_network(cfg: ModelConfig, pre: Preprocessor, t: Tensors, seed: int = 0, noise=0.5):
    torch.manual_seed(seed)
    model = build_model(
        cfg, n_num=pre.n_num_features, cat_cardinalities=pre.cat_cardinalities,
        bins=fit_bins(cfg, t.x_num), directions=pre.directions(SCHEMA),
    )  # fmt: skip
    with torch.no_grad():  # far from any trained state: every sign pattern is possible
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    return model.eval()


@pytest.mark.parametrize("name", CONFIGS)
def test_one_hot_forward_is_the_forward(rows, name):
    _, pre, t = rows
    model = _random_network(CONFIGS[name], pre, t)
    x_onehot = one_hot(t.x_cat[:50], pre.cat_cardinalities, torch.float32)
    torch.testing.assert_close(
        model.forward_dense(t.x_num[:50], x_onehot), model(t.x_num[:50], t.x_cat[:50])
    )
    if name.startswith("tabm"):  # our one-hot path through TabM's modules is TabM's own forward
        base, free = model.base, model.free
        own = base.tabm(t.x_num[:50, free], t.x_cat[:50]).squeeze(-1)
        torch.testing.assert_close(base(t.x_num[:50, free], t.x_cat[:50]), own)


@pytest.mark.parametrize("name", CONFIGS)
def test_declared_directions_hold_for_any_weights(rows, name):
    _, pre, t = rows
    model = _random_network(CONFIGS[name], pre, t)
    assert isinstance(model, Monotone)
    report = monotonicity(model, t, pre, SCHEMA, DistContext())
    declared = {f.name for f in SCHEMA.features if f.monotone}
    assert set(report) == declared
    assert all(r["rows"] > 0 and r["violations"] == 0 for r in report.values()), report
    ensemble = Ensemble([model, _random_network(CONFIGS["mlp"], pre, t, seed=1)])
    assert all(
        r["violations"] == 0 for r in monotonicity(ensemble, t, pre, SCHEMA, DistContext()).values()
    )


def test_the_check_finds_violations_in_an_unconstrained_network(rows):
    _, pre, t = rows
    model = _random_network(MLPConfig(d_block=32, n_blocks=2, monotone=False), pre, t)
    assert not isinstance(model, Monotone)
    report = monotonicity(model, t, pre, SCHEMA, DistContext())
    wrong = [name for name, r in report.items() if r["violations"] > 0]
    assert len(wrong) >= len(report) // 2, report  # a random network breaks most directions
    assert all(0 < report[n]["share"] < 1 for n in wrong)


def _explainer(model, pre, t, **cfg) -> Explainer:
    cfg = ExplainConfig(**cfg)
    return Explainer(
        model, pre, SCHEMA, reference_sample(t.x_num, t.x_cat, cfg.reference_rows), cfg
    )


@pytest.mark.parametrize("name", CONFIGS)
def test_contributions_are_captums_integrated_gradients(rows, name):
    from captum.attr import IntegratedGradients

    _, pre, t = rows
    explainer = _explainer(
        _random_network(CONFIGS[name], pre, t), pre, t, reference_rows=4, steps=8, max_steps=8,
        method="integrated_gradients",
    )  # fmt: skip
    ours, _ = explainer.contributions(t.x_num[:10], t.x_cat[:10])
    x = (t.x_num[:10], one_hot(t.x_cat[:10], pre.cat_cardinalities, torch.float32))
    r = len(explainer.ref[0])
    attr = IntegratedGradients(explainer._logit).attribute(
        tuple(v.repeat_interleave(r, 0) for v in x),
        tuple(b.repeat(10, 1) for b in explainer.ref),
        n_steps=8,
        method="gausslegendre",
    )
    theirs = torch.cat(attr, 1).view(10, r, -1).mean(1).double() @ explainer.groups
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-6)


def test_deeplift_is_captums_deeplift_shap_where_captum_applies(rows):
    """On a plain MLP (its ReLUs are modules, the only nonlinearity captum's hooks see) our
    rescale rule through intercepted operations gives captum's DeepLiftShap."""
    from captum.attr import DeepLiftShap

    _, pre, t = rows
    model = _random_network(MLPConfig(d_block=32, n_blocks=2, monotone=False), pre, t)
    explainer = _explainer(model, pre, t, reference_rows=4)
    ours, errors = explainer.contributions(t.x_num[:10], t.x_cat[:10])

    class Logit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x_num, x_onehot):
            return self.model.forward_dense(x_num, x_onehot)

    x = (t.x_num[:10], one_hot(t.x_cat[:10], pre.cat_cardinalities, torch.float32))
    attr = DeepLiftShap(Logit()).attribute(x, explainer.ref)
    theirs = torch.cat(attr, 1).detach().double() @ explainer.groups
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)
    assert np.abs(errors).max() < 1e-4


@pytest.mark.parametrize("name", [*CONFIGS, "mlp-piecewise", "ensemble", "isotonic"])
def test_deeplift_adds_up_exactly_for_any_weights(rows, name):
    """Wild weights (PD logits of hundreds, kinks everywhere between a row and its references),
    every architecture, and a calibration with kinks: the contributions add up to the logit over
    the reference, with no integrated-gradients fallback (max_steps = steps)."""
    _, pre, t = rows
    cfg = MLPConfig(d_block=32, n_blocks=2, num_embeddings="piecewise", n_bins=8)
    if name == "isotonic":
        steps = Calibration("isotonic", knots_x=[-50.0, -5.0, 0.0, 30.0], knots_y=[-6, -3, -1, 4])
        model = Calibrated(_random_network(CONFIGS["mlp"], pre, t), steps)
    elif name == "ensemble":
        model = Ensemble(
            [_random_network(c, pre, t, seed=i) for i, c in enumerate(CONFIGS.values())]
        )
    else:
        model = _random_network(CONFIGS.get(name, cfg), pre, t)
    explainer = _explainer(model, pre, t, steps=2, max_steps=2)
    contributions, errors = explainer.contributions(t.x_num[:300], t.x_cat[:300])
    with torch.no_grad():
        logit = explainer._logit(
            t.x_num[:300], one_hot(t.x_cat[:300], pre.cat_cardinalities, torch.float32)
        )
    assert np.abs(logit.numpy()).max() > (3 if name == "isotonic" else 20)  # wild indeed
    np.testing.assert_allclose(
        contributions.sum(1), logit.numpy() - explainer.ref_logit.item(), atol=1e-3
    )
    assert np.abs(errors).max() < 1e-3


@pytest.mark.parametrize("method", ["deeplift", "integrated_gradients"])
@pytest.mark.parametrize("name", CONFIGS)
def test_contributions_add_up_to_the_logit_over_the_reference(rows, name, method):
    _, pre, t = rows
    # PD logits within about +-10, as a trained network's (wild weights give logits of hundreds,
    # and the quadrature's error grows with them)
    model = _random_network(CONFIGS[name], pre, t, noise=0.05)
    explainer = _explainer(model, pre, t, method=method)
    contributions, errors = explainer.contributions(t.x_num[:200], t.x_cat[:200])
    with torch.no_grad():
        logit = mean_pd_logit(model(t.x_num[:200], t.x_cat[:200]).double())
    ref_logit = explainer._logit(*explainer.ref).mean().item()
    np.testing.assert_allclose(contributions.sum(1) - errors, logit.numpy() - ref_logit, atol=1e-4)
    assert np.abs(errors).max() <= explainer.cfg.tolerance
    assert contributions.shape == (200, len(SCHEMA.features))


def test_reasons_name_raising_features_and_say_what_a_missing_value_means():
    frame = synthetic.generate(500, seed=4).frame
    frame.loc[::10, "patents"] = -7.0  # coded as a data config's sentinels declare
    features = [
        replace(f, sentinels={-7: "no IP record"}) if f.name == "patents"
        else replace(f, missing=[-1]) if f.name == "vat_paid" else f
        for f in SCHEMA.features
    ]  # fmt: skip
    schema = replace(SCHEMA, features=features)
    pre = Preprocessor.fit(frame, schema)
    x_num, x_cat = (torch.from_numpy(x) for x in pre.transform(frame))
    model = build_model(
        CONFIGS["mlp"], n_num=pre.n_num_features, cat_cardinalities=pre.cat_cardinalities
    )
    cfg = ExplainConfig()
    explainer = Explainer(model, pre, schema, reference_sample(x_num, x_cat, 4), cfg)
    names = explainer.features
    rows4 = frame.iloc[10:14].copy()
    rows4.loc[rows4.index[0], "patents"] = -7.0
    rows4.loc[rows4.index[1], "vat_paid"] = -1.0
    rows4.loc[rows4.index[2], "industry"] = "quantum"
    rows4.loc[rows4.index[3], "trademarks"] = np.nan
    c = np.full((4, len(names)), -0.1)  # nothing raises risk ...
    for row, name in enumerate(["patents", "vat_paid", "industry", "trademarks"]):
        c[row, names.index(name)] = 0.5  # ... but one feature per row
    c[0, names.index("revenue")] = 0.2
    out = pd.DataFrame(explainer.reasons(rows4, c, k=2))
    assert out["reason_1"].tolist() == ["patents", "vat_paid", "industry", "trademarks"]
    assert out["reason_1_value"].tolist() == [
        "no IP record", "missing", "quantum (not seen in training)", "missing",
    ]  # fmt: skip
    assert out.iloc[0]["reason_2"] == "revenue" and out.iloc[0]["reason_2_contribution"] == 0.2
    assert out.iloc[1]["reason_2"] == "" and math.isnan(out.iloc[1]["reason_2_contribution"])
    assert (
        out.iloc[0]["reason_1_description"] == SCHEMA.features[names.index("patents")].description
    )


def test_score_points_follow_the_scale():
    scale = ScoreScale(base_points=600, base_odds=50, pdo=20)
    pd_at = lambda odds: 1 / (1 + odds)  # noqa: E731 - good:bad odds -> PD
    got = scale.score(np.array([pd_at(50), pd_at(100), pd_at(25)]))
    np.testing.assert_allclose(got, [600, 620, 580])
    assert np.isfinite(scale.score(np.array([0.0, 1.0]))).all()
    with pytest.raises(ValueError, match="score.pdo"):
        ScoreScale(pdo=0)
    with pytest.raises(ValueError, match="explain.method.*deeplift"):
        ExplainConfig(method="shap")
    bins = score_bins(np.arange(1000.0))
    assert len(bins["shares"]) == len(bins["edges"]) - 1 == 10
    assert sum(bins["shares"]) == pytest.approx(1.0)


def test_config_refuses_a_protected_input_and_a_monotone_category():
    with pytest.raises(ConfigError, match=r"data.protected\[0\].*never a model input"):
        compose_config("data=taiwan", "data.protected=[LIMIT_BAL]")
    with pytest.raises(ConfigError, match=r"data.features\[1\].monotone.*categories have no order"):
        compose_config("data=taiwan", "data.features.1.monotone=1")


@pytest.mark.parametrize("kinds", ["numeric only", "categorical only"])
def test_reasons_for_a_data_set_with_one_kind_of_column(kinds):
    """Polish has no categorical column: the stored reference rows have empty x_cat rows."""
    frame = synthetic.generate(400, seed=6).frame
    keep = Kind.categorical if kinds == "categorical only" else Kind.numeric
    schema = replace(SCHEMA, features=[f for f in SCHEMA.features if f.kind == keep])
    pre = Preprocessor.fit(frame, schema)
    x_num, x_cat = (torch.from_numpy(x) for x in pre.transform(frame))
    model = build_model(
        CONFIGS["mlp"], n_num=pre.n_num_features, cat_cardinalities=pre.cat_cardinalities
    )
    reference = json.loads(json.dumps(reference_sample(x_num, x_cat, 8)))  # as the bundle stores it
    explainer = Explainer(model, pre, schema, reference, ExplainConfig(reference_rows=8))
    contributions, errors = explainer.contributions(x_num[:20], x_cat[:20])
    assert contributions.shape == (20, len(schema.features))
    assert np.abs(errors).max() <= explainer.cfg.tolerance
