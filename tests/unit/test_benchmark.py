"""The GBDT benchmark: a seeded search, the network's own rows, scores on every test row."""

from __future__ import annotations

import pytest

from tests.conftest import compose_config
from training.data.prepare import prepare
from training.data.schema import Kind
from training.governance.benchmark import DEFAULT, GRID, features, gbdt_benchmark, settings
from training.runtime.dist import DistContext


def test_settings_start_with_the_default_and_are_seeded_and_distinct():
    a, b = settings(8, seed=0), settings(8, seed=0)
    assert a == b and a[0] == DEFAULT and len(a) == 8
    assert len({tuple(s.items()) for s in a}) == 8
    assert all(s[k] in GRID[k] for s in a for k in GRID)
    assert settings(8, seed=1) != a


@pytest.fixture(scope="module")
def data():
    cfg = compose_config("debug=tiny", "benchmark.enabled=true", "benchmark.n_trials=3")
    return cfg, prepare(cfg.data, benchmark_rows=cfg.benchmark.rows)


def test_categoricals_keep_the_training_vocabulary(data):
    cfg, prepared = data
    fitted = prepared.training
    frame = prepared.evaluation.frames["test"].head(20).copy()
    cat = fitted.schema.names(Kind.categorical)[0]
    frame.loc[frame.index[0], cat] = "never seen in training"
    x = features(frame, fitted)
    names = fitted.schema.names()
    assert len(x.columns) == len(names) and all(
        c.endswith(n) for c, n in zip(x, names, strict=True)
    )
    col = x.columns[names.index(cat)]
    assert list(x[col].cat.categories) == fitted.pre.vocab[cat] and x[col].isna().iloc[0]


def test_feature_names_lightgbm_refuses_are_renamed(data):
    _, prepared = data
    import dataclasses

    fitted = prepared.training
    frame = prepared.evaluation.frames["test"].head(5)
    odd = {n: f"{n}[x/y]" for n in fitted.schema.names()}
    schema = dataclasses.replace(
        fitted.schema,
        features=[dataclasses.replace(f, name=odd[f.name]) for f in fitted.schema.features],
    )
    renamed = dataclasses.replace(
        fitted, schema=schema,
        pre=dataclasses.replace(fitted.pre, vocab={odd[k]: v for k, v in fitted.pre.vocab.items()}),
    )  # fmt: skip
    x = features(frame.rename(columns=odd), renamed)
    assert not any(ch in c for c in x.columns for ch in '[]/,:{}"')


def test_benchmark_on_the_networks_split(data):
    cfg, prepared = data
    out = gbdt_benchmark(cfg.benchmark, prepared, DistContext())
    assert out["test"]["n"] == len(prepared.evaluation.split.test)  # every test row, no sample
    assert out["train_rows"] == len(prepared.evaluation.split.train)
    assert out["params"] in settings(3, cfg.benchmark.seed) and out["rounds"] >= 1
    assert 0.6 < out["test"]["auc"] <= 1  # synthetic data carry real signal


def test_a_row_cap_takes_evenly_spaced_rows(data):
    cfg, prepared = data
    capped = gbdt_benchmark(type(cfg.benchmark)(n_trials=1, max_rows=500), prepared, DistContext())
    step = -(-len(prepared.evaluation.split.train) // 500)
    assert capped["train_rows"] == -(-len(prepared.evaluation.split.train) // step) <= 500
    assert capped["valid_rows"] <= 500 and capped["test"]["n"] == len(
        prepared.evaluation.split.test
    )


def test_on_by_default_off_in_debug_tiny_and_then_absent(data):
    cfg, prepared = data
    assert compose_config().benchmark.enabled and not compose_config("debug=tiny").benchmark.enabled
    assert gbdt_benchmark(type(cfg.benchmark)(enabled=False), prepared, DistContext()) is None


def test_a_cache_fits_once_per_key_and_says_when_it_reused(data, tmp_path, monkeypatch):
    import dataclasses

    from training.governance import benchmark

    cfg, prepared = data
    fits = []
    real_search = benchmark.search
    monkeypatch.setattr(benchmark, "search", lambda *a, **k: fits.append(1) or real_search(*a, **k))
    cached = dataclasses.replace(cfg.benchmark, cache=str(tmp_path))
    first = gbdt_benchmark(cached, prepared, DistContext())
    again = gbdt_benchmark(cached, prepared, DistContext())
    assert len(fits) == 1 and not first["reused"] and again["reused"]
    assert again["key"] == first["key"] and again["test"] == first["test"]
    assert again["params"] == first["params"] and again["rounds"] == first["rounds"]
    # other settings are another key: fitted again, beside the first
    other = gbdt_benchmark(dataclasses.replace(cached, n_trials=2), prepared, DistContext())
    assert len(fits) == 2 and not other["reused"] and other["key"] != first["key"]
    assert len(list(tmp_path.glob("lightgbm-*.json"))) == 2
    # and without a cache nothing is kept and nothing is said
    plain = gbdt_benchmark(cfg.benchmark, prepared, DistContext())
    assert "key" not in plain and "reused" not in plain and len(fits) == 3
