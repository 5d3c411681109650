"""Sweep benchmark: ASHA + TPE against random search with the same trial budget, on Taiwan.

    python -m benchmarks.sweep_search [--trials 12] [--out benchmarks/sweep_results.json]

Both sweeps run ``python -m jobs.sweep sweep=mlp data=taiwan`` with the same budget and
concurrency; reported: wall time, time until the final best validation AUC was first reached,
the best validation AUC, and the test AUC of the model each sweep registered.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_sweep(work: Path, name: str, trials: int, epochs: int, search: str, scheduler: str) -> dict:
    sweep_dir = work / name
    cmd = [
        sys.executable,
        "-m",
        "jobs.sweep",
        "sweep=mlp",
        "data=taiwan",
        f"sweep.name={name}",
        f"sweep.search={search}",
        f"sweep.scheduler={scheduler}",
        f"sweep.num_samples={trials}",
        "sweep.max_concurrent=2",
        f"trainer.max_epochs={epochs}",
        f"trainer.patience={epochs}",
        f"tracking.uri=sqlite:///{work}/mlflow.db",
        f"registry.name=bench-{name}",
        f"hydra.run.dir={sweep_dir}",
    ]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        return {"name": name, "error": (proc.stdout + proc.stderr)[-2000:]}
    rows = list(csv.DictReader((sweep_dir / "trials.csv").read_text().splitlines()))
    done = sorted((r for r in rows if r["finished_at"]), key=lambda r: float(r["finished_at"]))
    best = max(float(r["objective"]) for r in done)
    first_best = next(
        float(r["finished_at"]) for r in done if float(r["objective"]) >= best - 1e-12
    )
    report = json.loads((sweep_dir / "sweep.json").read_text())
    best_trial = report["best"]["trial"]
    test_auc = json.loads((sweep_dir / "trials" / best_trial / "evaluation.json").read_text())[
        "test"
    ]["auc"]
    return {
        "name": name,
        "search": search,
        "scheduler": scheduler,
        "trials": len(rows),
        "pruned": sum(r["status"] == "pruned" for r in rows),
        "wall_s": round(wall, 1),
        "time_to_best_s": round(first_best - t0, 1),
        "best_valid_auc": round(best, 4),
        "test_auc_of_best": round(test_auc, 4),
        "epochs_trained": sum(int(r["epochs"]) for r in rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "sweep_results.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = [
            run_sweep(work, "asha_tpe", args.trials, args.epochs, "tpe", "asha"),
            run_sweep(work, "random", args.trials, args.epochs, "random", "none"),
        ]
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": __import__("os").cpu_count(),
        "trials": args.trials,
        "epochs": args.epochs,
        "results": results,
    }
    a, r = results
    if "error" not in a and "error" not in r:
        out["ratios"] = {
            "wall_time_asha_tpe_over_random": round(a["wall_s"] / r["wall_s"], 3),
            "time_to_best_asha_tpe_over_random": round(
                a["time_to_best_s"] / r["time_to_best_s"], 3
            ),
            "best_auc_difference": round(a["best_valid_auc"] - r["best_valid_auc"], 4),
        }
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
