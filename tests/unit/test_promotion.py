"""The promotion gate without MLflow: thresholds, the AUC interval rules, fingerprints, the
monotone check in raw space, the decision record, the history and the rollback target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from jobs.promote import options
from tests.conftest import compose_config
from training.data.schema import FeatureSpec, Kind, Schema
from training.errors import ConfigError
from training.governance.promotion import (
    PROMOTED,
    REFUSED,
    ROLLED_BACK,
    Holdout,
    PromotionConfig,
    Version,
    auc_difference,
    champion_periods,
    config_from_yaml,
    describe,
    fingerprint_check,
    fingerprint_message,
    format_checks,
    format_history,
    gate,
    measure,
    monotone_violations,
    promotion_decision,
    raise_step,
    rollback_decision,
    rollback_target,
)
from training.tracking.registry import ModelRef, ScoringModel

GOOD = {
    "auc": 0.75,
    "ks": 0.40,
    "brier": 0.060,
    "ece": 0.01,
    "psi_score": 0.02,
    "lift_auc": 0.01,
    "monotone_violations": 0,
    "fairness_ratio": None,
}
FP = "f35d8cd78ffd4146"


def _failed(checks) -> set[str]:
    return {c.name for c in checks if c.passed is False}


def _diff(low: float, high: float) -> dict:
    return {"delta": (low + high) / 2, "low": low, "high": high, "confidence": 0.95}


# ---------------------------------------------------------------------------------------------
# Thresholds and checks


@pytest.mark.parametrize(
    "key, value",
    [
        ("auc_margin", -0.1),
        ("confidence", 1.0),
        ("bootstrap", 0),
        ("min_fairness_ratio", 1.5),
        ("auc_rule", "lenient"),
        ("max_monotone_violations", -1),
        ("min_auc", 2.0),
    ],
)
def test_a_bad_threshold_is_named(key, value):
    with pytest.raises(ConfigError, match=f"promotion.{key}"):
        PromotionConfig(**{key: value})


def test_first_champion_needs_only_the_floors():
    checks = gate(GOOD, None, None, PromotionConfig())
    relative = [c for c in checks if c.name.endswith("_vs_champion")]
    assert [c.passed for c in relative] == [None] * 3 and "no champion yet" in relative[0].rule
    assert _failed(checks) == set()
    bad = GOOD | {"auc": 0.55, "ece": 0.08, "psi_score": 0.3, "monotone_violations": 2}
    assert _failed(gate(bad, None, None, PromotionConfig())) == {
        "auc",
        "ece",
        "psi_score",
        "monotone_violations",
    }


def test_missing_measures_are_not_applicable_not_passed():
    cand = GOOD | {"psi_score": None, "lift_auc": None, "fairness_ratio": None}
    by_name = {c.name: c for c in gate(cand, None, None, PromotionConfig())}
    for name in ("psi_score", "lift_auc", "fairness_ratio"):
        assert by_name[name].passed is None and by_name[name].rule.startswith("n/a")


def test_floors_at_their_limits_pass_and_just_beyond_fail():
    cfg = PromotionConfig()
    at = GOOD | {"auc": 0.6, "ece": 0.05, "lift_auc": -0.02, "fairness_ratio": 0.8}
    assert _failed(gate(at, None, None, cfg)) == set()
    beyond = GOOD | {"lift_auc": -0.021, "fairness_ratio": 0.79}
    assert _failed(gate(beyond, None, None, cfg)) == {"lift_auc", "fairness_ratio"}


@pytest.mark.parametrize(
    "rule, delta, low, high, passed",
    [
        ("estimate", -0.004, -0.04, 0.03, True),  # the difference itself, within the margin
        ("estimate", -0.006, -0.04, 0.03, False),
        ("not_worse", -0.02, -0.04, -0.004, True),  # may be worse, not shown worse by more
        ("not_worse", -0.02, -0.04, -0.006, False),  # shown worse by more than the margin
        ("non_inferior", 0.01, -0.004, 0.03, True),  # shown not worse by more than the margin
        ("non_inferior", 0.01, -0.006, 0.03, False),
    ],  # could be worse by more than the margin
)
def test_auc_against_the_champion_reads_the_difference_by_rule(rule, delta, low, high, passed):
    diff = {"delta": delta, "low": low, "high": high, "confidence": 0.95}
    check = gate(GOOD, GOOD, diff, PromotionConfig(auc_rule=rule))[0]
    assert check.name == "auc_vs_champion" and check.passed is passed
    assert rule in check.rule and f"[{low:+.4f}, {high:+.4f}]" in check.rule


def test_ks_and_brier_may_lose_only_their_margins():
    champ = GOOD
    cfg = PromotionConfig(ks_margin=0.02, brier_margin=0.002)
    ok = GOOD | {"ks": 0.381, "brier": 0.0619}
    assert _failed(gate(ok, champ, _diff(0, 0), cfg)) == set()
    worse = GOOD | {"ks": 0.37, "brier": 0.063}
    assert _failed(gate(worse, champ, _diff(0, 0), cfg)) == {"ks_vs_champion", "brier_vs_champion"}


def test_fingerprints_must_all_agree_and_the_message_names_them():
    cand, champ = Version("5", "r5", FP), Version("2", "r2", FP)
    assert fingerprint_check(cand, champ, FP).passed
    assert fingerprint_check(cand, None, FP).passed  # no champion: only the recomputed one
    other = Version("2", "r2", "0123456789abcdef")
    assert fingerprint_check(cand, other, None).passed is False
    message = fingerprint_message(cand, other, None)
    assert FP in message and "0123456789abcdef" in message and "version 2" in message
    changed = fingerprint_check(cand, champ, "aaaaaaaaaaaaaaaa")
    assert changed.passed is False and "aaaaaaaaaaaaaaaa" in changed.rule
    assert "data changed" in fingerprint_message(cand, champ, "aaaaaaaaaaaaaaaa")


# ---------------------------------------------------------------------------------------------
# The bootstrap and the measures


def test_auc_difference_is_paired_seeded_and_centred():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    good = np.clip(0.5 * y + rng.uniform(0, 0.5, 2000), 0, 1)
    noise = rng.uniform(0, 1, 2000)
    cfg = PromotionConfig(bootstrap=100)
    same = auc_difference(y, good, good, cfg)
    assert same["delta"] == same["low"] == same["high"] == 0.0  # paired: no spread at all
    better = auc_difference(y, good, noise, cfg)
    assert 0 < better["low"] < better["delta"] < better["high"] and better["resamples"] == 100
    assert auc_difference(y, good, noise, cfg) == better  # seeded
    worse = auc_difference(y, noise, good, cfg)
    assert worse["high"] < 0 and worse["delta"] == pytest.approx(-better["delta"])
    capped = auc_difference(y, good, noise, PromotionConfig(bootstrap=20, bootstrap_rows=500))
    assert capped["rows"] == 500


def test_raise_step_is_half_the_iqr_else_half_the_std_else_one():
    assert raise_step(np.arange(101.0)) == pytest.approx(25.0)
    mostly_zero = np.r_[np.zeros(90), np.full(10, 10.0)]
    assert raise_step(mostly_zero) == pytest.approx(0.5 * np.std(mostly_zero))
    assert raise_step(np.zeros(5)) == 1.0 and raise_step(np.empty(0)) == 1.0


SCHEMA = Schema(
    target="y",
    features=[
        FeatureSpec(name="debt", monotone=1, sentinels={-9: "no record"}),
        FeatureSpec(name="income", monotone=-1),
        FeatureSpec(name="lawsuit", kind=Kind.binary, monotone=1),
        FeatureSpec(name="free", monotone=0),
        FeatureSpec(name="sector", kind=Kind.categorical),
    ],
)
INPUTS = {
    "debt": "double",
    "income": "double",
    "lawsuit": "double",
    "free": "double",
    "sector": "string",
}


def _model(weights: dict[str, float], reference: dict | None = None) -> ScoringModel:
    """A stand-in served model: PD = sigmoid(sum of weight * value), missing and -9 read as 0."""

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        z = sum(w * frame[c].where(frame[c] != -9).fillna(0.0) for c, w in weights.items())
        p = 1 / (1 + np.exp(-(z - 1.0)))
        return pd.DataFrame({"pd": p, "score": 600 - 50 * np.log(p / (1 - p))})

    ref = ModelRef(uri="models:/m/1", pinned="models:/m/1")
    return ScoringModel(
        predict=predict, inputs=INPUTS, outputs=["pd", "score"], ref=ref, score_reference=reference
    )


def _rows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "debt": rng.gamma(2.0, 1.0, n),
            "income": rng.normal(0, 1, n),
            "lawsuit": rng.integers(0, 2, n).astype(float),
            "free": rng.normal(0, 1, n),
            "sector": rng.choice(["a", "b"], n),
        }
    )
    frame.loc[:9, "debt"] = np.nan
    frame.loc[10:19, "debt"] = -9.0
    return frame


def test_monotone_check_counts_rows_moved_the_wrong_way_in_raw_space():
    rows = _rows()
    right = _model({"debt": 0.5, "income": -0.4, "lawsuit": 1.0, "free": 3.0})
    base = right.predict(rows)["pd"].to_numpy()
    assert monotone_violations(right, rows, SCHEMA, base) == {"debt": 0, "income": 0, "lawsuit": 0}
    wrong = _model({"debt": -0.5, "income": 0.4, "lawsuit": -1.0})
    moved = monotone_violations(wrong, rows, SCHEMA, wrong.predict(rows)["pd"].to_numpy())
    # debt: every row with a value (not missing, not the -9 code); lawsuit: rows at 0 only
    assert moved == {"debt": 380, "income": 400, "lawsuit": int((rows["lawsuit"] == 0).sum())}


def test_measure_reads_every_metric_of_one_model():
    rows = _rows(600)
    model = _model(
        {"debt": 0.8, "income": -0.6}, {"edges": [580.0, 600.0], "shares": [0.3, 0.4, 0.3]}
    )
    p = model.predict(rows)["pd"].to_numpy()
    y = (np.random.default_rng(1).uniform(size=600) < p).astype(np.int64)
    groups = {"gender": np.where(rows["free"] > 0, "f", "m")}
    h = Holdout(
        frame=rows.assign(y=y), y=y, schema=SCHEMA, fingerprint=FP, groups=groups, benchmark_auc=0.6
    )
    m, p_out = measure(model, h, PromotionConfig())
    np.testing.assert_allclose(p_out, p)
    assert m["auc"] > 0.6 and m["lift_auc"] == pytest.approx(m["auc"] - 0.6)
    assert m["monotone_violations"] == 0 and set(m["monotone"]) == {"debt", "income", "lawsuit"}
    assert m["psi_score"] >= 0 and 0.5 < m["fairness_ratio"] <= 1
    bare = Holdout(frame=rows, y=y, schema=SCHEMA, fingerprint=FP)
    m, _ = measure(_model({"debt": 0.8}), bare, PromotionConfig())
    assert m["psi_score"] is None and m["lift_auc"] is None and m["fairness_ratio"] is None


def test_a_training_config_yaml_comes_back_typed():
    cfg = compose_config("debug=tiny", "model=tabm", "data.n_rows=3000")
    again = config_from_yaml(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    assert again == cfg and type(again.model).__name__ == "TabMConfig"
    with pytest.raises(ConfigError, match="schema"):
        config_from_yaml(OmegaConf.to_yaml(OmegaConf.structured(cfg)) + "retired_key: 1\n")


# ---------------------------------------------------------------------------------------------
# Decisions, history, rollback


def _decision(failing: bool = False):
    cand, champ = Version("3", "r3", FP), Version("1", "r1", FP)
    checks = gate(
        GOOD | {"ece": 0.2 if failing else 0.01}, GOOD, _diff(-0.01, 0.02), PromotionConfig()
    )
    metrics = {"candidate": GOOD, "champion": GOOD}
    return promotion_decision(
        "credit-risk-x",
        cand,
        champ,
        checks,
        PromotionConfig(),
        metrics_of=metrics,
        diff=_diff(-0.01, 0.02),
    )


def test_a_decision_records_both_models_thresholds_checks_and_who():
    passed, refused = _decision(), _decision(failing=True)
    assert passed.result == PROMOTED and passed.champion_after == "3"
    assert refused.result == REFUSED and refused.champion_after == "1"
    assert refused.reason == "1 of 8 checks failed: ece"  # fairness, reasons: not applicable
    record = refused.record()
    assert record["candidate"]["metrics"] == GOOD and record["previous_champion"]["version"] == "1"
    assert record["thresholds"]["max_ece"] == 0.05 and len(record["checks"]) == 10
    assert {"time", "user", "host", "git_commit"} <= set(record) and record["result"] == REFUSED
    tags = refused.run_tags()
    assert tags["candidate_version"] == "3" and tags["previous_champion"] == "1"
    assert tags["champion"] == "1" and tags["kind"] == "promote"
    assert set(refused.version_tags()) == {"3"}
    assert passed.version_tags()["1"]["promotion_result"] == "replaced"
    assert "FAIL" in format_checks(refused.checks) and "REFUSED" in describe(refused)
    assert "would become @champion" in describe(passed, dry_run=True)


def test_a_fingerprint_refusal_gives_the_fingerprints_as_its_reason():
    cand, champ = Version("4", "r4", "aaaaaaaaaaaaaaaa"), Version("1", "r1", FP)
    why = fingerprint_message(cand, champ, None)
    d = promotion_decision(
        "m", cand, champ, [fingerprint_check(cand, champ, None)], PromotionConfig(), why_data=why
    )
    assert d.result == REFUSED and FP in d.reason and "aaaaaaaaaaaaaaaa" in d.reason


def _rec(t: str, result: str, version: str, before: str = "", reason: str = "") -> dict:
    kind = "rollback" if result == ROLLED_BACK else "promote"
    champion = before if result == REFUSED else version
    return {
        "time": t,
        "kind": kind,
        "result": result,
        "candidate_version": version,
        "previous_champion": before,
        "champion": champion,
        "user": "ana",
        "host": "h",
        "reason": reason,
    }


HISTORY = [
    _rec("t1", PROMOTED, "1"),
    _rec("t2", REFUSED, "2", "1"),
    _rec("t3", PROMOTED, "3", "1"),
    _rec("t4", PROMOTED, "5", "3"),
]


def test_rollback_undoes_promotions_one_at_a_time():
    assert rollback_target(HISTORY, "5") == "3"
    once = [*HISTORY, _rec("t5", ROLLED_BACK, "3", "5", "bad PSI")]
    assert rollback_target(once, "3") == "1"
    twice = [*once, _rec("t6", ROLLED_BACK, "1", "3", "still bad")]
    with pytest.raises(ConfigError, match="first @champion"):
        rollback_target(twice, "1")
    with pytest.raises(ConfigError, match="outside jobs.promote"):
        rollback_target(HISTORY, "2")
    with pytest.raises(ConfigError, match="no version holds"):
        rollback_target(HISTORY, None)


def test_history_shows_who_held_champion_when():
    records = [*HISTORY, _rec("t5", ROLLED_BACK, "3", "5", "bad PSI")]
    periods = champion_periods(records)
    assert [(p["version"], p["since"], p["until"]) for p in periods] == [
        ("1", "t1", "t3"),
        ("3", "t3", "t4"),
        ("5", "t4", "t5"),
        ("3", "t5", ""),
    ]
    assert periods[-1]["how"] == "rolled back: bad PSI"
    text = format_history("credit-risk-x", records, "3")
    assert "(now: version 3)" in text and "decisions (5, oldest first)" in text
    lines = [line for line in text.splitlines() if line.startswith("t")]
    assert [line.split()[0] for line in lines][-5:] == ["t1", "t2", "t3", "t4", "t5"]
    assert "never held" in format_history("m", [], None)


def test_a_rollback_decision_tags_both_versions_with_the_reason():
    d = rollback_decision("m", Version("3"), Version("5"), "bad PSI")
    assert d.result == ROLLED_BACK and d.champion_after == "3"
    tags = d.version_tags()
    assert (
        tags["3"]["promotion_result"] == "restored" and tags["5"]["promotion_result"] == ROLLED_BACK
    )
    assert tags["5"]["promotion_reason"] == "bad PSI" and "back to version 3" in describe(d)


def test_flags_become_options():
    assert options(["--history", "credit-risk-x"]) == ["history=true", "name=credit-risk-x"]
    assert options(["name=m", "--dry-run", "--rollback", "reason=x"]) == [
        "name=m",
        "dry_run=true",
        "rollback=true",
        "reason=x",
    ]
    assert options(["--history", "name=m"]) == ["history=true", "name=m"]


@pytest.mark.parametrize(
    ("error", "tolerance", "enabled", "passed", "rule"),
    [
        (0.004, 0.02, True, True, "max error <= 0.02 logits (the model's explain.tolerance)"),
        (0.19, 0.02, True, False, "max error <= 0.02 logits (the model's explain.tolerance)"),
        (None, None, True, None, "n/a: the model gives no reasons"),
        (0.19, 0.02, False, None, "n/a: promotion.check_reasons=false"),
    ],
)
def test_the_reasons_must_add_up_within_the_models_own_tolerance(
    error, tolerance, enabled, passed, rule
):
    cand = GOOD | {"reasons_max_error": error, "reasons_tolerance": tolerance}
    checks = gate(cand, None, None, PromotionConfig(check_reasons=enabled))
    check = next(c for c in checks if c.name == "reasons_completeness")
    assert (check.passed, check.rule, check.candidate) == (passed, rule, error)
