"""Gradient sync on 2 ranks: GradSync through MPIContext vs raw mpi4py, gloo all_reduce and DDP.

Run by ``benchmarks.run`` as ``mpirun -n 2 python -m benchmarks.grad_sync``; rank 0 prints JSON.
With ``--watchdog``: what the watchdog over the collectives (``training/runtime/watchdog.py``) adds to a
``GradSync`` step of the default MLP, the same step with and without it, interleaved.
"""

from __future__ import annotations

import argparse
import copy
import json
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from benchmarks.common import (
    BATCH,
    MODEL_SIZES,
    Placement,
    build_mlp,
    figure,
    hosts,
    interleave,
    median,
    n_params,
    paired_ratio,
    run_ranks,
    synthetic_tensors,
)
from training.core.loop import loss_fn
from training.data.tensors import Tensors
from training.launch.mpi import MPIContext
from training.runtime.dist import GradSync
from training.runtime.exit import run
from training.runtime.watchdog import Watchdog

GOAL_VS_MPI4PY = "<= 1.2"


# ---- on each rank -------------------------------------------------------------------------------


def init_gloo(comm) -> None:
    """A torch process group for the gloo baselines, at rank 0's address and a port it picks."""
    from training.runtime.process import free_port

    here = (socket.gethostbyname(socket.gethostname()), free_port(""))
    addr, port = comm.bcast(here if comm.Get_rank() == 0 else None, root=0)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{addr}:{port}",
        rank=comm.Get_rank(),
        world_size=comm.Get_size(),
    )


def backward(model: nn.Module, batch: Tensors) -> None:
    """Forward and backward of one batch (DDP's gradient allreduce runs inside ``backward``)."""
    model.zero_grad(set_to_none=False)  # in place, as train_step does (GradSync may own .grad)
    loss_fn(model(batch.x_num, batch.x_cat), batch.y).backward()


def per_call(fn: Callable[[], object], iters: int, comm) -> Callable[[], float]:
    """A timer of ``iters`` calls: seconds per call on the slowest rank (a collective ends with it)."""
    from mpi4py import MPI

    def run() -> float:
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return comm.allreduce((time.perf_counter() - t0) / iters, op=MPI.MAX)

    return run


def measure_size(size: str, comm, iters: int, repeats: int) -> dict:
    from mpi4py import MPI

    model, batch = build_mlp(size), synthetic_tensors(BATCH, seed=1 + comm.Get_rank())
    ddp = nn.parallel.DistributedDataParallel(copy.deepcopy(model))
    sync = GradSync(model, MPIContext(comm, "mpi", torch.device("cpu"), comm.Get_rank()))
    backward(model, batch)  # gradients for GradSync to sum
    n = sync.flat.numel()  # what GradSync sends: the gradients (plus any flag it carries)
    # Zeros stay zeros however often they are summed (the summed gradients would overflow);
    # the time of a float32 allreduce does not depend on the values.
    raw, gloo_buf = torch.zeros(n).numpy(), torch.zeros(n)
    times = interleave(
        {
            "riskbrain_gradsync": per_call(sync, iters, comm),
            "mpi4py_allreduce": per_call(
                lambda: comm.Allreduce(MPI.IN_PLACE, raw, op=MPI.SUM), iters, comm
            ),
            "gloo_allreduce": per_call(lambda: dist.all_reduce(gloo_buf), iters, comm),
            "backward": per_call(lambda: backward(model, batch), iters, comm),
            "ddp_backward": per_call(lambda: backward(ddp, batch), iters, comm),
        },
        repeats,
    )
    return {"params": n_params(model), "bytes": 4 * n, "seconds_per_call": times}


def measure_watchdog(comm, iters: int, repeats: int) -> dict:
    """Seconds per ``GradSync`` step of the default MLP with and without the watchdog."""
    model, batch = build_mlp(), synthetic_tensors(BATCH, seed=1 + comm.Get_rank())
    watched = copy.deepcopy(model)  # each GradSync owns its model's .grad views
    cpu, rank, size = torch.device("cpu"), comm.Get_rank(), comm.Get_size()
    dog = Watchdog(
        Path(tempfile.mkdtemp()), rank=rank, world_size=size, timeout_s=300, end=comm.Abort
    ).start()
    plain = GradSync(model, MPIContext(comm, "mpi", cpu, rank))
    guarded = GradSync(watched, MPIContext(comm, "mpi", cpu, rank, watchdog=dog))
    backward(model, batch)
    backward(watched, batch)
    times = interleave(
        {"without": per_call(plain, iters, comm), "with": per_call(guarded, iters, comm)}, repeats
    )
    dog.close()
    ratio = paired_ratio(times["with"], times["without"])
    return {"params": n_params(model), "seconds_per_call": times, "ratio_with_without": ratio}


def main() -> None:
    from mpi4py import MPI

    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--watchdog", action="store_true", help="only the watchdog's cost per step")
    args = p.parse_args()
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    if args.watchdog:
        out = measure_watchdog(comm, args.iters, args.repeats)
        if comm.Get_rank() == 0:
            print(json.dumps(out), flush=True)
        return
    init_gloo(comm)
    out = {size: measure_size(size, comm, args.iters, args.repeats) for size in MODEL_SIZES}
    placed = hosts(comm)
    out = {size: r | {"hosts": placed} for size, r in out.items()}
    if comm.Get_rank() == 0:
        print(json.dumps(out), flush=True)
    dist.destroy_process_group()


# ---- in benchmarks.run --------------------------------------------------------------------------


def measure(
    iters: int,
    repeats: int,
    timeout_s: float = 600,
    place: Placement | None = None,
    where: str = "",
) -> list[dict]:
    """2 ranks on this machine, or where ``place`` puts them (``where`` then names the figures)."""
    args = ["--iters", str(iters), "--repeats", str(repeats)]
    raw = run_ranks(2, "benchmarks.grad_sync", args, timeout_s, place)
    figures = []
    for size, r in raw.items():
        t = r["seconds_per_call"]
        # DDP overlaps its allreduce with backward: what it adds to a step is the difference.
        ddp_added = [d - b for d, b in zip(t["ddp_backward"], t["backward"], strict=True)]
        common = {
            "model": size,
            "params": r["params"],
            "bytes": r["bytes"],
            "hosts": r["hosts"],
            "median_s": {name: median(v) for name, v in t.items()},
        }
        figures += [
            figure(
                f"grad_sync_vs_mpi4py[{size}{where}]",
                paired_ratio(t["riskbrain_gradsync"], t["mpi4py_allreduce"]),
                GOAL_VS_MPI4PY,
                "GradSync via MPIContext / raw mpi4py Allreduce of the same float32 bytes (2 ranks)",
                **common,
                seconds=t,
            ),
            figure(
                f"grad_sync_vs_gloo_allreduce[{size}{where}]",
                paired_ratio(t["riskbrain_gradsync"], t["gloo_allreduce"]),
                None,
                "GradSync via MPIContext / torch.distributed.all_reduce on gloo, same bytes",
                **common,
            ),
            figure(
                f"grad_sync_vs_ddp[{size}{where}]",
                paired_ratio(t["riskbrain_gradsync"], ddp_added),
                None,
                "GradSync via MPIContext / time DDP (gloo) adds to forward+backward",
                **common,
                ddp_added_s=ddp_added,
            ),
        ]
    return figures


if __name__ == "__main__":
    # Ended as jobs end, without Python's teardown: a rank once aborted in it, gloo's thread
    # taking the GIL while the interpreter finalized (ProcessGroupGloo::runLoop, pthread_exit).
    run(main)
