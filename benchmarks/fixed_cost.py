"""The fixed cost of a job: CPU-seconds before its first training step, against a plain PyTorch
script's.

The job is ``python -m jobs.train debug=tiny`` on a new SQLite store, as a user's first job; it
logs ``first step ... (N CPU-seconds)`` (``training/core/loop.py``). The baseline, run
interleaved with it, is the least any PyTorch job pays: a script that imports torch, builds the
same small MLP and AdamW on random rows and takes one step. What the job pays beyond it is Hydra
and the config, reading and preprocessing the data, MLflow (the run is opened before the first
step, so that every epoch is logged), scikit-learn's metrics and the rest of riskbrain.

    python -m benchmarks.fixed_cost [--repeats 3] [--against CHECKOUT]

``--against`` times the same job from another checkout too (a git worktree of an earlier commit,
whose first-step line gives its CPU-seconds), interleaved with the others: the change's baseline
in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, figure, interleave, median, paired_ratio

FIRST_STEP = re.compile(r"first step [\d.]+ s after start \(([\d.]+) CPU-seconds\)")

# The floor: torch, an MLP of debug=tiny's size (2 blocks of 32), AdamW, one step (CPU-seconds
# at it).
PLAIN = """
import time, torch
torch.manual_seed(0)
block = lambda n: [torch.nn.Linear(n, 32), torch.nn.ReLU()]
model = torch.nn.Sequential(*block(32), *block(32), torch.nn.Linear(32, 1))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x, y = torch.randn(512, 32), torch.rand(512, 1).round()
loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
loss.backward()
opt.step()
print(time.process_time())
"""


def job_cpu_s(tmp: Path, name: str, timeout_s: float, checkout: Path = ROOT) -> float:
    """CPU-seconds of a tiny job of ``checkout``'s code, on a new store, up to its first step."""
    cmd = [sys.executable, "-m", "jobs.train", "debug=tiny", "registry.register=false",
           f"tracking.uri=sqlite:///{tmp}/{name}.db", f"hydra.run.dir={tmp}/{name}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=timeout_s)
    found = FIRST_STEP.search(proc.stdout + proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return float(found.group(1))


def plain_cpu_s(timeout_s: float) -> float:
    proc = subprocess.run([sys.executable, "-c", PLAIN], capture_output=True, text=True,
                          timeout=timeout_s, check=True)  # fmt: skip
    return float(proc.stdout.split()[-1])


def measure(repeats: int, timeout_s: float = 300, against: Path | None = None) -> list[dict]:
    """One untimed round (the first job migrates the MLflow store copied for new stores), then
    ``repeats`` interleaved rounds (``interleave``); ``against``: another checkout's job too."""
    with tempfile.TemporaryDirectory(prefix="riskbrain-fixed-") as tmp:
        jobs = itertools.count()  # each job its own store and run folder

        def job(checkout: Path = ROOT) -> float:
            return job_cpu_s(Path(tmp), f"job{next(jobs)}", timeout_s, checkout)

        variants = {"job": job, "plain": lambda: plain_cpu_s(timeout_s)}
        if against is not None:
            variants["against"] = lambda: job(against)
        runs = interleave(variants, repeats)
    cpu_s = {name: median(v) for name, v in runs.items()}
    out = [
        figure(
            "fixed_cost_vs_plain_torch",
            paired_ratio(runs["job"], runs["plain"]),
            None,
            "CPU-seconds before the first step: the tiny job (new SQLite store) / a plain "
            "PyTorch script (import torch, MLP, AdamW, one step)",
            cpu_s=cpu_s,
            runs=runs,
        )
    ]
    if against is not None:
        out.append(
            figure(
                "fixed_cost_vs_baseline",
                paired_ratio(runs["job"], runs["against"]),
                "<= 0.5",
                f"CPU-seconds before the first step: the tiny job / the same job at {against}",
                cpu_s=cpu_s,
            )
        )
    return out


def main() -> None:
    from benchmarks.run import machine, table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--against", type=Path, help="another checkout (a git worktree) to time too")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "fixed_cost_results.json")
    args = p.parse_args()
    result = {"machine": machine(), "against": str(args.against or ""),
              "figures": measure(args.repeats, against=args.against)}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result["figures"]))


if __name__ == "__main__":
    main()
