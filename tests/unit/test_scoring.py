"""Portfolio scoring without MLflow or MPI: chunks, validation, parts, 1 vs 2 ranks, summary, PSI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.errors import ConfigError, DataError
from training.metrics import psi
from training.runtime.dist import Agreed, DistContext, agree
from training.scoring.books import (
    CsvInput,
    ParquetInput,
    check_columns,
    check_fresh,
    open_input,
    validate,
    write_part,
)
from training.scoring.drift import psi_against
from training.scoring.portfolio import (
    ScoringProgress,
    Tally,
    rank_counts,
    score_batch,
    score_shard,
    summarize,
)
from training.tracking.registry import ModelRef, ScoringModel

INPUTS = {"x": "double", "y": "double", "k": "string"}


def _predict(frame: pd.DataFrame) -> pd.DataFrame:
    """A stand-in model: PD from x and y (missing y reads as 0), a score and one reason."""
    assert frame["x"].dtype == np.float64 and frame["y"].dtype == np.float64
    z = frame["x"] + frame["y"].fillna(0.0)
    pd_ = 1 / (1 + np.exp(-z.to_numpy()))
    return pd.DataFrame(
        {"pd": pd_, "score": np.round(600 - 50 * z.to_numpy()), "reason_1": frame["k"].fillna("?")}
    )


def _model(reference: dict | None = None, outputs=("pd", "score", "reason_1")) -> ScoringModel:
    ref = ModelRef(uri="models:/m@a", pinned="models:/m/1", name="m", version="1", run_id="r")
    return ScoringModel(
        predict=_predict, inputs=INPUTS, outputs=list(outputs), ref=ref, score_reference=reference
    )


def _book(n: int = 23, bad: dict[int, tuple[str, str]] | None = None) -> pd.DataFrame:
    """n rows as text (as a CSV reads them), with ``bad`` {row: (column, value)} put in."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": [f"L{i:03d}" for i in range(n)],
            "x": rng.normal(size=n).round(3).astype(str),
            "y": np.where(rng.random(n) < 0.2, "", rng.normal(size=n).round(3).astype(str)),
            "k": rng.choice(["a", "b", ""], n),
        }
    )
    for row, (column, value) in (bad or {}).items():
        frame.loc[row, column] = value
    return frame


# ---------------------------------------------------------------------------------------------
# Chunks: fixed by the input, dealt round robin


def test_csv_chunks_are_fixed_blocks_dealt_round_robin(tmp_path):
    _book(10).to_csv(tmp_path / "b.csv", index=False)
    source = open_input(tmp_path / "b.csv", chunk_rows=3)
    assert isinstance(source, CsvInput) and source.columns == ["id", "x", "y", "k"]
    got = {r: [(c.index, c.start, c.rows) for c in source.chunks(r, 2)] for r in (0, 1)}
    assert got == {0: [(0, 0, 3), (2, 6, 3)], 1: [(1, 3, 3), (3, 9, 1)]}
    # the same chunks whatever the number of ranks
    alone = [(c.index, c.start, c.rows) for c in source.chunks(0, 1)]
    assert alone == sorted(got[0] + got[1])


def test_parquet_chunks_are_row_groups_read_in_batches(tmp_path):
    _book(10).to_parquet(tmp_path / "b.parquet", row_group_size=4)
    source = open_input(tmp_path / "b.parquet", chunk_rows=3)
    assert isinstance(source, ParquetInput)
    chunks = list(source.chunks(0, 2))
    assert [(c.index, c.start, c.rows) for c in chunks] == [(0, 0, 4), (2, 8, 2)]
    assert source.rows_of(0, 2) == 6 and source.rows_of(1, 2) == 4
    first = [len(f) for f in chunks[0].frames]
    assert first == [3, 1]  # a row group of 4 rows in batches of 3


def test_missing_input_is_named(tmp_path):
    with pytest.raises(ConfigError, match="input=.*nope.csv"):
        open_input(tmp_path / "nope.csv", chunk_rows=3)


# ---------------------------------------------------------------------------------------------
# Validation: bad numbers rejected with the column and the reason; missing values kept


def test_values_that_are_not_finite_numbers_reject_the_row_and_missing_values_do_not():
    frame = pd.DataFrame(
        {
            "x": ["1.5", "abc", "", None, "inf", " 2 ", "NA", "83.7%", "1e3"],
            "y": "0",
            "k": ["a", None, "b", "c", "d", "e", "f", "g", "h"],
        }
    ).set_axis(pd.RangeIndex(100, 109))
    ready, rejects = validate(frame, INPUTS)
    assert rejects["row"].tolist() == [101, 104, 107]
    assert rejects["column"].tolist() == ["x"] * 3
    assert rejects["value"].tolist() == ["abc", "inf", "83.7%"]
    assert rejects["reason"].tolist() == ["not a number", "not a finite number", "not a number"]
    assert rejects["x"].iloc[0] == "abc" and pd.isna(rejects["k"].iloc[0])  # the raw row follows
    assert ready.index.tolist() == [100, 102, 103, 105, 106, 108]
    assert ready["x"].dtype == np.float64 and ready["y"].dtype == np.float64
    np.testing.assert_array_equal(ready["x"], [1.5, np.nan, np.nan, 2.0, np.nan, 1000.0])
    assert ready["k"].tolist() == ["a", "b", "c", "e", "f", "h"]


def test_a_row_with_two_bad_values_is_one_reject_line():
    frame = pd.DataFrame({"x": ["x1", "1"], "y": ["y1", "2"], "k": ["a", "b"]})
    _, rejects = validate(frame, INPUTS)
    assert len(rejects) == 1
    line = rejects.iloc[0]
    assert (line["column"], line["value"]) == ("x; y", "x1; y1")


def test_typed_parquet_columns_pass_and_text_tokens_mean_missing():
    frame = pd.DataFrame(
        {"x": [1, 2, 3], "y": pd.array(["nan", "n/a", "4"], dtype=object), "k": ["a", "b", "c"]}
    )
    frame["k"] = frame["k"].astype("category")
    ready, rejects = validate(frame, INPUTS)
    assert rejects.empty and ready["x"].dtype == np.float64
    np.testing.assert_array_equal(ready["y"], [np.nan, np.nan, 4.0])
    assert ready["k"].tolist() == ["a", "b", "c"]


def test_score_batch_numbers_rows_keeps_columns_and_writes_every_output():
    out, rejects = score_batch(_book(6, {2: ("x", "bad")}), 60, _model(), keep=["id"])
    assert list(out.columns) == ["row", "id", "pd", "score", "reason_1"]
    assert out["row"].dtype == np.int64 and out["row"].tolist() == [60, 61, 63, 64, 65]
    assert out["id"].tolist() == ["L000", "L001", "L003", "L004", "L005"]
    assert rejects["row"].tolist() == [62]


# ---------------------------------------------------------------------------------------------
# Checks before anything is written


def test_a_missing_model_column_is_named():
    with pytest.raises(DataError, match="no column 'y'"):
        check_columns(["id", "x", "k"], _model(), keep=[])
    with pytest.raises(ConfigError, match="keep.*'loan'"):
        check_columns(["id", "x", "y", "k"], _model(), keep=["loan"])
    with pytest.raises(ConfigError, match=r"'score'\] would clash"):
        check_columns(["id", "x", "y", "k", "score"], _model(), keep=["score"])


def test_output_and_rejects_must_be_new(tmp_path):
    out, rej, summary = tmp_path / "o", tmp_path / "o.rejects", tmp_path / "o.summary.json"
    check_fresh(out, rej, summary)  # absent: fine
    out.mkdir()
    check_fresh(out, rej, summary)  # empty: fine
    (out / "part-000000.parquet").write_text("x")
    with pytest.raises(ConfigError, match="output="):
        check_fresh(out, rej, summary)
    (out / "part-000000.parquet").unlink()
    summary.write_text("{}")
    with pytest.raises(ConfigError, match="output=.*summary.json already exists"):
        check_fresh(out, rej, summary)


def test_a_part_is_written_whole_or_not_at_all(tmp_path):
    write_part(pd.DataFrame({"a": [1, 2]}), tmp_path, "part-000000.parquet")
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error: mixed types in a column
        write_part(pd.DataFrame({"a": [1, "x"]}), tmp_path, "part-000001.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-000000.parquet"]


# ---------------------------------------------------------------------------------------------
# One rank or two: the same output, the same rejects, the same summary


def _score(source, out: Path, world: int) -> list[Tally]:
    tallies = []
    for rank in range(world):
        ctx = DistContext(rank=rank, world_size=world)  # per-rank work: no collectives
        progress = ScoringProgress(ctx, total=None, enabled=False)
        tallies.append(
            score_shard(
                source,
                _model(),
                output=out,
                rejects=Path(f"{out}.rejects"),
                keep=["id"],
                ctx=ctx,
                progress=progress,
            )
        )
    return tallies


def _read(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rejects = sorted(Path(f"{out}.rejects").glob("*.csv"))
    return pd.read_parquet(out), pd.concat(pd.read_csv(p, dtype=str) for p in rejects)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_two_ranks_write_what_one_process_writes(tmp_path, kind):
    book = _book(23, {1: ("x", "abc"), 12: ("y", "-inf"), 22: ("x", "?")})
    path = tmp_path / f"book.{kind}"
    book.to_csv(path, index=False) if kind == "csv" else book.to_parquet(path, row_group_size=5)
    source = open_input(path, chunk_rows=5)
    one, two = _score(source, tmp_path / "one", 1), _score(source, tmp_path / "two", 2)
    (a, ra), (b, rb) = _read(tmp_path / "one"), _read(tmp_path / "two")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ra.reset_index(drop=True), rb.reset_index(drop=True))
    assert a["row"].tolist() == [r for r in range(23) if r not in (1, 12, 22)]
    assert ra["row"].tolist() == ["1", "12", "22"] and ra["column"].tolist() == ["x", "y", "x"]
    # each rank wrote its own chunks: chunk c by rank c % 2
    parts = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert parts == [f"part-{c:06d}.parquet" for c in range(5)]
    assert [t.chunks for t in two] == [3, 2] and sum(t.rows_read for t in two) == 23
    assert (one[0].rows_scored, one[0].rows_rejected) == (20, 3)
    model = _model()
    bounds = (min(t.scores().min() for t in two), max(t.scores().max() for t in two))
    s1 = summarize([rank_counts(one[0], model, bounds)], model, bounds)
    s2 = summarize([rank_counts(t, model, bounds) for t in two], model, bounds)
    for key in ("rows_read", "rows_scored", "rows_rejected", "rejected_by_column", "psi"):
        assert s1[key] == s2[key], key
    assert s1["distribution"]["histogram"] == s2["distribution"]["histogram"]
    assert s1["distribution"]["quantiles"] == s2["distribution"]["quantiles"]
    assert s1["distribution"]["mean"] == pytest.approx(s2["distribution"]["mean"])


def test_summary_counts_quantiles_and_notes():
    tally = Tally()
    frame = _book(400)
    out, bad = score_batch(frame, 0, _model(), keep=[])
    tally.add(out, bad, "score")
    scores = out["score"].to_numpy()
    bounds = (scores.min(), scores.max())
    s = summarize([rank_counts(tally, _model(), bounds)], _model(), bounds)
    assert s["rows_scored"] == 400 and s["distribution"]["column"] == "score"
    q = s["distribution"]["quantiles"]
    width = (bounds[1] - bounds[0]) / 1000
    assert q["p50"] == pytest.approx(np.quantile(scores, 0.5), abs=2 * width + 1)
    assert sum(s["distribution"]["histogram"]["counts"]) == 400
    assert s["psi"]["value"] is None and "no training-score reference" in s["psi"]["note"]
    # a model without a score column: the distribution of pd, said so
    pd_only = _model(outputs=("pd",))
    s = summarize([rank_counts(tally, pd_only, (0.0, 1.0))], pd_only, (0.0, 1.0))
    assert s["distribution"]["column"] == "pd" and any("`pd`" in n for n in s["notes"])


# ---------------------------------------------------------------------------------------------
# PSI against the model's training-score reference


def _reference(expected: np.ndarray, n_bins: int = 10) -> dict:
    """Quantile bins of ``expected`` as metrics.psi makes them, as a model would carry them."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, n_bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
    return {"edges": edges.tolist(), "shares": (counts / len(expected)).tolist()}


def test_psi_against_a_reference_equals_psi_against_the_sample():
    rng = np.random.default_rng(1)
    expected, actual = rng.normal(size=5000), rng.normal(0.3, 1.2, size=3000)
    ref = _reference(expected)
    assert psi_against(ref, actual) == pytest.approx(psi(expected, actual), rel=1e-12)
    assert psi_against(ref, expected) == pytest.approx(0.0, abs=1e-12)
    assert psi_against(ref, actual) > 0.05
    # edges with the outer bounds (np.histogram's form) give the same bins
    outer = {"edges": [-99.0, *ref["edges"], 99.0], "shares": ref["shares"]}
    assert psi_against(outer, actual) == psi_against(ref, actual)


def test_psi_in_the_summary_and_a_malformed_reference_skipped():
    rng = np.random.default_rng(2)
    train_scores = np.round(600 - 50 * rng.normal(size=4000))
    model = _model(reference=_reference(train_scores))
    tally = Tally()
    out, bad = score_batch(_book(300), 0, model, keep=[])
    tally.add(out, bad, "score")
    bounds = (tally.scores().min(), tally.scores().max())
    s = summarize([rank_counts(tally, model, bounds)], model, bounds)
    assert s["psi"]["value"] == pytest.approx(psi_against(model.score_reference, tally.scores()))
    assert len(s["psi"]["actual_shares"]) == len(s["psi"]["expected_shares"])
    broken = _model(reference={"edges": [1.0, 0.0], "shares": [0.5, 0.2, 0.3]})
    s = summarize([rank_counts(tally, broken, bounds)], broken, bounds)
    assert s["psi"]["value"] is None and "malformed" in s["psi"]["note"]
    with pytest.raises(DataError, match="malformed"):
        psi_against(broken.score_reference, tally.scores())


# ---------------------------------------------------------------------------------------------
# Ranks agree on errors


class _Others(DistContext):
    """Rank 0 of 2, whose other rank reports ``theirs`` from the step."""

    def __init__(self, theirs) -> None:
        super().__init__(rank=0, world_size=2)
        self.theirs = theirs

    def allgather(self, obj):
        return [obj, self.theirs]


def test_a_failure_on_any_rank_fails_every_rank():
    assert agree(DistContext(), lambda: 7) == 7
    with pytest.raises(Agreed, match="no column") as e:
        agree(DistContext(), lambda: check_columns(["x"], _model(), []))
    assert e.value.code == 2
    with pytest.raises(Agreed) as e:
        agree(DistContext(), lambda: 1 / 0)
    assert e.value.code == 1 and "ZeroDivisionError" in str(e.value)
    # this rank succeeded, the other did not: this one fails too, with the other's message
    with pytest.raises(Agreed, match="rank 1 says no"):
        agree(_Others(("rank 1 says no", 2)), lambda: 7)


def test_score_options_are_checked():
    from training.config import from_options
    from training.scoring.config import ScoreConfig

    base = ["model=models:/m@a", "input=a.csv", "output=o"]
    cfg = from_options(ScoreConfig, [*base, "keep=[id,branch]"])
    assert cfg.keep == ["id", "branch"] and cfg.reasons == 4 and cfg.launcher == "local"
    assert cfg.paths()["rejects"].name == "o.rejects"
    for bad in ("launcher=ray", "reasons=-1", "chunk_rows=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            from_options(ScoreConfig, [*base, bad])
    with pytest.raises(ConfigError, match="output"):
        from_options(ScoreConfig, base[:2])


def test_feature_psi_is_small_for_the_training_population_and_flags_a_shift():
    from training.data import synthetic
    from training.data.preprocess import feature_bins
    from training.scoring.drift import feature_counts, feature_psi

    train = synthetic.generate(20_000, seed=1).frame
    reference = feature_bins(train, synthetic.SCHEMA)
    same = synthetic.generate(20_000, seed=2).frame
    drift = feature_psi(reference, feature_counts(same, reference))
    assert set(drift) == set(synthetic.SCHEMA.names())
    assert all(d["psi"] < 0.02 and d["band"] == "stable" for d in drift.values()), drift
    shifted = same.assign(revenue=same["revenue"] * 5, region="nowhere")
    shifted.loc[::2, "vat_paid"] = np.nan  # half the rows lose their tax record
    moved = feature_psi(reference, feature_counts(shifted, reference))
    assert moved["revenue"]["band"] == moved["region"]["band"] == "major shift"
    assert moved["vat_paid"]["psi"] > 0.1
    assert list(moved)[:3] != list(drift)[:3] and moved["employees"]["band"] == "stable"
