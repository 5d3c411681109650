"""Memory you can predict: the real job on a Parquet book (``jobs.make_portfolio``), 1 and 2 ranks.

For each run, per rank: the size of its model-ready tensors, its peak RSS when the data is ready
and over the whole run, time from process start to the first training step, and training rows/s
per core (one thread per rank). The fixed overhead is the same job's peak RSS on a tiny book
(interpreter, torch, pandas, pyarrow, MLflow and the capped preprocessing sample), so the goal
reads: peak RSS per rank <= 1.5 x its tensors + that overhead.

    python -m benchmarks.memory                         # 10M rows (writes the book once)
    python -m benchmarks.memory --rows 2000000 --book /tmp/book-2m

Writes benchmarks/memory_results.json; the table goes in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "memory_results.json"
MPIRUN = [str(Path(sys.executable).parent / "mpirun"), "--oversubscribe"] + (
    ["--allow-run-as-root"] if os.geteuid() == 0 else []
)
READY = re.compile(
    r"rank (\d+)/\d+: data ready ([\d.]+) s after start; model-ready tensors (\d+) MiB; peak RSS (\d+) MiB"
)
FIRST = re.compile(r"rank (\d+)/\d+: first step ([\d.]+) s after start")


def make_book(path: Path, rows: int) -> None:
    if path.exists():
        return
    cmd = [sys.executable, "-m", "jobs.make_portfolio", f"n_rows={rows}", f"output={path}"]
    subprocess.run(cmd, cwd=ROOT, check=True)


def run(book: Path, ranks: int, epochs: int) -> dict:
    """One real job (1 thread per rank), its per-rank figures from its log and MLflow metrics."""
    with tempfile.TemporaryDirectory(prefix="rb-memory-") as tmp:
        cmd = [*MPIRUN, "-n", str(ranks)] if ranks > 1 else []
        cmd += [sys.executable, "-m", "jobs.train", "data=portfolio", f"data.path={book}",
                f"trainer.max_epochs={epochs}", "benchmark.enabled=false", "registry.register=false",
                "launcher.threads=1", f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"hydra.run.dir={tmp}/run"]  # fmt: skip
        cmd += ["launcher=mpi"] if ranks > 1 else []
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{log[-4000:]}")
        metrics = _metrics(Path(tmp) / "mlflow.db")
    ready = {int(r): (float(s), int(t), int(m)) for r, s, t, m in READY.findall(log)}
    first = {int(r): float(s) for r, s in FIRST.findall(log)}
    per_rank = []
    for r in range(ranks):
        seconds, tensors, rss_ready = ready[r]
        rows_per_s = metrics["rows_per_s" if ranks == 1 else f"rows_per_s_rank{r}"]
        per_rank.append({"rank": r, "tensors_mib": tensors, "peak_rss_ready_mib": rss_ready,
                         "peak_rss_run_mib": metrics[f"peak_rss_mib_rank{r}"], "data_ready_s": seconds,
                         "first_step_s": first[r], "rows_per_s_per_core": rows_per_s})  # fmt: skip
    return {"ranks": ranks, "book": str(book), "wall_s": wall, "per_rank": per_rank}


def _metrics(db: Path) -> dict[str, float]:
    import sqlite3

    with sqlite3.connect(db) as con:
        return dict(con.execute("select key, value from latest_metrics").fetchall())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--book", type=Path, default=Path(tempfile.gettempdir()) / "riskbrain-book")
    p.add_argument("--epochs", type=int, default=1)
    args = p.parse_args()
    book = args.book.with_name(f"{args.book.name}-{args.rows}")
    tiny = args.book.with_name(f"{args.book.name}-20000")
    make_book(book, args.rows)
    make_book(tiny, 20_000)
    overhead = run(tiny, 1, 1)["per_rank"][0]["peak_rss_run_mib"]
    runs = [run(book, n, args.epochs) for n in (1, 2)]
    for r in runs:
        for rank in r["per_rank"]:
            rank["ratio"] = (rank["peak_rss_run_mib"] - overhead) / rank["tensors_mib"]
    out = {"date": str(date.today()), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "rows": args.rows, "fixed_overhead_mib": overhead, "runs": runs}  # fmt: skip
    RESULTS.write_text(json.dumps(out, indent=2))
    print(markdown(out))


def markdown(out: dict) -> str:
    lines = [
        f"{out['rows']:,}-row Parquet book, {out['date']}, {out['machine']}; fixed overhead "
        f"(the same job on a 20,000-row book) {out['fixed_overhead_mib']:.0f} MiB.",
        "",
        "| ranks | rank | tensors (MiB) | peak RSS, data ready (MiB) | peak RSS, whole run (MiB) "
        "| (peak - overhead) / tensors | time to first step (s) | rows/s per core |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out["runs"]:
        for k in r["per_rank"]:
            lines.append(
                f"| {r['ranks']} | {k['rank']} | {k['tensors_mib']} | {k['peak_rss_ready_mib']} | "
                f"{k['peak_rss_run_mib']:.0f} | {k['ratio']:.2f} | {k['first_step_s']:.1f} | "
                f"{k['rows_per_s_per_core']:,.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
