"""Tests of the synthetic SME borrower generator: determinism, sharding, schema, realism, true PD."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.data import synthetic as syn
from training.data.schema import Kind

BLOCK = syn.BLOCK


@pytest.fixture(scope="module")
def data() -> syn.SyntheticData:
    return syn.generate(200_000, seed=0)


def _rows(d: syn.SyntheticData, lo: int, hi: int) -> pd.DataFrame:
    return d.frame.iloc[lo:hi].reset_index(drop=True)


def test_same_seed_same_data_other_seed_differs() -> None:
    a, b, c = syn.generate(5_000, 11), syn.generate(5_000, 11), syn.generate(5_000, 12)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    np.testing.assert_array_equal(a.pd_true, b.pd_true)
    assert not a.frame["revenue"].equals(c.frame["revenue"])
    assert not np.array_equal(a.pd_true, c.pd_true)


def test_start_returns_the_slice_of_a_longer_stream() -> None:
    full = syn.generate(100, 7)
    shard = syn.generate(60, 7, start=40)
    pd.testing.assert_frame_equal(shard.frame, _rows(full, 40, 100))
    np.testing.assert_array_equal(shard.pd_true, full.pd_true[40:])


@pytest.mark.parametrize(("start", "n"), [(BLOCK - 50, 100), (BLOCK - 10, BLOCK + 20)])
def test_shards_across_block_boundaries(start: int, n: int) -> None:
    full = syn.generate(start + n + 5, 3)
    shard = syn.generate(n, 3, start=start)
    pd.testing.assert_frame_equal(shard.frame, _rows(full, start, start + n))
    np.testing.assert_array_equal(shard.pd_true, full.pd_true[start : start + n])


def test_shards_tile_the_stream() -> None:
    cuts = [0, 1_000, BLOCK + 3, BLOCK + 4, 2 * BLOCK + 100]
    parts = [syn.generate(b - a, 5, start=a) for a, b in zip(cuts, cuts[1:], strict=False)]
    whole = syn.generate(cuts[-1], 5)
    glued = pd.concat([p.frame for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(glued, whole.frame)
    np.testing.assert_array_equal(np.concatenate([p.pd_true for p in parts]), whole.pd_true)


def test_blocks_and_seeds_are_independent_streams() -> None:
    """No block repeats another, and seed s is not the stream of seed s-1 shifted by a block."""
    revenue = syn.generate(4 * BLOCK, 0).frame["revenue"].to_numpy().reshape(4, BLOCK)
    for i in range(4):
        for j in range(i + 1, 4):
            assert (revenue[i] == revenue[j]).mean() < 0.05, (i, j)
    for s in (1, 2):
        shifted = syn.generate(BLOCK, 0, start=s * BLOCK).frame["revenue"].to_numpy()
        other = syn.generate(BLOCK, s).frame["revenue"].to_numpy()
        assert (shifted == other).mean() < 0.05


def test_empty_request_and_bad_arguments() -> None:
    empty = syn.generate(0, 1, start=BLOCK + 7)
    assert empty.frame.shape == (0, len(syn.SCHEMA.features) + 1)
    assert empty.pd_true.shape == (0,)
    for kwargs in ({"n_rows": -1}, {"n_rows": 5, "start": -1}, {"n_rows": 5, "seed": -2}):
        with pytest.raises(ValueError, match="generate"):
            syn.generate(**kwargs)


def test_frame_matches_schema(data: syn.SyntheticData) -> None:
    f = data.frame
    assert syn.SCHEMA.target == syn.TARGET
    assert list(f.columns) == [*syn.SCHEMA.names(), syn.TARGET]
    assert 20 <= len(syn.SCHEMA.features) <= 28
    assert all(spec.description and spec.monotone in (-1, 0, 1) for spec in syn.SCHEMA.features)
    for spec in syn.SCHEMA.features:
        col = f[spec.name]
        if spec.kind == Kind.categorical:
            assert col.dtype == object, spec.name
            assert {type(v) for v in col.dropna().unique()} == {str}, spec.name
            assert col.dropna().nunique() >= 3, spec.name
        else:
            assert col.dtype == np.float64, spec.name
        if spec.kind == Kind.binary:
            assert set(col.unique()) == {0.0, 1.0}, spec.name
    assert f[syn.TARGET].dtype == np.int64
    assert set(f[syn.TARGET].unique()) == {0, 1}
    assert data.pd_true.dtype == np.float64 and data.pd_true.shape == (len(f),)
    assert np.all((data.pd_true > 0) & (data.pd_true < 1))
    assert f.index.equals(pd.RangeIndex(len(f)))


def test_realistic_rates_missingness_and_tails(data: syn.SyntheticData) -> None:
    f = data.frame
    assert 0.05 <= f[syn.TARGET].mean() <= 0.12
    assert abs(f[syn.TARGET].mean() - data.pd_true.mean()) < 0.005  # labels drawn from pd_true
    no_ip = f["patents"].isna()
    assert 0.35 <= no_ip.mean() <= 0.6
    for col in ("trademarks", "software_copyrights"):  # one "no IP record" pattern
        assert f[col].isna().equals(no_ip)
    no_tax = f["tax_history_months"].isna()
    assert 0.02 <= no_tax.mean() <= 0.15
    assert f["tax_credit_grade"].isna().equals(no_tax)
    # Missing tax history belongs to young firms, and carries risk.
    assert f.loc[no_tax, "firm_age_years"].median() < 0.7 * f["firm_age_years"].median()
    assert f.loc[no_tax, syn.TARGET].mean() > f[syn.TARGET].mean()
    assert 0.05 <= f["credit_utilisation"].isna().mean() <= 0.3
    rev = f["revenue"]
    assert rev.quantile(0.99) / rev.median() > 10
    assert (f["revenue_growth"] < 0).mean() > 0.1
    assert (f["lawsuits_as_defendant"] == 0).mean() > 0.7
    assert (f["court_judgments_amount"] == 0).mean() > 0.7
    assert 0.0 < f["dishonest_debtor_flag"].mean() < 0.03


def _best_single_auc(f: pd.DataFrame, name: str) -> float:
    y = f[syn.TARGET].to_numpy()
    col = f[name]
    if col.dtype == object:  # in-sample default rate per category: as good as one column gets
        scores = [f.groupby(col.fillna("<NA>"))[syn.TARGET].transform("mean").to_numpy()]
    else:  # missing placed at either end
        scores = [col.fillna(col.min() - 1).to_numpy(), col.fillna(col.max() + 1).to_numpy()]
    aucs = [roc_auc_score(y, s) for s in scores]
    return max(max(a, 1 - a) for a in aucs)


def test_bayes_auc_in_band_and_above_every_single_feature(data: syn.SyntheticData) -> None:
    bayes = syn.bayes_auc(data)
    assert 0.76 <= bayes <= 0.86  # realistic for SME credit
    single = {name: _best_single_auc(data.frame, name) for name in syn.SCHEMA.names()}
    best = max(single, key=single.get)
    assert single[best] < bayes - 0.05, (best, single[best], bayes)
    assert sum(a > 0.55 for a in single.values()) >= 8  # risk is spread over many features


def test_true_pd_reproduces_from_the_frame() -> None:
    """pd_true is a function of the published columns alone, nothing hidden."""
    d = syn.generate(BLOCK, 9)
    _, latent = syn._draw_block(np.random.default_rng([9, 0]), BLOCK)
    x = {}
    for spec in syn.SCHEMA.features:
        col = d.frame[spec.name]
        if spec.kind == Kind.categorical:
            x[spec.name] = pd.Categorical(col, categories=syn.CATEGORIES[spec.name]).codes
        else:
            x[spec.name] = col.to_numpy()
    np.testing.assert_array_equal(syn._true_pd(x), d.pd_true)


@pytest.mark.parametrize("spec", [s for s in syn.SCHEMA.features if s.monotone], ids=str)
def test_true_pd_respects_declared_monotonicity(spec) -> None:
    x, latent = syn._draw_block(np.random.default_rng(123), 20_000)
    base = syn._true_pd(x)
    v = x[spec.name]
    if spec.kind == Kind.binary:
        moves = [np.ones_like(v)]  # every 0 becomes 1
    else:
        moves = [v + 1e-3 * (1 + np.abs(v)), v + 1.0, 2.0 * v + 1.0]  # tiny, unit and big steps
    for moved in moves:
        assert np.all(moved[~np.isnan(v)] >= v[~np.isnan(v)])
        pd_moved = syn._true_pd({**x, spec.name: moved})
        change = spec.monotone * (pd_moved - base)
        assert change.min() >= -1e-12, f"{spec.name}: pd moved against monotone={spec.monotone}"
        # The feature really matters: risk moves for most rows whose value changed.
        changed = moved != v
        assert (change[changed] > 0).mean() > 0.5, spec.name


def test_throughput_one_million_rows(capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.perf_counter()
    d = syn.generate(1_000_000, 2)
    seconds = time.perf_counter() - t0
    with capsys.disabled():
        print(
            f"\nsynthetic.generate: 1,000,000 rows in {seconds:.2f} s = {1e6 / seconds:,.0f} rows/s"
        )
    assert d.frame.shape == (1_000_000, len(syn.SCHEMA.features) + 1)
    assert d.pd_true.shape == (1_000_000,)
    assert not d.frame.iloc[-BLOCK:].duplicated().any()  # the last, partial block is real data
