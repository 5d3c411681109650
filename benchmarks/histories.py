"""Borrower histories (issue 24): the synthetic SME book of several tables, measured three ways.

1. Assembling histories, in process, one rank: events read and turned into inputs per second
   (``Book.assemble``: DuckDB's point-in-time join, window statistics and event slots) for all
   loans and for rank 0 of 2 (its own loans' events only); the baseline in the same run is the
   same book with statistics only (no event slots).
2. Quality: the real job (default recipe, the event network) on the book: test AUC against the
   Bayes-optimal AUC (the true PDs are known) and against LightGBM on the window statistics on
   the same split, calibration (ECE) of both, and per rank the model-ready tensors and peak RSS.
3. Serving: one borrower with 200 events and 4 reasons over HTTP (``mlflow models serve``), p50
   and p99; the baseline in the same run is the same model and borrower with no events.

    python -m benchmarks.histories                    # 200,000 loans (the book written once)
    python -m benchmarks.histories --loans 20000 --parts assembly,serving
    python -m benchmarks.histories --loans 600000 --parts quality --book /tmp/b  # 27.9M events

Writes benchmarks/histories_results.json (the parts run; the others keep their last figures);
the table goes in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.serving import _p, _wait, machine, stop

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "histories_results.json"
READY = re.compile(
    r"data ready ([\d.]+) s after start; model-ready tensors (\d+) MiB; peak RSS (\d+) MiB"
)
EVENTS = re.compile(r"source (\w+): (\d+) events of this shard's")
DEFAULT_LOANS = 200_000  # the book of the figures; another size's figures are kept beside them
GOALS = {"events_per_s": 1e6, "lift": 0.01, "bayes_gap": 0.01, "p50_ms": 30.0, "rss_ratio": 1.5}


def book(loans: int, folder: Path) -> Path:
    if not (folder / "loans.csv").exists():
        cmd = [sys.executable, "-m", "jobs.make_portfolio", "histories=true",
               f"n_rows={loans}", f"output={folder}"]  # fmt: skip
        subprocess.run(cmd, cwd=ROOT, check=True)
    return folder


def data_config(folder: Path, loans: int, sequence: bool = True):
    from omegaconf import OmegaConf

    from training.data.config import DataConfig

    yaml = OmegaConf.load(ROOT / "configs" / "data" / "sme_histories.yaml")
    yaml.root, yaml.n_rows = str(folder), loans
    if not sequence:
        for s in yaml.sources:
            s.sequence = 0
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), yaml))


def assembly(folder: Path, loans: int) -> dict:
    """Events/s of ``Book.assemble`` (one thread), all loans and rank 0's half, with and
    without event slots."""
    from training.data.book import Book
    from training.data.loaders import data_path, read_file
    from training.data.schema import Schema

    out = {}
    for name, sequence in (
        ("statistics only (baseline)", False),
        ("statistics + event slots", True),
    ):
        cfg = data_config(folder, loans, sequence)
        schema = Schema(features=list(cfg.features), target=cfg.target)
        raw = read_file(data_path(cfg), cfg, schema)
        t0 = time.perf_counter()
        b = Book(cfg, folder, raw, "loans.csv")
        setup = time.perf_counter() - t0
        for who, rows in (("1 rank", raw), ("rank 0 of 2", raw.iloc[: len(raw) // 2])):
            t0 = time.perf_counter()
            frame = b.assemble(rows, 0, "loans.csv")
            seconds = time.perf_counter() - t0
            events = sum(b.events_read.values())
            out[f"{name}, {who}"] = {
                "loans": len(rows), "events": int(events), "columns": frame.shape[1],
                "seconds": round(seconds, 2), "setup_seconds": round(setup, 2),
                "events_per_s": round(events / seconds),
            }  # fmt: skip
            print(name, who, out[f"{name}, {who}"], flush=True)
    return out


def quality(folder: Path, loans: int, tmp: Path, epochs: int) -> dict:
    """The real job on the book, its report and its memory."""
    cmd = [sys.executable, "-m", "jobs.train", "data=sme_histories", f"data.root={folder}",
           f"data.n_rows={loans}", f"trainer.max_epochs={epochs}", "registry.register=false",
           f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"hydra.run.dir={tmp}/quality"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr)[-4000:])
    report = json.loads((tmp / "quality" / "evaluation.json").read_text())
    ready = READY.search(proc.stdout + proc.stderr)
    events = {s: int(n) for s, n in EVENTS.findall(proc.stdout + proc.stderr)}
    gbdt = report["benchmark"]
    out = {
        "loans": loans, "events": sum(events.values()),
        "auc": report["test"]["auc"], "bayes_auc": report["bayes_auc_test"],
        "lightgbm_auc": gbdt["test"]["auc"], "ece": report["test"]["ece"],
        "lightgbm_ece": gbdt["test"]["ece"], "epochs": report["training"]["epochs_run"],
        "data_ready_s": float(ready.group(1)), "tensors_mib": int(ready.group(2)),
        "peak_rss_mib_at_data_ready": int(ready.group(3)), "wall_s": round(time.perf_counter() - t0),
    }  # fmt: skip
    out["lift"] = out["auc"] - out["lightgbm_auc"]
    out["bayes_gap"] = out["bayes_auc"] - out["auc"]
    print("quality", out, flush=True)
    return out


def serving(folder: Path, loans: int, tmp: Path, n: int = 200) -> dict:
    """One borrower with 200 events, 4 reasons, over HTTP; the same borrower without events."""
    import requests

    from training.runtime.process import free_port

    uri, name = f"sqlite:///{tmp}/mlflow.db", "bench-histories"
    cmd = [sys.executable, "-m", "jobs.train", "data=sme_histories", f"data.root={folder}",
           f"data.n_rows={loans}", "trainer.max_epochs=2", "benchmark.enabled=false",
           f"registry.name={name}", "registry.move_alias=true", f"tracking.uri={uri}",
           f"hydra.run.dir={tmp}/serving"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr)[-4000:])
    example = pd.read_parquet(tmp / "serving" / "tracking" / "files" / "input_example.parquet")
    row = json.loads(example.iloc[[0]].to_json(orient="records"))[0]
    sources = ["tax", "court", "ip", "penalties"]
    events = {s: json.loads(row[s]) for s in sources}
    # 200 events: the borrower's own, the tax filings repeated further back until there are 200
    have = sum(len(v) for v in events.values())
    tax = events["tax"] or [{"filed": row["applied"], "revenue": 1e5, "vat": 1.2e4, "days_late": 0}]
    while have < 200:
        events["tax"].append(dict(tax[have % len(tax)]))
        have += 1
    full = {**row, **{s: events[s] for s in sources}}
    empty = {**row, **{s: [] for s in sources}}
    bodies = {
        "200 events": json.dumps({"dataframe_records": [full], "params": {"reasons": 4}}),
        "no events (baseline)": json.dumps(
            {"dataframe_records": [empty], "params": {"reasons": 4}}
        ),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@challenger",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in bodies}
    try:
        _wait(f"{url}/ping", server, log)
        with requests.Session() as s:
            for i in range(20 + n):  # 20 warm-up calls, then interleaved
                for k, b in bodies.items():
                    t0 = time.perf_counter()
                    r = s.post(f"{url}/invocations", data=b,
                               headers={"Content-Type": "application/json"})  # fmt: skip
                    ms = (time.perf_counter() - t0) * 1e3
                    if r.status_code != 200 or "reason_4" not in r.json()["predictions"][0]:
                        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:500]}")
                    if i >= 20:
                        times[k].append(ms)
    finally:
        stop(server)
    out = {k: {"p50_ms": _p(v, 50), "p99_ms": _p(v, 99)} for k, v in times.items()}
    out["events"] = have
    print("serving", out, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loans", type=int, default=DEFAULT_LOANS)
    p.add_argument("--book", type=Path, default=None, help="where the book is (written once)")
    p.add_argument("--parts", default="assembly,quality,serving")
    p.add_argument("--epochs", type=int, default=40)
    args = p.parse_args()
    folder = book(args.loans, args.book or Path(tempfile.gettempdir()) / f"rb-book-{args.loans}")
    parts = args.parts.split(",")
    # The parts not run keep their figures (and the machine each ran on) from the last run.
    # A book of another size than the default keeps its figures beside the default's.
    out = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = {p: p if args.loans == DEFAULT_LOANS else f"{p}_{args.loans}_loans" for p in parts}
    out |= {"loans": DEFAULT_LOANS, "goals": GOALS}
    with tempfile.TemporaryDirectory(prefix="rb-histories-") as tmp:
        if "assembly" in parts:
            out[key["assembly"]] = assembly(folder, args.loans)
        if "quality" in parts:
            out[key["quality"]] = quality(folder, args.loans, Path(tmp), args.epochs)
        if "serving" in parts:  # a small model: its latency does not depend on the book's size
            small = book(20_000, Path(tmp) / "book-20000")
            out[key["serving"]] = serving(small, 20_000, Path(tmp))
    for part in parts:
        out[f"{key[part]}_machine"] = machine()
    RESULTS.write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
