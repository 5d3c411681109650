"""A request's histories in numpy (training/data/history_rows.py) equal DuckDB's SQL, and values
only DuckDB reads go to DuckDB."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import history_rows
from training.data.history import EventField, EventSource, History, connect, parse_dates
from training.errors import DataError


def _history(time_format: str | None = None, **source) -> History:
    fields = [
        EventField(name="amount", missing=["n/a", -1]),
        EventField(name="late"),
        EventField(name="kind", kind="categorical", values=["tax", "court"], missing=["?"]),
    ]
    src = EventSource(name="ev", time="when", time_format=time_format, fields=fields, **source)
    return History(application_date="applied", sources=[src])


def _random_cells(rng, loans: int, fmt: str | None) -> tuple[list[str], list[list[dict]]]:
    """Loans applied on month ends and mid-month, each with 0-30 events: dates on the same day
    (ties), on the application day and after it, missing tokens, numbers as JSON and as text."""
    base = pd.Timestamp("2021-03-31")
    applied, cells = [], []
    for _ in range(loans):
        app = base + pd.DateOffset(months=int(rng.integers(0, 12))) - pd.Timedelta(
            days=int(rng.choice([0, 0, 15]))
        )
        events = []
        for _ in range(int(rng.integers(0, 31))):
            day = app - pd.Timedelta(days=int(rng.choice([0, -3, 1, 30, 31, 90, 200, 380, 800])))
            amount = rng.choice(["n/a", -1, -1.0, "-1.00", None, "", float(rng.normal(100, 50)),
                                 f"{rng.normal(100, 50):.2f}", int(rng.integers(0, 500))])  # fmt: skip
            events.append({
                "when": day.strftime(fmt) if fmt else day.strftime("%Y-%m-%d"),
                "amount": amount.item() if isinstance(amount, np.generic) else amount,
                "late": float(rng.integers(0, 60)),
                "kind": str(rng.choice(["tax", "court", "?", " tax ", "ip"])),
            })  # fmt: skip
        applied.append(app.strftime("%Y-%m-%d"))
        cells.append(events)
    return applied, cells


@pytest.mark.parametrize(
    "fmt, source",
    [
        (None, {"windows": [3, 12], "sequence": 3}),
        ("%d/%m/%Y", {"windows": [1, 6, 24], "max_events": 5, "lookback_months": 18}),
        (None, {"windows": [12], "stats": ["count", "mean", "slope", "last"], "sequence": 2}),
    ],
)
def test_numpy_inputs_equal_duckdbs_on_random_books(fmt, source):
    rng = np.random.default_rng(7)
    history = _history(fmt, **source)
    applied, cells = _random_cells(rng, 40, fmt)
    con = connect()
    app = parse_dates(con, pd.Series(applied), None, "applied", pd.Series(range(40)), "x")
    fast = history_rows.inputs(history, app, {"ev": cells})
    slow = history._duckdb(con, app, {"ev": cells})
    assert fast is not None and fast.shape == slow.shape == (40, len(history.feature_names()))
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert np.isfinite(slow).any() and np.isnan(slow).any()  # both kinds of value were compared


@pytest.mark.parametrize(
    "field, value",
    [("when", "1/2/2021"), ("when", "2021-1-1"), ("amount", "0x10"), ("amount", "1_000"),
     ("amount", "nan"), ("amount", True), ("amount", float("inf"))],
)  # fmt: skip
def test_a_value_only_duckdb_reads_goes_to_duckdb(field, value):
    history = _history("%d/%m/%Y" if field == "when" and "/" in value else None)
    event = {"when": "01/02/2021" if history.sources[0].time_format else "2021-02-01",
             "amount": 5, "late": 1, "kind": "tax", field: value}  # fmt: skip
    app = np.array(["2021-06-01"], dtype="datetime64[us]")
    assert history_rows.inputs(history, app, {"ev": [[event]]}) is None
    frame = pd.DataFrame({"applied": ["2021-06-01"], "ev": [[event]]})
    try:
        served = history.from_request(connect(), frame)
    except DataError as e:  # DuckDB names what it cannot read
        assert "ev" in str(e)
    else:
        assert served["ev.count_24m"].iloc[0] == 1  # read, and counted


def test_a_request_of_many_loans_goes_to_duckdb_with_the_same_result():
    rng = np.random.default_rng(3)
    history = _history(None, windows=[6], sequence=2)
    applied, cells = _random_cells(rng, history_rows_limit() + 4, None)
    frame = pd.DataFrame({"applied": applied, "ev": cells})
    many = history.from_request(connect(), frame)
    few = pd.concat([history.from_request(connect(), frame.iloc[[i]]) for i in range(len(frame))])
    names = history.feature_names()
    np.testing.assert_allclose(many[names], few[names], rtol=1e-9, equal_nan=True)


def history_rows_limit() -> int:
    from training.data.history import FEW

    return FEW
