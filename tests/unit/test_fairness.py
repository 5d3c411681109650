"""Protected attributes: read for the fairness report only, never inputs; the report's table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import compose_config
from training.data.columns import bands
from training.data.prepare import prepare
from training.data.schema import FeatureSpec, Kind
from training.errors import ConfigError
from training.governance.fairness import fairness_table


def test_bands_name_each_range_and_missing():
    got = bands(np.array([18, 25, 30, 35, 49.9, 50, 80, np.nan]), [25, 35, 50])
    assert got.tolist() == ["<25", "25-35", "25-35", "35-50", "35-50", ">=50", ">=50", "missing"]


def test_the_ratio_is_the_lowest_approval_rate_over_the_highest_among_large_groups():
    rng = np.random.default_rng(0)
    n = 4000
    group = np.where(np.arange(n) % 2 == 0, "a", "b").astype(object)
    group[:20] = "tiny"  # too few rows to count in the ratio
    y = rng.integers(0, 2, n)
    p = rng.random(n) * 0.5 + np.where(group == "b", 0.2, 0.0)  # b looks riskier: fewer approved
    table = fairness_table(y, p, {"g": group}, approve_rate=0.8, min_rows=30)
    rows = {r["group"]: r for r in table["attributes"]["g"]["groups"]}
    assert rows["tiny"]["rows"] == 20 and rows["a"]["rows"] + rows["b"]["rows"] == n - 20
    expected = rows["b"]["approval_rate"] / rows["a"]["approval_rate"]
    assert table["attributes"]["g"]["approval_ratio"] == pytest.approx(expected)
    assert expected < 0.8  # the 80 % rule fails here: the report must be able to say so
    assert np.mean(p <= table["cutoff_pd"]) == pytest.approx(0.8, abs=1e-3)
    assert 0.4 < rows["a"]["auc"] < 0.6  # labels are noise here


def _book(tmp_path, n=600):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "income": rng.lognormal(10, 1, n), "sector": rng.choice(["a", "b", "c"], n),
        "sex": rng.choice(["f", "m"], n), "age": rng.integers(18, 80, n),
        "bad": rng.integers(0, 2, n),
    })  # fmt: skip
    frame.to_csv(tmp_path / "book.csv", index=False)
    return frame


def _cfg(tmp_path, *overrides):
    cfg = compose_config(
        "data=sba", "data.name=book", "data.split.method=stratified", "data.split.period_column=null", f"data.root={tmp_path}", "data.path=book.csv",
        "data.target=bad", "debug=tiny", *overrides,
    )  # fmt: skip
    cfg.data.features = [
        FeatureSpec(name="income"),
        FeatureSpec(name="sector", kind=Kind.categorical),
    ]
    return cfg


def test_protected_columns_are_grouped_for_test_rows_and_never_inputs(tmp_path):
    _book(tmp_path)
    cfg = _cfg(tmp_path, "data.protected=[sex,age]", "data.protected_bands={}")
    cfg.data.protected_bands = {"age": [30, 60]}  # (a YAML data config sets it directly)
    data = prepare(cfg.data, benchmark_rows=cfg.benchmark.rows)
    groups = data.evaluation.groups
    assert set(groups) == {"sex", "age"}
    assert len(groups["sex"]) == len(data.tensors("test")) > 0
    assert set(groups["age"]) <= {"<30", "30-60", ">=60"}
    assert data.training.pre.numeric == ["income"] and data.training.pre.categorical == ["sector"]
    bare = _cfg(tmp_path, "data.protected=[]", "data.protected_bands={}")
    without = prepare(bare.data, benchmark_rows=bare.benchmark.rows)
    # what the model learns from is the same
    assert without.training.fingerprint == data.training.fingerprint
    assert without.evaluation.groups == {}


def test_config_refuses_bands_out_of_order(tmp_path):
    with pytest.raises(ConfigError, match=r"data.protected_bands.AGE.*ascending"):
        compose_config("data=taiwan", "data.protected_bands.AGE=[50,30]")
