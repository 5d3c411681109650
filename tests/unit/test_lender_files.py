"""Real lenders' files with only a YAML data config: text targets, percent and money strings,
sentinel codes, dates as periods, unused columns, Parquet books read by shard; and registry
names and aliases that cannot cross data sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import compose_config
from training.data.config import DataConfig, SplitConfig
from training.data.loaders import ParquetBook, load_dataset
from training.data.preprocess import Preprocessor
from training.data.schema import FeatureSpec, Kind, Parse
from training.data.split import make_split
from training.errors import ConfigError, DataError
from training.tracking.config import RegistryConfig

N = 120


def _book(n: int = N, seed: int = 0) -> pd.DataFrame:
    """A Lending-Club-like export: words for the target, strings for numbers, dates as text."""
    rng = np.random.default_rng(seed)
    months = pd.date_range("2010-01-01", periods=36, freq="MS")
    return pd.DataFrame(
        {
            "loan_status": rng.choice(["Fully Paid", "Charged Off"], n, p=[0.7, 0.3]),
            "revol_util": [f"{v:.2f}%" for v in rng.uniform(0, 100, n)],
            "annual_inc": [f"${v:,.0f}" for v in rng.uniform(20_000, 200_000, n)],
            "term": rng.choice([" 36 months", " 60 months"], n),
            "delinq": rng.choice(["0", "1", "2", "n/a"], n),
            "months_since": rng.choice([-7, -8, 3, 12, 40], n).astype(float),
            "grade": rng.choice(list("ABCDEFG"), n),
            "issue_d": [months[i].strftime("%b-%Y") for i in np.sort(rng.integers(0, 36, n))],
            "member_id": np.arange(n),
        }
    )


FEATURES = [
    {"name": "revol_util", "parse": "percent"},
    {"name": "annual_inc", "parse": "money"},
    {"name": "term", "parse": "leading_number"},
    {"name": "delinq", "missing": ["n/a"]},
    {"name": "months_since", "sentinels": {-7: "no record", -8: "not applicable"}},
    {"name": "grade", "kind": "categorical"},
]


def _config(
    tmp_path, name: str = "book.csv", fmt: str = "csv", features=FEATURES, **overrides
) -> DataConfig:
    cfg = compose_config(
        "data=taiwan",  # any file data set: its keys are replaced below
        "data.name=book",
        f"data.format={fmt}",
        f"data.root={tmp_path}",
        f"data.path={name}",
        "data.target=loan_status",
        "data.protected=[]",
        *[f"data.{k}={v}" for k, v in overrides.items()],
    ).data
    cfg.features = [
        FeatureSpec(
            name=f["name"],
            kind=Kind(f.get("kind", "numeric")),
            parse=Parse(f.get("parse", "number")),
            missing=f.get("missing", []),
            sentinels=f.get("sentinels", {}),
            map=f.get("map", {}),
        )
        for f in features
    ]
    return cfg


def _load(tmp_path, frame: pd.DataFrame | None = None, features=FEATURES, **overrides):
    (frame if frame is not None else _book()).to_csv(tmp_path / "book.csv", index=False)
    return load_dataset(_config(tmp_path, features=features, **overrides))


def test_a_lending_club_like_export_reads_with_only_config(tmp_path):
    raw = _book()
    ds = _load(tmp_path, raw, positive_label="'Charged Off'")
    f = ds.frame
    np.testing.assert_array_equal(
        f["loan_status"], (raw["loan_status"] == "Charged Off").astype(int)
    )
    np.testing.assert_allclose(
        f["revol_util"], raw["revol_util"].str.rstrip("%").astype(float) / 100
    )
    np.testing.assert_allclose(
        f["annual_inc"], raw["annual_inc"].str.replace(r"[$,]", "", regex=True).astype(float)
    )
    assert set(f["term"]) == {36.0, 60.0}
    assert f["delinq"].isna().sum() == (raw["delinq"] == "n/a").sum() > 0
    assert ds.unused == ("issue_d", "member_id")  # reported, not silently dropped


def test_text_target_without_a_label_names_the_key_and_the_values(tmp_path):
    with pytest.raises(DataError) as e:
        _load(tmp_path)
    msg = str(e.value)
    assert "target 'loan_status'" in msg and "['Charged Off', 'Fully Paid']" in msg
    assert "data.positive_label" in msg and "data.target_map" in msg


def test_positive_labels_as_a_list_and_a_target_map(tmp_path):
    raw = _book()
    raw["loan_status"] = np.resize(["good", "bad", "very bad"], N)
    ds = _load(tmp_path, raw, positive_label="[bad,'very bad']")
    assert ds.frame["loan_status"].tolist() == [0, 1, 1] * (N // 3)
    raw["loan_status"] = np.resize([1, 2], N)  # German credit: 1 good, 2 bad
    raw.to_csv(tmp_path / "book.csv", index=False)
    cfg = _config(tmp_path)
    cfg.target_map = {1: 0, 2: 1}  # as a data config's YAML gives it
    assert load_dataset(cfg).frame["loan_status"].tolist() == [0, 1] * (N // 2)
    cfg.target_map = {1: 0, 3: 1}
    with pytest.raises(DataError, match=r"value '2' .* data.target_map does not map"):
        load_dataset(cfg)


def test_a_positive_label_that_matches_nothing_says_so(tmp_path):
    with pytest.raises(
        DataError, match=r"single class \(0\).*no value matched data.positive_label"
    ) as e:
        _load(tmp_path, positive_label="Default")
    assert "the column has ['Charged Off', 'Fully Paid']" in str(e.value)  # what to write instead


def test_text_before_the_number_needs_a_map_or_first_number(tmp_path):
    raw = _book()
    raw["emp_length"] = np.resize(["< 1 year", "1 year", "10+ years", "n/a"], N)
    features = [*FEATURES, {"name": "emp_length", "parse": "leading_number"}]
    with pytest.raises(DataError) as e:  # "< 1 year" is not "1 year": never read silently as 1
        _load(tmp_path, raw, features=features, positive_label="'Charged Off'")
    msg = str(e.value)
    assert "'< 1 year'" in msg and "data.features[6].map" in msg and "first_number" in msg
    mapped = [*FEATURES, {"name": "emp_length", "parse": "leading_number", "map": {"< 1 year": 0}}]
    got = _load(tmp_path, raw, features=mapped, positive_label="'Charged Off'").frame
    values = got["emp_length"].to_numpy()[:4]
    assert values[:3].tolist() == [0.0, 1.0, 10.0] and np.isnan(values[3])  # "n/a": missing
    anywhere = [*FEATURES, {"name": "emp_length", "parse": "first_number"}]
    got = _load(tmp_path, raw, features=anywhere, positive_label="'Charged Off'").frame
    assert got["emp_length"].tolist()[:3] == [1.0, 1.0, 10.0]


def test_a_positive_label_in_the_wrong_case_names_the_values(tmp_path):
    raw = _book()
    raw["loan_status"] = np.resize(["Good", "Bad"], N)
    with pytest.raises(DataError) as e:
        _load(tmp_path, raw, positive_label="bad")
    msg = str(e.value)
    assert "'Bad'" in msg and "['Bad', 'Good']" in msg and "data.positive_label" in msg


def test_a_missing_column_shows_the_closest_names_first(tmp_path):
    raw = _book()
    for i in range(30):  # a wide export: the slip is past the first 20 columns
        raw.insert(0, f"extra_{i}", 0.0)
    raw = raw.rename(columns={"revol_util": "Revol_Util"})
    with pytest.raises(DataError) as e:
        _load(tmp_path, raw, positive_label="'Charged Off'")
    msg = str(e.value)
    assert "missing columns ['revol_util']" in msg and "closest first: ['Revol_Util']" in msg
    assert "more" in msg  # the rest of the file's columns are counted, not all listed


def test_positive_label_and_target_map_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.positive_label"):
        DataConfig(name="book", format="csv", path="b.csv", features=[FeatureSpec(name="x")],
                   positive_label="bad", target_map={"good": 0})  # fmt: skip


@pytest.mark.parametrize(
    "value, key",
    [
        ("83.70%", "data.features[4].parse=percent"),
        ("$1,234", "data.features[4].parse=money"),
        (" 36 months", "data.features[4].parse=leading_number"),
        ("unknown", "list it under data.features[4].missing"),
    ],
)
def test_an_unreadable_number_suggests_the_key_that_reads_it(tmp_path, value, key):
    raw = _book()
    raw["months_since"] = raw["months_since"].astype(object)
    raw.loc[7, "months_since"] = value
    with pytest.raises(DataError) as e:
        _load(tmp_path, raw, positive_label="'Charged Off'")
    msg = str(e.value)
    assert "'months_since'" in msg and repr(value) in msg and "data row 8" in msg, msg
    assert key in msg, msg


def test_sentinels_get_indicators_of_their_own_and_serve_alike(tmp_path):
    ds = _load(tmp_path, positive_label="'Charged Off'")
    pre = Preprocessor.fit(ds.frame, ds.schema)
    assert [s[:2] for s in pre.sentinels] == [["months_since", -7.0], ["months_since", -8.0]]
    x_num, _ = pre.transform(ds.frame)
    raw = ds.frame["months_since"].to_numpy()
    j = pre.numeric.index("months_since")
    for k, code in enumerate((-7.0, -8.0)):
        np.testing.assert_array_equal(x_num[:, -2 + k], raw == code)
        assert (x_num[raw == code, j] == 0).all()  # the value itself: the median, not -7
    # quantiles ignore the codes: the lowest is a real value
    assert pre.quantiles[j][0] == 3.0
    # a served row with a declared missing code reads as missing, as the loader made it
    pre.missing_codes["delinq"] = [-1.0]
    row = ds.frame.head(1).assign(delinq=-1.0)
    assert pre.transform(row)[0][0, pre.numeric.index("delinq")] == 0.0


def test_dates_as_the_out_of_time_period(tmp_path):
    raw = _book()
    with pytest.raises(DataError, match=r"'Jan-2010'.*set data.split.period_format.*%b-%Y"):
        _load(tmp_path, raw, positive_label="'Charged Off'", **_time_split())
    ds = _load(
        tmp_path,
        raw,
        positive_label="'Charged Off'",
        **_time_split(),
        **{"split.period_format": "'%b-%Y'"},
    )
    assert pd.api.types.is_datetime64_any_dtype(ds.frame["issue_d"])
    cfg = _config(tmp_path, positive_label="'Charged Off'", **_time_split())
    split = make_split(ds.frame, "loan_status", cfg.split)
    period = ds.frame["issue_d"]
    assert (period.iloc[split.train] < "2011-07-01").all()
    assert (period.iloc[split.valid] >= "2011-07-01").all() and (
        period.iloc[split.valid] < "2012-01-01"
    ).all()
    assert (period.iloc[split.test] >= "2012-01-01").all() and len(split.test) > 0
    # ISO dates need no format; a bare year is its 1 January
    raw["issue_d"] = pd.to_datetime(raw["issue_d"], format="%b-%Y").dt.strftime("%Y-%m-%d")
    ds = _load(tmp_path, raw, positive_label="'Charged Off'", **_time_split())
    split2 = make_split(
        ds.frame,
        "loan_status",
        SplitConfig(
            method="time", period_column="issue_d", valid_from="2011-07-01", test_from=2012
        ),
    )
    np.testing.assert_array_equal(split2.test, split.test)


def _time_split() -> dict:
    return {
        "split.method": "time",
        "split.period_column": "issue_d",
        "split.valid_from": "2011-07-01",
        "split.test_from": "2012-01-01",
    }


def _parquet_folder(tmp_path, n_files: int = 3, rows: int = 50, group: int = 16) -> pd.DataFrame:
    """A hive-partitioned book: vintage=<year>/part-0.parquet, row groups of ``group`` rows."""
    frames = []
    for i in range(n_files):
        frame = _book(rows, seed=i)
        (tmp_path / "book" / f"vintage={2019 + i}").mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pandas(frame),
            tmp_path / "book" / f"vintage={2019 + i}" / "part-0.parquet",
            row_group_size=group,
        )
        frames.append(frame.assign(vintage=2019 + i))
    return pd.concat(frames, ignore_index=True)


def test_a_parquet_folder_is_read_by_row_groups_in_a_fixed_order(tmp_path):
    whole = _parquet_folder(tmp_path)
    book = ParquetBook(tmp_path / "book")
    assert book.n_rows == 150 and book.n_files == 3 and len(book.groups) == 12
    assert "vintage" in book.columns  # the hive partition is a column
    chunks = list(book.chunks(40, 75, ["annual_inc", "vintage"], batch_rows=1000))
    part, read = pd.concat([c for _, c in chunks], ignore_index=True), book.describe(40, 75)
    assert [first for first, _ in chunks] == [40, 48, 50, 66]  # one chunk per row group touched
    assert part["annual_inc"].tolist() == whole["annual_inc"].iloc[40:75].tolist()
    assert part["vintage"].tolist() == whole["vintage"].iloc[40:75].tolist()
    # rows 40-74 lie in file 0's groups 2-3 (32-49) and file 1's groups 0-1 (50-81)
    assert read == "rows 40-74 of 150: 4 of 12 row groups in 2 of 3 files"


def test_a_parquet_folder_trains_as_one_book(tmp_path):
    _parquet_folder(tmp_path)
    cfg = _config(tmp_path, "book", "parquet", positive_label="'Charged Off'")
    ds = load_dataset(cfg)
    assert len(ds.frame) == 150 and ds.unused == ("issue_d", "member_id", "vintage")


def test_a_bad_value_in_a_parquet_book_names_the_row_of_the_whole_book(tmp_path):
    whole = _parquet_folder(tmp_path)
    path = tmp_path / "book" / "vintage=2020" / "part-0.parquet"
    frame = pq.read_table(path).to_pandas()
    frame.loc[5, "revol_util"] = "lots"
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=16)
    with pytest.raises(DataError, match="data row 56"):  # 50 rows in the first file, then row 6
        load_dataset(_config(tmp_path, "book", "parquet", positive_label="'Charged Off'"))
    assert len(whole) == 150


def test_registry_name_follows_the_data_set():
    assert compose_config("data=taiwan").registry.name == "credit-risk-taiwan"
    assert compose_config().registry.name == "credit-risk-synthetic_sme"
    assert compose_config("data=taiwan", "registry.name=cards").registry.name == "cards"


@pytest.mark.parametrize(
    "move, epochs, expected",
    [(None, 5, "challenger"), (None, 4, None), (True, 1, "challenger"), (False, 50, None)],
)
def test_an_alias_moves_only_after_enough_epochs_or_when_asked(move, epochs, expected):
    alias, why = RegistryConfig(move_alias=move, min_epochs=5).alias_after(epochs)
    assert alias == expected and (bool(why) == (expected is None))


def test_debug_runs_move_no_alias():
    assert compose_config("debug=tiny").registry.move_alias is False


def test_a_csv_book_converted_to_parquet_reads_the_same(tmp_path):
    from training.data.parquet import csv_to_parquet

    raw = _book(2000)
    raw["months_since"] = raw["months_since"].astype(object)
    raw.loc[1900, "months_since"] = "unknown"  # a number column with text far below the first block
    raw.to_csv(tmp_path / "book.csv", index=False)
    out = csv_to_parquet(
        tmp_path / "book.csv",
        tmp_path / "book",
        rows_per_file=700,
        row_group_size=100,
        block_size=4096,
    )
    assert out["rows"] == 2000 and out["files"] == 3 and out["text_columns"] == ["months_since"]
    features = [*FEATURES[:4], {**FEATURES[4], "missing": ["unknown"]}, FEATURES[5]]
    from_csv = load_dataset(_config(tmp_path, features=features, positive_label="'Charged Off'"))
    from_parquet = load_dataset(
        _config(tmp_path, "book", "parquet", features=features, positive_label="'Charged Off'")
    )
    pd.testing.assert_frame_equal(from_parquet.frame, from_csv.frame)


def test_a_headerless_space_separated_file_like_german_credit(tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"A1{rng.integers(1, 5)}  {rng.integers(4, 72)} A3{rng.integers(0, 5)} {1 + i % 2}" for i in range(60)]  # fmt: skip
    (tmp_path / "german.data").write_text("\n".join(rows) + "\n")
    cfg = DataConfig(
        name="german", format="csv", root=str(tmp_path), path="german.data", target="credit_risk",
        sep=r"\s+", column_names=["status", "duration", "history", "credit_risk"],
        target_map={1: 0, 2: 1},
        features=[FeatureSpec(name="status", kind=Kind.categorical), FeatureSpec(name="duration"),
                  FeatureSpec(name="history", kind=Kind.categorical)],
    )  # fmt: skip
    frame = load_dataset(cfg).frame
    assert frame["credit_risk"].tolist() == [0, 1] * 30
    assert set(frame["status"]) <= {"A11", "A12", "A13", "A14"} and frame["duration"].dtype == float
    cfg.sep = ","  # the wrong separator: every row is one column
    with pytest.raises(DataError, match="reads as one column with data.sep=','"):
        load_dataset(cfg)


def test_the_book_jobs_options_are_checked():
    from jobs.make_portfolio import PortfolioConfig
    from training.config import from_options

    assert from_options(PortfolioConfig, ["n_rows=5", "output=b"]).n_rows == 5
    with pytest.raises(ConfigError, match="n_rowz"):
        from_options(PortfolioConfig, ["n_rowz=5"])
    with pytest.raises(ConfigError, match="n_rows"):
        from_options(PortfolioConfig, ["n_rows=0"])
