"""Loaders validate files against the schema; splits and preprocessing behave as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import compose_config, needs_data
from training.data.config import DataConfig, SplitConfig
from training.data.loaders import load_dataset
from training.data.preprocess import Preprocessor
from training.data.schema import FeatureSpec, Kind, Schema, Source
from training.data.split import make_split
from training.errors import DataError

FEATURES = [
    FeatureSpec(name="revenue", kind=Kind.numeric, source=Source.operations),
    FeatureSpec(name="sector", kind=Kind.categorical, source=Source.application),
    FeatureSpec(name="penalty_flag", kind=Kind.binary, source=Source.social_credit, monotone=1),
]


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "revenue": rng.lognormal(10, 2, n),
            "sector": rng.choice(["software", "biotech", "retail"], n),
            "penalty_flag": rng.integers(0, 2, n).astype(float),
            "bad": rng.integers(0, 2, n),
        }
    )


def _config(tmp_path, fmt: str = "csv", name: str = "book.csv", **split) -> DataConfig:
    return DataConfig(
        name="book",
        format=fmt,
        root=str(tmp_path),
        path=name,
        target="bad",
        features=list(FEATURES),
        split=SplitConfig(**split),
    )


def _write(frame: pd.DataFrame, path) -> None:
    if str(path).endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)


@pytest.mark.parametrize("fmt, name", [("csv", "book.csv"), ("parquet", "book.parquet")])
def test_csv_and_parquet_load_and_type_columns(tmp_path, fmt, name):
    raw = _frame()
    _write(raw, tmp_path / name)
    ds = load_dataset(_config(tmp_path, fmt, name))
    assert list(ds.frame.columns) == ["revenue", "sector", "penalty_flag", "bad"]
    assert ds.frame["revenue"].dtype == np.float64 and ds.frame["bad"].dtype == np.int64
    np.testing.assert_allclose(ds.frame["revenue"], raw["revenue"])
    assert set(ds.frame["sector"]) == {"software", "biotech", "retail"}


def test_arff_with_missing_values(tmp_path):
    (tmp_path / "book.arff").write_text(
        "@relation book\n@attribute revenue numeric\n@attribute 'sector' {a,b}\n"
        "@attribute penalty_flag numeric\n@attribute bad {0,1}\n@data\n"
        "1.5,a,0,0\n?,b,1,1\n3.0,?,0,1\n2.0,a,1,0\n"
    )
    ds = load_dataset(_config(tmp_path, "arff", "book.arff"))
    assert (
        len(ds.frame) == 4 and np.isnan(ds.frame["revenue"][1]) and pd.isna(ds.frame["sector"][2])
    )
    assert ds.frame["bad"].tolist() == [0, 1, 1, 0]


def test_csv_with_byte_order_mark(tmp_path):
    (tmp_path / "book.csv").write_bytes(
        "\ufeffrevenue,sector,penalty_flag,bad\n1,a,0,0\n2,b,1,1\n".encode()
    )
    assert load_dataset(_config(tmp_path)).frame["revenue"].tolist() == [1.0, 2.0]


def _error(tmp_path, frame: pd.DataFrame | None = None, text: str | None = None) -> str:
    if text is not None:
        (tmp_path / "book.csv").write_text(text)
    elif frame is not None:
        _write(frame, tmp_path / "book.csv")
    with pytest.raises(DataError) as e:
        load_dataset(_config(tmp_path))
    return str(e.value)


def test_missing_file_names_the_path(tmp_path):
    msg = _error(tmp_path)
    assert "not found" in msg and str(tmp_path / "book.csv") in msg and "RISKBRAIN_DATA_ROOT" in msg


def test_missing_column_is_named(tmp_path):
    assert "['sector']" in _error(tmp_path, _frame().drop(columns="sector"))


def test_text_in_numeric_column_names_column_and_row(tmp_path):
    frame = _frame().astype({"revenue": object})
    frame.loc[6, "revenue"] = "12k"
    msg = _error(tmp_path, frame)
    assert "'revenue'" in msg and "'12k'" in msg and "data row 7" in msg


@pytest.mark.parametrize("values, expected", [([0, 1, 2], "binary"), ([1, 1, 1], "single class")])
def test_target_must_be_binary_with_both_classes(tmp_path, values, expected):
    frame = _frame(3)
    frame["bad"] = values
    assert expected in _error(tmp_path, frame)


def test_empty_file(tmp_path):
    assert "empty" in _error(tmp_path, text="")


def test_header_only_file(tmp_path):
    assert "no data rows" in _error(tmp_path, text="revenue,sector,penalty_flag,bad\n")


def test_all_missing_column_is_named(tmp_path):
    frame = _frame()
    frame["revenue"] = np.nan
    assert "'revenue' is missing in every row" in _error(tmp_path, frame)


def test_binary_column_rejects_other_values(tmp_path):
    frame = _frame()
    frame.loc[3, "penalty_flag"] = 2
    msg = _error(tmp_path, frame)
    assert "'penalty_flag'" in msg and "data row 4" in msg


def test_stratified_split_is_seeded_disjoint_and_keeps_bad_rate():
    y = np.r_[np.zeros(900, int), np.ones(100, int)]
    frame = pd.DataFrame({"bad": y})
    a = make_split(frame, "bad", SplitConfig(seed=3))
    b = make_split(frame, "bad", SplitConfig(seed=3))
    c = make_split(frame, "bad", SplitConfig(seed=4))
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)
    everything = np.concatenate([a.train, a.valid, a.test])
    assert len(everything) == len(np.unique(everything)) == 1000
    for idx in a.parts().values():
        assert y[idx].mean() == pytest.approx(0.1, abs=0.01)
    assert len(a.train) == 700 and len(a.valid) == 150


def test_time_split_by_period():
    frame = pd.DataFrame(
        {"year": np.repeat(np.arange(2000, 2010), 20).astype(float), "bad": np.tile([0, 1], 100)}
    )
    s = make_split(
        frame,
        "bad",
        SplitConfig(method="time", period_column="year", valid_from=2006, test_from=2008),
    )
    assert frame.year[s.train].max() == 2005 and frame.year[s.valid].min() == 2006
    assert frame.year[s.test].min() == 2008 and len(s.test) == 40


def test_split_with_a_single_class_part_is_refused():
    frame = pd.DataFrame({"year": [1.0, 1, 2, 2, 3, 3], "bad": [0, 1, 0, 1, 0, 0]})
    with pytest.raises(DataError, match="'test'.*one class"):
        make_split(
            frame,
            "bad",
            SplitConfig(method="time", period_column="year", valid_from=2, test_from=3),
        )


def test_preprocessing_fits_on_train_and_handles_unseen_and_missing():
    schema = Schema(features=list(FEATURES), target="bad")
    train = _frame(500)
    train.loc[:9, "revenue"] = np.nan
    pre = Preprocessor.fit(train, schema)
    x_num, x_cat = pre.transform(train)
    assert x_num.shape == (500, 3) and pre.indicators == [
        "revenue"
    ]  # revenue, penalty_flag, missing(revenue)
    z = x_num[10:, 0]
    assert abs(z.mean()) < 0.1 and 0.8 < z.std() < 1.2  # quantile transform -> ~ standard normal
    assert (x_num[:10, 0] == 0).all() and (x_num[:10, 2] == 1).all() and (x_num[10:, 2] == 0).all()
    new = pd.DataFrame(
        {"revenue": [1e12, -5.0], "sector": ["aerospace", None], "penalty_flag": [1.0, np.nan]}
    )
    x_num, x_cat = pre.transform(new)
    assert (
        np.isfinite(x_num).all() and (x_cat[:, 0] == 0).all()
    )  # unseen and missing -> the unknown bucket
    assert pre.cat_cardinalities == [4]


def test_preprocessing_state_round_trips():
    schema = Schema(features=list(FEATURES), target="bad")
    frame = _frame(300)
    pre = Preprocessor.fit(frame, schema)
    again = Preprocessor(**pre.state())
    for a, b in zip(pre.transform(frame), again.transform(frame), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "data, path, rows",
    [
        ("taiwan", "taiwan_default/UCI_Credit_Card.csv", 30000),
        ("polish", "polish_bankruptcy/1year.arff", 7027),
        ("sba", "sba_sme_loans/SBAcase.11.13.17.csv", 2101),
    ],
)
def test_real_data_sets_load(data, path, rows):
    needs_data(path)
    cfg = compose_config(f"data={data}")
    ds = load_dataset(cfg.data)
    assert len(ds.frame) == rows
    assert set(ds.frame[cfg.data.target].unique()) == {0, 1}
    split = make_split(ds.frame, cfg.data.target, cfg.data.split)
    assert sum(len(i) for i in split.parts().values()) == rows


def test_sba_leakage_columns_are_not_features():
    cfg = compose_config("data=sba")
    names = {f.name for f in cfg.data.features}
    assert not names & {
        "Term",
        "daysterm",
        "xx",
        "MIS_Status",
        "ChgOffDate",
        "ChgOffPrinGr",
        "BalanceGross",
        "Recession",
        "Name",
        "City",
        "Zip",
        "Bank",
        "LoanNr_ChkDgt",
        "ApprovalFY",
        "Default",
    }
