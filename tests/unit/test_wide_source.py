"""A wide source: a short history held as the loan table's own columns (a card's last six
statements), read as events dated months before the application. It must give exactly what the
same events give as a dated file, train without an application date, and serve from a request
that carries the columns as the file does."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from training.data.book import Book
from training.data.config import DataConfig
from training.data.history import connect, months_back
from training.errors import ConfigError, DataError

WIDE = """\
    name: cards
    format: csv
    path: loans.csv
    target: default
    features:
      - {name: limit, kind: numeric}
    sources:
      - name: statements
        windows: [2, 3]
        sequence: 3
        columns:
          bill: [bill_1, bill_2, bill_3]
          status: [pay_1, pay_2, pay_3]
        fields:
          - {name: bill, kind: numeric, missing: [-999]}
          - {name: status, kind: categorical}
"""


def _config(root, **changes) -> DataConfig:
    merged = OmegaConf.merge(
        OmegaConf.structured(DataConfig), OmegaConf.create(textwrap.dedent(WIDE)),
        {"root": str(root)}, changes,
    )  # fmt: skip
    return OmegaConf.to_object(merged)


def _source() -> dict:
    return OmegaConf.to_container(OmegaConf.create(textwrap.dedent(WIDE)))["sources"][0]


def _loans(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"limit": rng.integers(1, 100, n) * 1000, "default": rng.integers(0, 2, n)}
    )
    for m in (1, 2, 3):
        bill = rng.normal(5000, 2000, n).round(2)
        bill[rng.random(n) < 0.1] = -999  # a missing code
        frame[f"bill_{m}"] = bill
        frame[f"pay_{m}"] = rng.choice(["-1", "0", "1", "2"], n)
    frame.loc[3, "bill_2"] = np.nan  # an empty cell
    return frame


def _book(cfg: DataConfig, root, loans: pd.DataFrame) -> Book:
    return Book(cfg, root, loans, "loans.csv")


def test_a_wide_source_gives_what_the_same_events_give_as_a_dated_file(tmp_path):
    """The wide columns against a file of the same events, each dated m months before its
    loan's application date (month ends clamped): every input equal."""
    loans = _loans()
    loans["applied"] = pd.to_datetime("2021-01-31") + pd.to_timedelta(np.arange(40) * 9, "D")
    loans["loan_id"] = np.arange(40)
    app = loans["applied"].to_numpy("datetime64[us]")
    long = pd.concat([
        pd.DataFrame({"loan_id": loans["loan_id"], "date": months_back(app, m),
                      "bill": loans[f"bill_{m}"], "status": loans[f"pay_{m}"]})
        for m in (1, 2, 3)
    ])  # fmt: skip
    long["date"] = long["date"].dt.strftime("%Y-%m-%d")
    long.to_csv(tmp_path / "statements.csv", index=False)
    loans["applied"] = loans["applied"].dt.strftime("%Y-%m-%d")
    wide = _config(tmp_path, application_date="applied")
    source = {
        **_source(),
        "columns": {},
        "path": "statements.csv",
        "key": "loan_id",
        "time": "date",
    }
    dated = _config(tmp_path, application_date="applied", sources=[source])
    want = _book(dated, tmp_path, loans).assemble(loans, 0, "x")
    book = _book(wide, tmp_path, loans)
    got = book.assemble(loans, 0, "x")
    names = book.history.feature_names()
    assert set(book.history.sources[0].fields[1].values) == {"-1", "0", "1", "2"}
    assert "statements.bill.slope_3m" in names and "statements.status=2@1" in names
    pd.testing.assert_frame_equal(got[names], want[names])
    assert np.isnan(got.loc[3, "statements.bill@2"])  # the empty cell and the code are missing
    row = int(np.flatnonzero(loans["bill_1"].to_numpy() == -999)[0])
    assert np.isnan(got.loc[row, "statements.bill@1"])


def test_without_an_application_date_a_request_gets_the_inputs_training_computed(tmp_path):
    """No application date: every loan applies on the same day. A request carrying the wide
    columns, as the file holds them, gets the inputs training computed: one loan at a time (in
    numpy) and all at once (through DuckDB)."""
    loans = _loans()
    cfg = _config(tmp_path)
    book = _book(cfg, tmp_path, loans)
    trained = book.assemble(loans, 0, "x")
    names = book.history.feature_names()
    assert book.history.request_columns() == [*(f"bill_{m}" for m in (1, 2, 3)),
                                              *(f"pay_{m}" for m in (1, 2, 3))]  # fmt: skip
    request = loans[["limit"]].join(book.requests(loans))
    assert list(request.columns) == ["limit", *book.history.request_columns()]
    con = connect()
    together = book.history.from_request(con, request)  # 40 loans: DuckDB
    pd.testing.assert_frame_equal(together[names], trained[names])
    for i in (0, 3, 7):
        one = book.history.from_request(con, request.iloc[[i]])  # in numpy
        pd.testing.assert_frame_equal(one[names], trained.iloc[[i]][names], rtol=1e-9)
    assert trained["statements.count_2m"].eq(2).all() and trained["statements.count_3m"].eq(3).all()


def test_a_served_model_takes_the_wide_columns_not_a_list_of_events(tmp_path):
    from training.data.schema import Schema
    from training.serving.bundle import signature

    loans = _loans()
    cfg = _config(tmp_path)
    book = _book(cfg, tmp_path, loans)
    schema = Schema(features=[*cfg.features, *book.features], target="default")
    schema.history = book.history
    names = signature(schema, 2).inputs.input_names()
    assert "statements" not in names and "applied" not in names
    assert [n for n in names if n.startswith(("bill_", "pay_"))] == book.history.request_columns()
    assert book.history.lists() == []
    with pytest.raises(DataError, match=r"request lacks columns \['pay_3'\]"):
        book.history.from_request(connect(), loans.drop(columns=["pay_3"]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"columns": {"bill": ["bill_1", "bill_2", "bill_3"]}},
         r"data.sources\[0\].columns.*must map each field \['bill', 'status'\]"),
        ({"columns": {"bill": ["bill_1", "bill_2"], "status": ["pay_1", "pay_2", "pay_3"]}},
         r"data.sources\[0\].columns.*same number of periods"),
        ({"months_before": [1, 2]}, r"data.sources\[0\].months_before.*3 distinct ages"),
        ({"months_before": [0, 1, 2]}, r"data.sources\[0\].months_before.*at least 1"),
        ({"path": "statements.csv"}, r"data.sources\[0\].path.*must be empty"),
        ({"columns": {}}, r"data.sources\[0\].path.*is required for a source of dated events"),
    ],
)  # fmt: skip
def test_a_wide_source_config_mistake_names_its_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, application_date="applied", sources=[{**_source(), **change}])


def test_a_wide_column_the_loan_table_lacks_names_the_key_and_the_closest(tmp_path):
    loans = _loans().rename(columns={"pay_3": "PAY_3"})
    with pytest.raises(
        DataError, match=r"data.sources\[0\].columns: .*no columns \['pay_3'\].*PAY_3"
    ):
        _book(_config(tmp_path), tmp_path, loans)


def test_dated_sources_still_need_an_application_date(tmp_path):
    source = {"name": "pay", "path": "p.csv", "key": "k", "time": "t", "fields": [{"name": "x"}]}
    with pytest.raises(ConfigError, match="data.application_date"):
        _config(tmp_path, sources=[source])


def test_months_back_is_duckdbs_calendar_month_arithmetic():
    """The dates of a wide source's periods are those DuckDB's windows count with: month ends
    clamped (31 March less one month is 28 February; 29 February 2024 less 12 is 28 February)."""
    app = pd.to_datetime(["2021-03-31", "2024-02-29", "2021-01-15", "2020-12-31"]).to_numpy(
        "datetime64[us]"
    )
    con = connect()
    con.register("a", pd.DataFrame({"app": app}))
    for m in (1, 2, 6, 12, 25):
        want = con.execute(f"SELECT app - to_months({m}) AS t FROM a").df()["t"]
        np.testing.assert_array_equal(months_back(app, m), want.to_numpy("datetime64[us]"))
