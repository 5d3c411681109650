"""Shared pieces: synthetic tensors shaped like the SME data, models, interleaved timing, figures."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from training.data.tensors import Tensors
from training.models.build import build_model
from training.models.config import MLPConfig

ROOT = Path(__file__).resolve().parents[1]

# The synthetic SME data after preprocessing: 29 numeric columns and three categoricals (one-hot
# in the MLP). Timing does not depend on the values, so random tensors of these shapes stand in.
N_NUM = 29
CAT_CARDINALITIES = [11, 13, 6]
BATCH = 512  # optim.batch_size in configs/train.yaml

# model.d_block, model.n_blocks -> 147k parameters (the default MLP) and 1.03M (about 4 MB)
MODEL_SIZES = {"default": (256, 3), "1M": (576, 4)}


def synthetic_tensors(n: int, seed: int = 0, offset: int = 0, total: int = -1) -> Tensors:
    """n random rows; ``offset``/``total`` place them as one rank's shard of a larger split."""
    g = torch.Generator().manual_seed(seed)
    x_cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CAT_CARDINALITIES], 1)
    y = (torch.rand(n, generator=g) < 0.05).float()  # a default rate of about 5 %
    return Tensors(torch.randn(n, N_NUM, generator=g), x_cat, y, offset, total)


def build_mlp(size: str = "default", seed: int = 0) -> nn.Module:
    """The project's MLP through ``build_model``; the same seed gives the same weights on every rank."""
    d_block, n_blocks = MODEL_SIZES[size]
    torch.manual_seed(seed)
    cfg = MLPConfig(d_block=d_block, n_blocks=n_blocks)
    return build_model(cfg, n_num=N_NUM, cat_cardinalities=CAT_CARDINALITIES, base_rate=0.05)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def interleave(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each variant per repeat; each callable times its own work and returns seconds.

    One untimed warm-up round, then the order alternates (A B, B A, ...) so that slow drift in a
    noisy machine (other load, frequency changes) falls on every variant alike.
    """
    for run in variants.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(repeats):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(variants[name]())
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over repeats of num / den within a repeat: the two ran back to back, so a burst of
    other work on the machine falls on both sides of one ratio rather than skewing one median."""
    return median([a / b for a, b in zip(num, den, strict=True)])


def figure(
    name: str, value: float | None, goal: str | None, what: str, unit: str = "x", **detail
) -> dict:
    """One reported number; ``goal`` is ``"<= 1.05"`` or ``">= 10"``, or None (reported only)."""
    passed = None
    if goal is not None and value is not None:
        op, bound = goal.split()
        passed = value <= float(bound) if op == "<=" else value >= float(bound)
    return {"name": name, "value": value, "unit": unit, "goal": goal, "passed": passed} | {
        "what": what,
        **detail,
    }


def mpirun_cmd(n: int, oversubscribe: bool = True) -> list[str]:
    """``mpirun -n N`` from this environment; as root Open MPI needs --allow-run-as-root.
    Inside a Slurm allocation pass ``oversubscribe=False``: with it, Open MPI may put every rank
    on the first node instead of following the allocation's tasks per node. There the ranks are
    not bound to cores, as ``slurm/train_mpi.sbatch`` starts them: Open MPI binds each node's
    first rank to that node's core 0, and nodes that share a host (the namespace nodes of
    ``.ci/slurm.sh``) then put every rank on one core (two-node weak scaling 0.20 bound, 0.85
    unbound: docs/benchmarks.md)."""
    local = Path(sys.executable).parent / "mpirun"
    cmd = [str(local) if local.exists() else "mpirun", "-n", str(n)]
    cmd += ["--oversubscribe"] if oversubscribe else ["--bind-to", "none"]
    return cmd[:1] + (["--allow-run-as-root"] if os.geteuid() == 0 else []) + cmd[1:]


# The command that places n ranks: nothing (this machine), or e.g. ``salloc`` on n nodes.
Placement = Callable[[int], list[str]]


def hosts(comm) -> list[str]:
    """Each rank's host, in rank order (a collective): where the ranks really ran."""
    return comm.allgather(socket.gethostname())


def run_ranks(
    n: int, module: str, args: list[str], timeout_s: float, place: Placement | None = None
) -> dict:
    """Start ``python -m module`` as n MPI ranks (inside ``place(n)``'s allocation, if given);
    returns the JSON line rank 0 printed last."""
    launch = place(n) + mpirun_cmd(n, oversubscribe=False) if place else mpirun_cmd(n)
    cmd = launch + [sys.executable, "-m", module, *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{tail}")
    return json.loads(lines[-1])
