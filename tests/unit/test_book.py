"""A book of several tables: side tables joined one-to-one, events aggregated point-in-time by
DuckDB, the same inputs for a served request as for training, and one clear error a mistake."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from training.data.book import Book
from training.data.config import DataConfig
from training.data.history import connect
from training.data.loaders import Shard
from training.errors import ConfigError, DataError
from training.runtime.dist import DistContext

YAML = """\
    name: book
    format: csv
    path: loans.csv
    target: status
    positive_label: bad
    application_date: applied
    application_date_format: "%d/%m/%Y"
    features:
      - {name: amount, kind: numeric}
    tables:
      - {name: branch, path: branches.csv, key: branch_id, features: [{name: region, kind: categorical}]}
    sources:
      - name: pay
        path: payments.csv
        key: customer_id
        time: paid
        windows: [3, 12]
        fields:
          - {name: late, kind: numeric}
          - {name: channel, kind: categorical}
"""


def _config(root, **changes) -> DataConfig:
    merged = OmegaConf.merge(
        OmegaConf.structured(DataConfig), OmegaConf.create(textwrap.dedent(YAML)),
        {"root": str(root)}, changes,
    )  # fmt: skip
    return OmegaConf.to_object(merged)


def _book(cfg: DataConfig, root) -> Book:
    return Book(cfg, root, pd.read_csv(root / "loans.csv"), "loans.csv")


def _write(root, loans=None, branches=None, payments=None) -> None:
    loans = loans if loans is not None else pd.DataFrame({
        "loan_id": [1, 2, 3, 4],
        "customer_id": ["c1", "c2", "c3", "c1"],
        "branch_id": [10, 20, 10, 30],
        "applied": ["15/06/2021", "01/03/2021", "20/12/2020", "01/01/2022"],
        "amount": [1000, 2000, 1500, 900],
        "status": ["bad", "good", "good", "bad"],
    })  # fmt: skip
    branches = (
        branches
        if branches is not None
        else pd.DataFrame({"branch_id": [10, 20, 30], "region": ["north", "south", "east"]})
    )
    payments = payments if payments is not None else pd.DataFrame({
        "customer_id": ["c1", "c1", "c1", "c1", "c2", "c2", "c9"],
        "paid": ["2021-01-10", "2021-04-20", "2021-06-10", "2021-06-15", "2020-01-01",
                 "2021-03-01", "2021-01-01"],
        "late": [0, 10, 30, 99, 5, 99, 1],
        "channel": ["web", "web", "branch", "web", "web", "branch", "web"],
    })  # fmt: skip
    loans.to_csv(root / "loans.csv", index=False)
    branches.to_csv(root / "branches.csv", index=False)
    payments.to_csv(root / "payments.csv", index=False)


def test_each_loan_sees_only_events_strictly_before_its_application_date(tmp_path):
    _write(tmp_path)
    cfg = _config(tmp_path)
    book = _book(cfg, tmp_path)
    loans = pd.read_csv(tmp_path / "loans.csv")
    frame = book.assemble(loans, 0, "loans.csv").set_index("loan_id")
    # Loan 1 (c1, 15/06/2021): 10 Jan, 20 Apr and 10 Jun count; 15 Jun (the day itself) does not.
    assert frame.loc[1, "pay.count_12m"] == 3 and frame.loc[1, "pay.count_3m"] == 2
    assert frame.loc[1, "pay.late.sum_12m"] == 40 and frame.loc[1, "pay.late.max_3m"] == 30
    assert frame.loc[1, "pay.late.mean_3m"] == 20 and frame.loc[1, "pay.late.last"] == 30
    assert frame.loc[1, "pay.months_since_last"] == pytest.approx(5 / 30.4375)
    assert frame.loc[1, "pay.channel=web.count_12m"] == 2
    # Loan 2 (c2, 01/03/2021): the event of 01/03/2021 is on the date; 2020-01-01 is 14 months old.
    assert frame.loc[2, "pay.count_12m"] == 0 and frame.loc[2, "pay.late.sum_12m"] == 0
    assert np.isnan(frame.loc[2, "pay.late.mean_12m"]) and np.isnan(frame.loc[2, "pay.late.last"])
    # Loan 3 has no events at all: a valid state, count 0 and the rest missing.
    assert frame.loc[3, "pay.count_12m"] == 0 and np.isnan(frame.loc[3, "pay.months_since_last"])
    # Side table joined one-to-one, its key's type (int vs text) aside.
    assert frame["region"].tolist() == ["north", "south", "north", "east"]
    assert not any(c.startswith("__join__") for c in frame.columns)


def test_coverage_counts_keys_without_loans_and_loans_without_events(tmp_path):
    _write(tmp_path)
    coverage = _book(_config(tmp_path), tmp_path).coverage()
    # c9 pays but has no loan; loan 2 (c2) has only an event on its date and one 14 months
    # old (the look-back is 12), loan 3 (c3) none at all
    assert coverage == {"pay": {"events": 7, "keys": 3, "keys_without_loans": 1, "loans": 4,
                                "loans_without_events": 2}}  # fmt: skip
    # a look-back of 24 months reaches loan 2's event of 2020-01-01
    longer = _config(
        tmp_path, sources=[{**_config(tmp_path).sources[0].__dict__, "lookback_months": 24}]
    )
    assert _book(longer, tmp_path).coverage()["pay"]["loans_without_events"] == 1


def test_events_planted_on_or_after_the_date_change_no_input(tmp_path):
    _write(tmp_path)
    clean = _book(_config(tmp_path), tmp_path).assemble(pd.read_csv(tmp_path / "loans.csv"), 0, "x")
    loans = pd.read_csv(tmp_path / "loans.csv")
    planted = pd.read_csv(tmp_path / "payments.csv")
    dates = pd.to_datetime(loans["applied"], format="%d/%m/%Y")
    dates = dates.groupby(loans["customer_id"]).transform("max")  # on or after each of its loans
    leaks = pd.DataFrame({
        "customer_id": loans["customer_id"],
        "paid": [(d + pd.Timedelta(days=k)).strftime("%Y-%m-%d") for k, d in enumerate(dates)],
        "late": np.where(loans["status"] == "bad", 1000, 0),  # the label, on and after the day
        "channel": np.where(loans["status"] == "bad", "court", "web"),
    })  # fmt: skip
    _write(tmp_path, payments=pd.concat([planted, leaks], ignore_index=True))
    leaky = _book(_config(tmp_path), tmp_path).assemble(pd.read_csv(tmp_path / "loans.csv"), 0, "x")
    pd.testing.assert_frame_equal(clean, leaky)


def test_max_events_keeps_the_most_recent(tmp_path):
    _write(tmp_path)
    cfg = _config(tmp_path, sources=[{**OmegaConf.to_container(OmegaConf.create(textwrap.dedent(YAML)))["sources"][0], "max_events": 1}])  # fmt: skip
    frame = _book(cfg, tmp_path).assemble(pd.read_csv(tmp_path / "loans.csv"), 0, "x")
    assert frame.loc[0, "pay.count_12m"] == 1 and frame.loc[0, "pay.late.sum_12m"] == 30


def test_an_event_slot_reads_a_missing_field_as_missing_not_zero(tmp_path):
    payments = pd.DataFrame({"customer_id": ["c1", "c1"], "paid": ["2021-04-20", "2021-06-10"],
                             "late": ["7", "n/a"], "channel": ["web", "branch"]})  # fmt: skip
    _write(tmp_path, payments=payments)
    source = OmegaConf.to_container(OmegaConf.create(textwrap.dedent(YAML)))["sources"][0]
    source["sequence"] = 2
    source["fields"][0]["missing"] = ["n/a"]
    frame = _book(_config(tmp_path, sources=[source]), tmp_path).assemble(
        pd.read_csv(tmp_path / "loans.csv"), 0, "x"
    )
    # Loan 1 (c1, 15/06/2021): its last event's late is missing, the one before it is 7.
    assert np.isnan(frame.loc[0, "pay.late@1"]) and frame.loc[0, "pay.late@2"] == 7
    assert frame.loc[0, "pay.channel=branch@1"] == 1 and frame.loc[0, "pay.age@1"] > 0
    # Loan 3 has no events: every slot is missing.
    assert frame.loc[2, ["pay.late@1", "pay.age@1"]].isna().all()


def test_loans_joined_a_chunk_at_a_time_get_the_same_inputs(tmp_path, monkeypatch):
    import training.data.history as history

    _write(tmp_path)
    source = OmegaConf.to_container(OmegaConf.create(textwrap.dedent(YAML)))["sources"][0]
    cfg = _config(tmp_path, sources=[{**source, "sequence": 2}])
    loans = pd.read_csv(tmp_path / "loans.csv")
    whole = _book(cfg, tmp_path).assemble(loans, 0, "x")
    monkeypatch.setattr(history, "LOANS_AT_A_TIME", 3)  # 4 loans: chunks of 3 and 1
    pd.testing.assert_frame_equal(_book(cfg, tmp_path).assemble(loans, 0, "x"), whole)
    assert whole["pay.count_12m"].tolist() == [3, 0, 0, 4]


def test_a_parquet_source_of_typed_columns_gives_what_its_csv_gives(tmp_path):
    payments = pd.DataFrame({
        "customer_id": ["c1", "c1", "c1", "c2"],
        "paid": ["2021-01-10", "2021-04-20", "2021-06-10", "2020-12-01"],
        "late": [0.0, -1.0, 30.5, 7.0],  # -1: missing (a float column: "-1.0" as text)
        "channel": ["web", "web", "branch", "web"],
    })  # fmt: skip
    _write(tmp_path, payments=payments)
    typed = payments.assign(paid=pd.to_datetime(payments["paid"]))
    typed.to_parquet(tmp_path / "payments.parquet")  # TIMESTAMP and DOUBLE columns
    source = OmegaConf.to_container(OmegaConf.create(textwrap.dedent(YAML)))["sources"][0]
    source["fields"][0]["missing"] = [-1]
    loans = pd.read_csv(tmp_path / "loans.csv")
    frames = [
        _book(_config(tmp_path, sources=[{**source, "path": path}]), tmp_path).assemble(loans, 0, "x")
        for path in ("payments.csv", "payments.parquet")
    ]
    pd.testing.assert_frame_equal(*frames)
    # Loan 1 (c1, 15/06/2021): 0 and 30.5 count, the -1 is missing
    assert frames[1].loc[0, "pay.late.sum_12m"] == 30.5 and frames[1].loc[0, "pay.count_12m"] == 3
    assert frames[1].loc[0, "pay.late.mean_12m"] == 15.25


def test_two_shards_assemble_what_one_process_does(tmp_path):
    _write(tmp_path)
    cfg = _config(tmp_path)
    def assembled(shard: Shard, rows: int) -> pd.DataFrame:  # chunks of ``rows`` loans
        names = [*shard.loans.columns, *(f.name for f in shard.book.features)]
        return pd.concat([c for _, c in shard._assembled(names, rows)], ignore_index=True)

    whole = assembled(Shard(cfg, DistContext()), 1024)
    assert len(whole) == 4 and whole["pay.count_12m"].tolist() == [3, 0, 0, 4]
    parts = [assembled(Shard(cfg, DistContext(rank=r, world_size=2)), 1) for r in range(2)]
    pd.testing.assert_frame_equal(whole, pd.concat(parts, ignore_index=True))


def test_a_request_gets_the_inputs_training_computed(tmp_path):
    _write(tmp_path)
    cfg = _config(tmp_path)
    book = _book(cfg, tmp_path)
    loans = pd.read_csv(tmp_path / "loans.csv")
    trained = book.assemble(loans, 0, "x")
    request = loans[["amount"]].join(book.requests(loans))
    request["pay"] = [json.loads(t) for t in request["pay"]]  # lists of events, as JSON sends
    served = book.history.from_request(connect(), request)
    names = book.history.feature_names()
    pd.testing.assert_frame_equal(served[names], trained[names])


def test_a_repeated_side_key_names_the_table_and_the_keep_option(tmp_path):
    _write(tmp_path, branches=pd.DataFrame({"branch_id": [10, 10, 20, 30], "region": list("abcd")}))
    loans = pd.read_csv(tmp_path / "loans.csv")
    with pytest.raises(
        DataError, match=r"'branch' repeats key 'branch_id': '10' is on 2 rows.*keep"
    ):
        _book(_config(tmp_path), tmp_path).assemble(loans, 0, "x")
    tables = [{"name": "branch", "path": "branches.csv", "key": "branch_id", "keep": "last",
               "features": [{"name": "region", "kind": "categorical"}]}]  # fmt: skip
    frame = _book(_config(tmp_path, tables=tables), tmp_path).assemble(loans, 0, "x")
    assert frame["region"].tolist() == ["b", "c", "b", "d"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"application_date_format": "%Y-%m-%d"},
         r"application date 'applied': '15/06/2021' at row 1 is not a date.*application_date_format"),
        ({"sources": [{"name": "pay", "path": "payments.csv", "key": "customer", "time": "paid"}]},
         r"payments.csv: missing columns \['customer'\].*data.sources\[0\].*customer_id"),
        ({"sources": [{"name": "pay", "path": "nope.csv", "key": "customer_id", "time": "paid"}]},
         r"data.sources\[0\]: 'pay' file not found: .*nope.csv"),
        ({"tables": [{"name": "branch", "path": "branches.csv", "key": "branch_id", "join": "branch"}]},
         r"data.tables\[0\].join='branch' is not a column of the loan table"),
    ],
)  # fmt: skip
def test_a_mistake_is_one_error_naming_the_file_column_and_key(tmp_path, change, message):
    _write(tmp_path)
    with pytest.raises(DataError, match=message):
        _book(_config(tmp_path, **change), tmp_path).assemble(
            pd.read_csv(tmp_path / "loans.csv"), 0, "loans.csv"
        )


def test_a_bad_event_date_names_its_row_and_the_format_key(tmp_path):
    payments = pd.DataFrame({"customer_id": ["c1", "c1"], "paid": ["2021-01-10", "31/01/2021"],
                             "late": [0, 1], "channel": ["web", "web"]})  # fmt: skip
    _write(tmp_path, payments=payments)
    with pytest.raises(
        DataError,
        match=r"payments.csv: 'paid' '31/01/2021' at row 2 is not a date.*data.sources\[pay\].time_format",
    ):
        _book(_config(tmp_path), tmp_path).assemble(pd.read_csv(tmp_path / "loans.csv"), 0, "x")


def test_config_refuses_sources_without_an_application_date(tmp_path):
    with pytest.raises(ConfigError, match="data.application_date"):
        _config(tmp_path, application_date=None)
    with pytest.raises(ConfigError, match=r"data.sources\[0\].stats"):
        _config(tmp_path, sources=[{"name": "p", "path": "p", "key": "k", "time": "t",
                                    "fields": [{"name": "f"}], "stats": ["median"]}])  # fmt: skip


@pytest.mark.parametrize("doc", ["README.md", "docs/data.md"])
def test_the_documented_book_yaml_is_a_valid_data_config(doc):
    from tests.conftest import ROOT

    text = (ROOT / doc).read_text()
    block = next(b for b in text.split("```yaml\n")[1:] if "sources:" in b).split("```")[0]
    cfg = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.create(block))
    )
    assert cfg.application_date and cfg.tables and cfg.sources[0].fields


def _row_groups_read(con, table: str, tmp_path) -> tuple[int, int]:
    """(row groups the Parquet reader scanned, row groups it had) for a count of ``table``."""
    out = tmp_path / "profile.json"
    con.execute("PRAGMA enable_profiling='json'")
    con.execute(f"PRAGMA profiling_output='{out}'")
    con.execute(f"SELECT count(*) FROM {table}").fetchall()
    con.execute("PRAGMA disable_profiling")

    def scans(node):
        for child in node.get("children", []) + node.get("operator", []):
            if child.get("name") == "READ_PARQUET":
                yield child["row_groups_scanned"], child["total_row_groups_to_scan"]
            yield from scans(child)

    return tuple(map(sum, zip(*scans(json.loads(out.read_text())), strict=True)))


@pytest.mark.parametrize("key_type", ["text", "integer"])
def test_a_shard_reads_only_the_row_groups_of_its_borrowers(tmp_path, key_type):
    """A book written in key order (as jobs.make_portfolio writes it), in part files of several
    row groups: the events of the first quarter of the loans come from the row groups that hold
    their keys, not from every row group, and are exactly those loans' events."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 40
    ids = [f"c{i:02d}" for i in range(n)] if key_type == "text" else list(range(1000, 1000 + n))
    loans = pd.DataFrame({"customer_id": ids, "branch_id": 10, "applied": "01/01/2022",
                          "amount": 1000.0, "status": ["bad", "good"] * (n // 2)})  # fmt: skip
    _write(tmp_path, loans=loans)
    (tmp_path / "pay").mkdir()
    for part in range(4):  # 10 customers a file, 5 a row group, 3 events each
        mine = ids[part * 10 : (part + 1) * 10]
        events = pd.DataFrame({"customer_id": np.repeat(mine, 3), "paid": "2021-06-01",
                               "late": np.arange(30.0), "channel": "web"})  # fmt: skip
        pq.write_table(pa.Table.from_pandas(events, preserve_index=False),
                       tmp_path / "pay" / f"part-{part}.parquet", row_group_size=15)  # fmt: skip
    source = {"name": "pay", "path": "pay", "key": "customer_id", "time": "paid",
              "windows": [12], "fields": [{"name": "late"}]}  # fmt: skip
    cfg = _config(tmp_path, tables=[], sources=[source])
    book = Book(cfg, tmp_path, pd.read_csv(tmp_path / "loans.csv"), "loans.csv")
    keys = np.array([str(k) for k in ids[: n // 4]], dtype=object)
    table = book._events(0, cfg.sources[0], keys)
    assert _row_groups_read(book.con, table, tmp_path) == (2, 8)
    got = book.con.execute(f"SELECT DISTINCT k FROM {table} ORDER BY k").fetchall()
    assert [r[0] for r in got] == sorted(keys)


@pytest.mark.parametrize("sort_by", [None, "customer_id"])
def test_an_event_csv_converted_sorted_by_key_is_read_from_its_borrowers_row_groups(
    tmp_path, sort_by
):
    """A lender's event table comes in date order, every row group holding every borrower; by
    ``jobs.to_parquet sort_by=<key>`` its rows are in key order (ties in the file's order), so a
    quarter of the borrowers' events come from a quarter of the row groups, and are the same."""
    from training.data.parquet import csv_to_parquet

    n = 40
    ids = [f"c{i:02d}" for i in range(n)]
    loans = pd.DataFrame({"customer_id": ids, "branch_id": 10, "applied": "01/01/2022",
                          "amount": 1000.0, "status": ["bad", "good"] * (n // 2)})  # fmt: skip
    _write(tmp_path, loans=loans)
    rng = np.random.default_rng(0)  # each month's payments in no order of borrower
    events = pd.DataFrame({"customer_id": np.concatenate([rng.permutation(ids) for _ in range(4)]),
                           "late": np.arange(4.0 * n),
                           "paid": np.repeat(["2021-03-01", "2021-04-01", "2021-05-01",
                                              "2021-06-01"], n)})  # fmt: skip
    events.to_csv(tmp_path / "pay.csv", index=False)
    out = csv_to_parquet(tmp_path / "pay.csv", tmp_path / "pay", rows_per_file=80,
                         row_group_size=20, sort_by=sort_by)  # fmt: skip
    assert out["rows"] == 4 * n and not (tmp_path / "pay" / ".unsorted").exists()
    written = pd.read_parquet(tmp_path / "pay")
    if sort_by:  # every row once, in key order, a key's rows in the file's order; 80 a file
        assert out["files"] == 2
        expected = events.sort_values("customer_id", kind="stable", ignore_index=True)
        expected["paid"] = pd.to_datetime(expected["paid"]).dt.date  # Parquet dates
        pd.testing.assert_frame_equal(written, expected)
    source = {"name": "pay", "path": "pay", "key": "customer_id", "time": "paid",
              "windows": [12], "fields": [{"name": "late"}]}  # fmt: skip
    cfg = _config(tmp_path, tables=[], sources=[source])
    book = Book(cfg, tmp_path, pd.read_csv(tmp_path / "loans.csv"), "loans.csv")
    keys = np.array(ids[: n // 4], dtype=object)
    table = book._events(0, cfg.sources[0], keys)
    assert _row_groups_read(book.con, table, tmp_path) == ((2, 8) if sort_by else (8, 8))
    got = book.con.execute(f"SELECT k, count(*) FROM {table} GROUP BY k ORDER BY k").fetchall()
    assert got == [(k, 4) for k in keys]


def test_converting_sorted_by_a_column_the_file_lacks_names_it(tmp_path):
    from training.data.parquet import csv_to_parquet

    pd.DataFrame({"customer_id": ["a"], "late": [1.0]}).to_csv(tmp_path / "pay.csv", index=False)
    with pytest.raises(DataError, match=r"sort_by=client_id: .*pay.csv has no such column"):
        csv_to_parquet(tmp_path / "pay.csv", tmp_path / "pay", sort_by="client_id")
    assert not any((tmp_path / "pay").glob("**/*.parquet"))
