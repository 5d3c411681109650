"""Measure riskbrain's training path against plain baselines: ``python -m benchmarks.run [--quick]``.

Each figure is a ratio to a baseline measured in the same run (interleaved repeats, medians);
results, with the machine they came from, go to a JSON file (``benchmarks/results.json``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks import data_path, fixed_cost, grad_sync, launchers, loop_overhead, scaling
from benchmarks.common import ROOT, mpirun_cmd


@dataclass(frozen=True)
class Settings:
    repeats: int  # interleaved repeats of the in-process comparisons (1, 2)
    loop_steps: int  # training steps per timed loop (1)
    data_rows: int  # rows per timed epoch of batches (2)
    sync_iters: int  # gradient syncs per timed block (3)
    sync_repeats: int  # timed blocks of each variant (3)
    scaling_rows: int  # training rows per rank (4)
    scaling_epochs: int  # epochs per launch, the first one not counted (4)
    scaling_repeats: int  # launches of each world size (4)
    job_rows: int  # data.n_rows of the end-to-end job (5)
    job_epochs: int  # trainer.max_epochs of the end-to-end job (5)
    job_repeats: int  # runs of each launcher (5)


FULL = Settings(
    repeats=9,
    loop_steps=150,
    data_rows=200_000,
    sync_iters=50,
    sync_repeats=9,
    scaling_rows=100_000,
    scaling_epochs=4,
    scaling_repeats=5,
    job_rows=60_000,
    job_epochs=3,
    job_repeats=3,
)
QUICK = Settings(
    repeats=3,
    loop_steps=30,
    data_rows=30_000,
    sync_iters=10,
    sync_repeats=3,
    scaling_rows=15_000,
    scaling_epochs=2,
    scaling_repeats=1,
    job_rows=20_000,
    job_epochs=2,
    job_repeats=1,
)


def benchmarks(s: Settings) -> dict[str, Callable[[], list[dict]]]:
    return {
        "loop_overhead": lambda: loop_overhead.measure(s.loop_steps, s.repeats),
        "data_path": lambda: data_path.measure(s.data_rows, s.repeats),
        "grad_sync": lambda: grad_sync.measure(s.sync_iters, s.sync_repeats),
        "weak_scaling": lambda: scaling.measure(
            s.scaling_rows, s.scaling_epochs, s.scaling_repeats
        ),
        "ray_vs_mpi": lambda: launchers.measure(s.job_rows, s.job_epochs, s.job_repeats),
        "fixed_cost": lambda: fixed_cost.measure(s.job_repeats),
    }


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()


def machine() -> dict:
    """Where the numbers came from (and which code): they mean little without it."""
    mpi = subprocess.run(mpirun_cmd(1)[:1] + ["--version"], capture_output=True, text=True)
    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_uncommitted": git("status", "--porcelain", "--untracked-files=no").splitlines(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mpi4py": importlib.metadata.version("mpi4py"),
        "mpi": (mpi.stdout.splitlines() or ["?"])[0],
        "ray": importlib.metadata.version("ray"),
        "gpu": torch.cuda.is_available(),
        "load_average_1_5_15min": os.getloadavg(),  # other work on the machine skews timings
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def run_all(s: Settings) -> tuple[list[dict], dict[str, str], dict[str, float]]:
    """Every benchmark in turn; one that fails is recorded and the others still run."""
    torch.set_num_threads(1)  # the in-process comparisons are one process, one thread
    figures, errors, seconds = [], {}, {}
    for name, measure in benchmarks(s).items():
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            figures += measure()
        except Exception as e:
            errors[name] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        seconds[name] = round(time.perf_counter() - t0, 1)
    return figures, errors, seconds


def table(figures: list[dict]) -> str:
    lines = [f"{'figure':<38} {'value':>9}  {'goal':<8} result"]
    for f in figures:
        value = "-" if f["value"] is None else f"{f['value']:.3f}{f['unit']}"
        result = {True: "pass", False: "MISS", None: "(reported)"}[f["passed"]]
        if f["value"] is None:
            result = "not measured: see the errors in the results JSON"
        lines.append(f"{f['name']:<38} {value:>9}  {f['goal'] or '':<8} {result}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small measurements (about 2 minutes)")
    p.add_argument("--out", type=Path, help="default: benchmarks/results[-quick].json")
    args = p.parse_args()
    # a smoke test must not overwrite the full run that docs/benchmarks.md quotes
    args.out = args.out or ROOT / "benchmarks" / (
        "results-quick.json" if args.quick else "results.json"
    )
    s = QUICK if args.quick else FULL
    at_start = machine()
    load = at_start["load_average_1_5_15min"][0]
    if load > 0.5:  # on a 2-core node even one busy process halves what a 2-rank run gets
        print(
            f"[bench] warning: load average {load:.1f}: other work will skew the timings",
            file=sys.stderr,
        )
    figures, errors, seconds = run_all(s)
    result = {
        "machine": at_start | {"load_average_at_end": os.getloadavg()},
        "mode": "quick" if args.quick else "full",
        "settings": asdict(s),
        "seconds_per_benchmark": seconds,
        "figures": figures,
        "errors": errors,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(figures))
    print(f"wrote {args.out}" + (f"; failed: {', '.join(errors)}" if errors else ""))


if __name__ == "__main__":
    main()
