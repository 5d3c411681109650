"""Portfolio scoring, the driver: a registered model's outputs for every row of a book, by rank.

Each rank scores its own chunks (``books.py``) and writes one part per chunk; rank 0 gathers the
counts into a summary that is the same for any number of ranks, with drift against training
(``drift.py``), logs the scoring run and writes the summary beside the output. No rank holds the
portfolio: a rank holds one chunk at a time, and one float per row it scored (the score, for the
summary's histogram). MLflow stays out of this wing: the model comes from
``training.tracking.registry`` and the run goes through ``training.tracking.tracker``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.metrics import bin_counts, psi_of_shares
from training.runtime.dist import DistContext, agree
from training.scoring.books import (
    ROW,
    CsvInput,
    ParquetInput,
    check_columns,
    check_fresh,
    open_input,
    validate,
    write_part,
    write_summary,
)
from training.scoring.config import ScoreConfig
from training.scoring.drift import (
    feature_counts,
    gathered_feature_psi,
    reference_bins,
    usable_reference,
)
from training.tracking.config import TrackingConfig
from training.tracking.registry import ModelRef, ScoringModel, load_model, resolve
from training.tracking.tracker import open_run, tracking_uri

log = logging.getLogger("riskbrain")
HIST_BINS = 1000  # fine histogram of the scores (quantiles to 1/1000 of the range)
SUMMARY_BINS = 20  # the histogram the summary shows
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def score(cfg: ScoreConfig, ctx: DistContext) -> dict | None:
    """Score ``cfg.input`` with ``cfg.model`` on this rank; rank 0 returns the summary."""
    store = tracking_uri(TrackingConfig(uri=cfg.tracking_uri, experiment=cfg.experiment))
    paths = cfg.paths()
    # Rank 0 resolves the alias once: every rank loads the same version even if it moves now.
    ref = ctx.broadcast(agree(ctx, lambda: plan(cfg, paths, store) if ctx.is_main else None))
    model, source = agree(ctx, lambda: prepare(cfg, paths, ref, store))
    if ctx.is_main:
        paths["output"].mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    total = source.rows_of(ctx.rank, ctx.world_size) if isinstance(source, ParquetInput) else None
    progress = ScoringProgress(ctx, total)
    tally = score_shard(source, model, output=paths["output"], rejects=paths["rejects"],
                        keep=cfg.keep, ctx=ctx, progress=progress)  # fmt: skip
    progress.close(tally)
    summary = gather_summary(ctx, tally, model)
    if ctx.is_main:
        publish(summary, cfg, paths, store)
    ctx.barrier()  # no rank returns before rank 0 has logged the run
    return summary


def plan(cfg: ScoreConfig, paths: dict[str, Path], store: str) -> ModelRef:
    """Rank 0, before anything is written: fresh output places, the model version pinned."""
    check_fresh(paths["output"], paths["rejects"], paths["summary"])
    return resolve(cfg.model, store)


def prepare(cfg: ScoreConfig, paths: dict[str, Path], ref: ModelRef, store: str):
    """Every rank: the pinned model, and the input, checked against the model's columns."""
    model = load_model(ref, store, cfg.reasons)
    source = open_input(paths["input"], cfg.chunk_rows, cfg.sep)
    check_columns(source.columns, model, cfg.keep)
    return model, source


def publish(summary: dict, cfg: ScoreConfig, paths: dict[str, Path], store: str) -> None:
    """Rank 0: the scoring run in MLflow, the summary beside the output, and where it all went."""
    summary["paths"] = {k: str(v) for k, v in paths.items()}
    summary["settings"] = {"reasons": cfg.reasons, "chunk_rows": cfg.chunk_rows,
                           "keep": ",".join(cfg.keep), "launcher": cfg.launcher}  # fmt: skip
    summary["experiment"] = cfg.experiment
    summary["mlflow_run_id"] = log_scoring_run(
        summary, tracking_uri=store, experiment=cfg.experiment
    )
    write_summary(summary, paths["summary"])
    print(describe(summary), flush=True)


# ---------------------------------------------------------------------------------------------
# One batch, and a rank's share: its chunks, one part each


def score_batch(
    frame: pd.DataFrame, start: int, model: ScoringModel, keep: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(output rows, reject lines) of one batch whose first row is input row ``start``.

    Output columns: ``row`` (int64), the ``keep`` columns, then every column ``predict`` returns.
    """
    frame = frame.set_axis(pd.RangeIndex(start, start + len(frame)), axis=0)
    ready, rejects = validate(frame, model.inputs, model.sources, model.dates)
    if ready.empty:
        return pd.DataFrame(), rejects
    pred = model.predict(ready[list(model.inputs)])
    if len(pred) != len(ready):
        raise RuntimeError(f"the model returned {len(pred)} rows for {len(ready)}")
    ids = pd.DataFrame({ROW: ready.index.to_numpy(np.int64)})
    kept = frame.loc[ready.index, keep].reset_index(drop=True)
    return pd.concat([ids, kept, pred.reset_index(drop=True)], axis=1), rejects


@dataclass
class Tally:
    """What one rank scored: counts, the time, and the summarised column's values."""

    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    chunks: int = 0
    seconds: float = 0.0
    rejected_by_column: Counter = field(default_factory=Counter)
    values: list[np.ndarray] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # scored rows per training bin

    def add_features(self, counts: dict[str, np.ndarray]) -> None:
        for name, c in counts.items():
            self.features[name] = self.features.get(name, 0) + c

    def add(self, out: pd.DataFrame, rejects: pd.DataFrame, column: str) -> None:
        self.rows_scored += len(out)
        self.rows_rejected += len(rejects)
        self.rows_read += len(out) + len(rejects)
        if len(rejects):
            for cols in rejects["column"]:
                self.rejected_by_column.update(cols.split("; "))
        if len(out) and column in out:
            self.values.append(out[column].to_numpy(np.float64))

    def scores(self) -> np.ndarray:
        x = np.concatenate(self.values) if self.values else np.empty(0)
        return x[np.isfinite(x)]


def score_shard(
    source: CsvInput | ParquetInput,
    model: ScoringModel,
    *,
    output: Path,
    rejects: Path,
    keep: list[str],
    ctx: DistContext,
    progress: ScoringProgress,
) -> Tally:
    """Score this rank's chunks (chunk c when c % world_size == rank), one output part each."""
    tally, t0 = Tally(), time.perf_counter()
    for chunk in source.chunks(ctx.rank, ctx.world_size):
        t_chunk, outs, bads, start = time.perf_counter(), [], [], chunk.start
        for frame in chunk.frames:
            out, bad = score_batch(frame, start, model, keep)
            if model.feature_reference and len(out):
                scored = frame.iloc[out[ROW].to_numpy() - start]
                if model.computed is not None:  # the inputs computed from event histories
                    scored = model.computed(scored)
                tally.add_features(feature_counts(scored, model.feature_reference))
            start += len(frame)
            outs.append(out)
            bads.append(bad)
            progress.advance(len(frame))
        out = pd.concat([o for o in outs if len(o)] or [pd.DataFrame()], ignore_index=True)
        bad = pd.concat([b for b in bads if len(b)] or [pd.DataFrame()], ignore_index=True)
        if len(out):
            write_part(out, output, f"part-{chunk.index:06d}.parquet")
        if len(bad):
            write_part(bad, rejects, f"rejects-{chunk.index:06d}.csv")
        tally.add(out, bad, model.score_column)
        tally.chunks += 1
        progress.chunk_done(chunk.index, len(out), len(bad), time.perf_counter() - t_chunk)
    tally.seconds = time.perf_counter() - t0
    return tally


class ScoringProgress:
    """A live bar on rank 0 in a terminal; otherwise one log line per chunk, from every rank."""

    def __init__(self, ctx: DistContext, total: int | None, enabled: bool | None = None) -> None:
        self.who = f"rank {ctx.rank}/{ctx.world_size}"
        self.enabled = (sys.stderr.isatty() and ctx.is_main) if enabled is None else enabled
        self.t0, self.bar, self.task = time.perf_counter(), None, None
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn(f"scoring ({self.who})"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.bar.add_task("score", total=total, rate="-")
            self.bar.start()

    def advance(self, rows: int) -> None:
        if self.bar is not None:
            task = self.bar.tasks[0]
            rate = (task.completed + rows) / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, advance=rows, rate=f"{rate:,.0f}")

    def chunk_done(self, c: int, scored: int, rejected: int, seconds: float) -> None:
        if self.bar is None:
            rate = (scored + rejected) / max(seconds, 1e-9)
            log.info(
                "%s chunk %d: %s rows scored, %d rejected, %s rows/s",
                self.who,
                c,
                f"{scored:,}",
                rejected,
                f"{rate:,.0f}",
            )

    def close(self, tally: Tally) -> None:
        if self.bar is not None:
            self.bar.stop()
        log.info(
            "%s done: %s rows scored, %s rejected in %d chunks, %.1f s, %s rows/s",
            self.who,
            f"{tally.rows_scored:,}",
            f"{tally.rows_rejected:,}",
            tally.chunks,
            tally.seconds,
            f"{tally.rows_read / max(tally.seconds, 1e-9):,.0f}",
        )


# ---------------------------------------------------------------------------------------------
# The summary: gathered to rank 0, the same for any number of ranks


def gather_summary(ctx: DistContext, tally: Tally, model: ScoringModel) -> dict | None:
    """Counts, the score distribution and PSI over every rank (rank 0's copy; None elsewhere).

    Ranks share only counts: a histogram of ``HIST_BINS`` bins over the global range of the
    scores and the counts in the reference's bins, so the summary is the same for any number
    of ranks (quantiles are read from the histogram, to 1/HIST_BINS of the range).
    """
    scores = tally.scores()
    ranges = ctx.allgather((float(scores.min()), float(scores.max())) if len(scores) else None)
    ranges = [r for r in ranges if r is not None]
    bounds = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else (0.0, 1.0)
    ranks = ctx.allgather(rank_counts(tally, model, bounds))
    return summarize(ranks, model, bounds) if ctx.is_main else None


def rank_counts(tally: Tally, model: ScoringModel, bounds: tuple[float, float]) -> dict:
    """What a rank sends to rank 0: its counts, and its scores binned over the global ``bounds``."""
    scores, (lo, hi) = tally.scores(), bounds
    hist, _ = np.histogram(scores, bins=HIST_BINS, range=(lo, hi if hi > lo else lo + 1.0))
    reference, _ = usable_reference(model)
    ref_counts = bin_counts(reference_bins(reference)[0], scores) if reference else None
    return {
        "rows_read": tally.rows_read,
        "rows_scored": tally.rows_scored,
        "rows_rejected": tally.rows_rejected,
        "chunks": tally.chunks,
        "seconds": tally.seconds,
        "rejected_by_column": dict(tally.rejected_by_column),
        "hist": hist,
        "ref_counts": ref_counts,
        "sum": float(scores.sum()),
        "features": tally.features,
    }


def summarize(ranks: list[dict], model: ScoringModel, bounds: tuple[float, float]) -> dict:
    """Rank 0's summary from every rank's ``rank_counts``."""
    reference, note = usable_reference(model)
    total = {k: sum(r[k] for r in ranks) for k in ("rows_read", "rows_scored", "rows_rejected")}
    seconds = max(r["seconds"] for r in ranks)
    by_column = sum((Counter(r["rejected_by_column"]) for r in ranks), Counter())
    hist = np.sum([r["hist"] for r in ranks], axis=0)
    column, n = model.score_column, int(hist.sum())
    distribution = _distribution(hist, bounds, sum(r["sum"] for r in ranks), n)
    psi: dict = {"column": column, "value": None, "note": note}
    if reference is not None:
        counts = np.sum([r["ref_counts"] for r in ranks], axis=0)
        psi["value"] = psi_of_shares(reference_bins(reference)[1], counts)
        psi["actual_shares"] = (counts / max(counts.sum(), 1)).tolist()
        psi["expected_shares"] = list(reference["shares"])
    notes = list(model.notes) + ([note] if note else [])
    if column != "score":
        notes.append("the model returns no `score` column: the distribution is of `pd`")
    return {
        "model": asdict(model.ref),
        "world_size": len(ranks),
        **total,
        "chunks": sum(r["chunks"] for r in ranks),
        "seconds": seconds,
        "rows_per_s": total["rows_read"] / max(seconds, 1e-9),
        "rejected_by_column": dict(sorted(by_column.items())),
        "distribution": {"column": column, **distribution},
        "psi": psi,
        "feature_psi": gathered_feature_psi(ranks, model),
        "notes": notes,
    }


def _distribution(hist: np.ndarray, bounds: tuple[float, float], total: float, n: int) -> dict:
    """Mean, range, quantiles (read from the fine histogram) and a ``SUMMARY_BINS``-bin histogram."""
    if n == 0:
        return {"n": 0}
    lo, hi = bounds
    edges = np.linspace(lo, hi, len(hist) + 1)
    cum = np.concatenate([[0], np.cumsum(hist)])
    qs = np.interp(np.asarray(QUANTILES) * n, cum, edges)
    coarse = hist.reshape(SUMMARY_BINS, -1).sum(axis=1)
    return {
        "n": n,
        "mean": total / n,
        "min": float(lo),
        "max": float(hi),
        "quantiles": {
            f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs, strict=True)
        },
        "histogram": {
            "edges": np.linspace(lo, hi, SUMMARY_BINS + 1).tolist(),
            "counts": coarse.astype(int).tolist(),
        },
    }


# ---------------------------------------------------------------------------------------------
# Rank 0: where it went


def log_scoring_run(summary: dict, *, tracking_uri: str | None, experiment: str) -> str | None:
    """The scoring run in MLflow: params, counts and PSI, tags naming the model version, and the
    summary as ``summary.json``; returns its run id."""
    ref = summary["model"]
    name = f"score-{ref['name']}-v{ref['version']}" if ref["name"] else "score"
    with open_run(TrackingConfig(uri=tracking_uri, experiment=experiment), name=name) as tracker:
        tracker.log_params(
            {
                "model_uri": ref["uri"],
                "model_pinned_uri": ref["pinned"],
                **summary["paths"],
                **summary["settings"],
                "world_size": summary["world_size"],
            }
        )
        metrics = {k: summary[k] for k in ("rows_scored", "rows_rejected", "rows_per_s")}
        if summary["psi"]["value"] is not None:
            metrics[f"psi_{summary['psi']['column']}"] = summary["psi"]["value"]
        for name, drift in summary.get("feature_psi", {}).items():  # characteristic stability
            metrics[f"psi_feature.{re.sub(r'[^0-9A-Za-z_.-]+', '_', name)}"] = drift["psi"]
        tracker.log_metrics(metrics)
        tags = {
            "kind": "scoring",
            "model_name": ref["name"],
            "model_version": ref["version"],
            "model_run_id": ref["run_id"],
        }
        tracker.set_tags({k: v for k, v in tags.items() if v is not None})
        tracker.log_dict(summary, "summary.json")
        return tracker.run_id


def describe(summary: dict) -> str:
    """What rank 0 prints at the end: the counts and where everything went."""
    paths, psi = summary["paths"], summary["psi"]
    psi_text = f"{psi['value']:.4f}" if psi["value"] is not None else "skipped"
    lines = [
        f"scored {summary['rows_scored']:,} rows, rejected {summary['rows_rejected']:,}, "
        f"in {summary['seconds']:.1f} s ({summary['rows_per_s']:,.0f} rows/s, "
        f"{summary['world_size']} rank(s)); PSI of {psi['column']}: {psi_text}",
        f"scores:  {paths['output']}  (pd.read_parquet reads the parts in input order)",
        f"rejects: {paths['rejects']}" + ("" if summary["rows_rejected"] else "  (none)"),
        f"summary: {paths['summary']}",
    ]
    if summary.get("mlflow_run_id"):
        lines.append(
            f"mlflow:  run {summary['mlflow_run_id']} in experiment {summary['experiment']!r}"
        )
    return "\n".join(lines + [f"note: {n}" for n in summary["notes"]])
