"""Weak scaling through the real ``fit``: 2 ranks x 1 thread vs 1 rank x 1 thread, same rows per rank.

Run by ``benchmarks.run`` as ``mpirun -n N python -m benchmarks.scaling``; rank 0 prints JSON.
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.common import (
    BATCH,
    Placement,
    build_mlp,
    figure,
    hosts,
    median,
    paired_ratio,
    run_ranks,
    synthetic_tensors,
)
from benchmarks.grad_sync import init_gloo
from training.core.config import OptimConfig, TrainerConfig
from training.core.loop import fit
from training.core.state import TrainState
from training.launch.mpi import MPIContext
from training.runtime.exit import run

GOAL = ">= 0.9"
VALID_ROWS = 2_000  # per rank; validation is outside the timed part of an epoch anyway


# ---- on each rank -------------------------------------------------------------------------------


def epoch_rows_per_s(row: dict[str, float], world_size: int) -> float:
    """Global rows/s of one epoch, judged by the slowest rank (every rank holds as many rows)."""
    if world_size == 1:
        return row["rows_per_s"]
    return world_size * min(row[f"rows_per_s_rank{r}"] for r in range(world_size))


def main() -> None:
    from mpi4py import MPI

    p = argparse.ArgumentParser()
    p.add_argument("--rows-per-rank", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--grad-sync", choices=["mpi", "torch"], default="mpi")
    args = p.parse_args()
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    if args.grad_sync == "torch":  # gloo over TCP, at a rendezvous rank 0 picks (as a job does)
        init_gloo(comm)
    ctx = MPIContext(comm, args.grad_sync, torch.device("cpu"), rank)
    n, nv = args.rows_per_rank, VALID_ROWS
    train = synthetic_tensors(n, seed=1 + rank, offset=rank * n, total=world * n)
    valid = synthetic_tensors(nv, seed=1000 + rank, offset=rank * nv, total=world * nv)
    optim = OptimConfig(batch_size=BATCH * world)  # the same per-rank batch for any world size
    trainer = TrainerConfig(max_epochs=args.epochs, patience=args.epochs)  # no early stop
    state = TrainState.create(build_mlp("default"), optim, seed=0)
    result = fit(state, train, valid, optim, trainer, ctx=ctx)
    history = result.history[1:]  # epoch 1 warms up (allocator, caches)
    out = {
        "world_size": world,
        "hosts": hosts(comm),
        "rows_per_s": [epoch_rows_per_s(h, world) for h in history],
        "sync_s_rank0": [h.get("sync_s_rank0", 0.0) for h in history],
        "train_s_rank0": [n / h.get("rows_per_s_rank0", h["rows_per_s"]) for h in history],
    }
    if rank == 0:
        print(json.dumps(out), flush=True)


# ---- in benchmarks.run --------------------------------------------------------------------------


def measure(
    rows_per_rank: int, epochs: int, repeats: int, timeout_s: float = 600,
    place: Placement | None = None, where: str = "", grad_sync: str = "mpi", goal: str = GOAL,
) -> list[dict]:  # fmt: skip
    """Launches of 1 and 2 ranks, alternating, paired by repeat; a launch's rows/s is its median
    epoch. Ranks run on this machine, or where ``place`` puts them (``where`` names the figure);
    their gradients are summed by ``grad_sync`` (mpi: mpi4py; torch: a gloo process group)."""
    args = [
        "--rows-per-rank",
        str(rows_per_rank),
        "--epochs",
        str(epochs),
        "--grad-sync",
        grad_sync,
    ]
    rates: dict[int, list[float]] = {1: [], 2: []}
    placed: dict[int, list[str]] = {}
    sync_share, rates_without_sync = [], []
    for i in range(repeats):
        for world in (1, 2) if i % 2 == 0 else (2, 1):
            r = run_ranks(world, "benchmarks.scaling", args, timeout_s, place)
            placed[world] = r["hosts"]
            rates[world].append(median(r["rows_per_s"]))
            if world == 2:  # how much of the gap is the gradient sum (it includes waiting)
                train_s, sync_s = median(r["train_s_rank0"]), median(r["sync_s_rank0"])
                sync_share.append(sync_s / train_s)
                rates_without_sync.append(2 * rows_per_rank / (train_s - sync_s))
    efficiency = paired_ratio(rates[2], [2 * r for r in rates[1]])
    return [
        figure(
            f"weak_scaling_efficiency{where}",
            efficiency,
            goal,
            "rows/s of 2 ranks / (2 x rows/s of 1 rank), same rows and batch per rank, via fit",
            unit="",
            rows_per_rank=rows_per_rank,
            batch_per_rank=BATCH,
            grad_sync=grad_sync,
            rows_per_s={"1_rank": rates[1], "2_ranks": rates[2]},
            hosts={f"{w}_rank{'s' if w > 1 else ''}": h for w, h in placed.items()},
            sync_share_of_training_2_ranks=median(sync_share),
            efficiency_without_sync_rank0=paired_ratio(
                rates_without_sync, [2 * r for r in rates[1]]
            ),
        )
    ]


if __name__ == "__main__":
    # Ended as jobs end, without Python's teardown: a rank once aborted in it, gloo's thread
    # taking the GIL while the interpreter finalized (ProcessGroupGloo::runLoop, pthread_exit).
    run(main)
