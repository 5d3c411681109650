"""PD calibration: each map recovers a known miscalibration, ``auto`` chooses on held-out folds,
a calibrated network keeps its ranking, directions and reasons that add up, and the bundle
serves the calibrated PD."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException

from tests.conftest import compose_config
from tests.unit.test_explain import CONFIGS, SCHEMA, _random_network, rows  # noqa: F401
from training import metrics
from training.core.calibrate import fit_calibration
from training.data.preprocess import feature_bins
from training.errors import ConfigError
from training.models.build import predict_pd
from training.models.calibration import Calibrated, Calibration, calibrated, uncalibrated
from training.models.config import CalibrationConfig
from training.serving.bundle import BUNDLE, Scorer, make_decision, save_bundle
from training.serving.config import ExplainConfig, ScoreScale
from training.serving.explain import Explainer, reference_sample


def _book(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from known true logits ``z`` (about 15 % defaults)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.0, 1.5, n)
    return (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int), z


def _pd(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def test_temperature_undoes_an_overconfident_network():
    y, z = _book()
    p = _pd(2.0 * z)  # twice the true logit: PDs pushed to 0 and 1
    fitted = fit_calibration(CalibrationConfig(method="temperature"), y, p)
    assert fitted.method == "temperature" and fitted.scale == pytest.approx(0.5, abs=0.03)
    after = fitted.pd(p)
    assert metrics.log_loss(y, after) < metrics.log_loss(y, p) - 0.01
    assert metrics.ece(y, after) < 0.01 < metrics.ece(y, p)
    assert metrics.auc(y, after) == pytest.approx(metrics.auc(y, p), abs=1e-12)  # same order


def test_platt_undoes_a_shifted_and_scaled_network():
    y, z = _book(seed=1)
    p = _pd((z - 1.0) / 0.5)  # network logit = 2 z - 2: true z = 0.5 logit + 1
    fitted = fit_calibration(CalibrationConfig(method="platt"), y, p)
    assert fitted.scale == pytest.approx(0.5, abs=0.03) and fitted.shift == pytest.approx(
        1.0, abs=0.08
    )
    assert metrics.ece(y, fitted.pd(p)) < 0.01 < metrics.ece(y, p)


def test_auto_compares_candidates_on_held_out_folds():
    y, z = _book(seed=2)
    shifted = fit_calibration(CalibrationConfig(), y, _pd(z - 1.5))  # only platt can fix a shift
    assert shifted.method == "platt"
    assert all(m in shifted.chosen_by for m in ("none", "temperature", "platt"))
    assert "5-fold" in shifted.chosen_by
    # already calibrated: the one-parameter maps cost nothing, so none must not be far behind
    fine = fit_calibration(CalibrationConfig(), y, _pd(z))
    assert fine.method in {"none", "temperature", "platt"}
    assert metrics.log_loss(y, fine.pd(_pd(z))) <= metrics.log_loss(y, _pd(z)) + 1e-3


def test_isotonic_is_increasing_and_calibrates():
    y, z = _book(seed=3)
    p = _pd(z**3 / 4)  # a distortion no affine map undoes
    fitted = fit_calibration(CalibrationConfig(method="isotonic"), y, p)
    grid = np.linspace(1e-6, 1 - 1e-6, 2001)
    assert np.all(np.diff(fitted.pd(grid)) >= 0)
    assert metrics.ece(y, fitted.pd(p)) < 0.01 < metrics.ece(y, p)


def test_a_falling_platt_slope_leaves_the_model_uncalibrated():
    y, z = _book(seed=4)
    fitted = fit_calibration(CalibrationConfig(method="platt"), y, _pd(-z))
    assert fitted.method == "none" and "not positive" in fitted.chosen_by


def test_a_wrong_method_names_the_key():
    with pytest.raises((ConfigCompositionException, ConfigError)) as e:
        compose_config("calibration.method=sigmoid")
    assert "calibration.method" in str(e.value) + str(e.value.__cause__ or "")
    assert "sigmoid" in str(e.value) + str(e.value.__cause__ or "")
    with pytest.raises(ConfigError, match=r"calibration.folds=1: must be >= 2"):
        compose_config("calibration.folds=1")


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize(
    "calibration",
    [Calibration("platt", scale=0.6, shift=0.4), Calibration("temperature", scale=1.7)],
    ids=["platt", "temperature"],
)
def test_reasons_of_a_calibrated_network_add_up_to_its_calibrated_logit(rows, name, calibration):  # noqa: F811
    _, pre, t = rows
    network = _random_network(CONFIGS[name], pre, t)
    model = calibrated(network, calibration)
    reference = reference_sample(t.x_num, t.x_cat, 8)
    cfg = ExplainConfig(reference_rows=8, steps=16, max_steps=16)  # one rule: the same rows
    raw, raw_errors = Explainer(network, pre, SCHEMA, reference, cfg).contributions(
        t.x_num[:40], t.x_cat[:40]
    )
    explainer = Explainer(model, pre, SCHEMA, reference, cfg)
    scaled, errors = explainer.contributions(t.x_num[:40], t.x_cat[:40])
    np.testing.assert_allclose(scaled, calibration.scale * raw, rtol=1e-4, atol=1e-4)
    # completeness is what it was, in calibrated logits: an affine map adds no integration error
    np.testing.assert_allclose(errors, calibration.scale * raw_errors, rtol=1e-3, atol=1e-4)
    # the served PD is the calibration's increasing map of the network's: the same ranking
    before, after = predict_pd(network, t.x_num, t.x_cat), predict_pd(model, t.x_num, t.x_cat)
    inside = (before > 1e-4) & (before < 1 - 1e-4)  # random weights saturate some float32 PDs
    assert inside.sum() > 50
    np.testing.assert_allclose(after[inside], calibration.pd(before[inside]), rtol=1e-4)


def test_the_bundle_serves_the_calibrated_pd(rows, tmp_path):  # noqa: F811
    frame, pre, t = rows
    network = _random_network(CONFIGS["mlp"], pre, t)
    calibration = Calibration("platt", scale=0.7, shift=-0.3, chosen_by="test")
    model = calibrated(network, calibration)
    p_train = predict_pd(model, t.x_num, t.x_cat)
    decision = make_decision(ScoreScale(), ExplainConfig(reference_rows=4), t.x_num, t.x_cat,
                             p_train, feature_bins(frame, SCHEMA))  # fmt: skip
    save_bundle(tmp_path, model=model, members=[(CONFIGS["mlp"], None)], pre=pre, schema=SCHEMA,
                decision=decision)  # fmt: skip
    stored = json.loads((tmp_path / BUNDLE).read_text())["calibration"]
    assert stored["method"] == "platt" and stored["scale"] == 0.7
    scorer = Scorer(tmp_path)
    assert isinstance(scorer.model, Calibrated) and scorer.calibration == calibration
    np.testing.assert_allclose(scorer.predict(frame.head(200)), p_train[:200], atol=1e-6)
    # a bundle written before calibration existed scores uncalibrated
    del stored
    old = json.loads((tmp_path / BUNDLE).read_text())
    old.pop("calibration")
    (tmp_path / BUNDLE).write_text(json.dumps(old))
    assert uncalibrated(Scorer(tmp_path).model)[1] == Calibration()
    np.testing.assert_allclose(
        Scorer(tmp_path).predict(frame.head(50)),
        predict_pd(network, t.x_num[:50], t.x_cat[:50]),
        atol=1e-6,
    )
