"""MPI launcher: ranks started by ``mpirun``/``srun``; rank 0 composes the config and broadcasts it.

Collectives go through mpi4py (Open MPI's shared memory on a node is faster than gloo for the
flat gradient buffer); a ``torch.distributed`` process group is also set up, its rendezvous port
picked free by rank 0 and broadcast over MPI, for ``launcher.grad_sync=torch`` and NCCL on GPUs.
An exception on any rank is logged with the rank's number and aborts every rank; a rank that
stops answering does the same after ``launcher.timeout_s``, through a watchdog over the mpi4py
collectives (``training/runtime/watchdog.py``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import TrainConfig
from training.constants import EXIT_FAILED, EXIT_PREEMPTED, EXIT_USER_ERROR
from training.errors import RiskbrainError
from training.report import Report
from training.runtime.dist import DistContext, pick_device
from training.runtime.preemption import Preempted
from training.runtime.process import free_port, setup_process
from training.runtime.watchdog import FOLDER, Watchdog

log = logging.getLogger("riskbrain")


class MPIContext(DistContext):
    """Collectives through mpi4py on ``comm``; with a ``watchdog``, each one is watched, so a rank
    that stops answering ends the job after ``launcher.timeout_s`` (``training/runtime/watchdog.py``)."""

    def __init__(
        self,
        comm,
        grad_sync: str,
        device: torch.device,
        local_rank: int,
        watchdog: Watchdog | None = None,
    ) -> None:
        super().__init__(
            rank=comm.Get_rank(), local_rank=local_rank, world_size=comm.Get_size(), device=device
        )
        self.comm, self.watchdog = comm, watchdog
        self.use_mpi = grad_sync == "mpi" and device.type == "cpu"

    def _watched(
        self, what: str, call: Callable[..., Any], *args: Any, patient: bool = True
    ) -> Any:
        """``call(*args)``, a collective, with the watchdog told where this rank waits; a
        ``patient`` rank sleeps until every rank is there (``wait_for_all``)."""
        if self.watchdog is None:
            return call(*args)
        if not self.where:  # named by the caller's code line (gradient sync names its step)
            caller = sys._getframe(2).f_code
            what = f"{what} in {Path(caller.co_filename).name}:{caller.co_name}"
        self.watchdog.enter(self.where or what)
        try:
            if patient:
                wait_for_all(self.comm)
            return call(*args)
        finally:
            self.watchdog.leave()

    def allreduce_sum_(self, t: torch.Tensor) -> None:
        if self.use_mpi:
            from mpi4py import MPI

            assert t.is_contiguous(), "allreduce_sum_ sums in place: the tensor must be contiguous"
            buf = t.detach().numpy().reshape(-1)
            # the step's gradient sum: the ranks arrive together, so Open MPI's polling wins
            self._watched(
                "allreduce", self.comm.Allreduce, MPI.IN_PLACE, buf, MPI.SUM, patient=False
            )
        else:  # gloo / NCCL: the process group's own timeout (launcher.timeout_s)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)

    def allgather(self, obj: Any) -> list[Any]:
        return self._watched("allgather", self.comm.allgather, obj)

    def allgather_array(self, a: np.ndarray) -> np.ndarray:
        if a.dtype.hasobject:
            return super().allgather_array(a)
        return self._watched("allgather_array", self._allgather_array, a)

    def _allgather_array(self, a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a)
        counts = self.comm.allgather(len(a))
        out = np.empty(sum(counts), dtype=a.dtype)
        self.comm.Allgatherv(a, [out, counts])
        return out

    def broadcast(self, obj: Any) -> Any:
        return self._watched("broadcast", self.comm.bcast, obj, 0)

    def barrier(self) -> None:
        self._watched("barrier", self.comm.Barrier)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def wait_for_all(comm) -> None:
    """Return once every rank of ``comm`` has called this, without holding a core meanwhile.

    Open MPI's blocking collectives poll: a rank waiting for rank 0 to evaluate, calibrate and
    register a model (seconds) spun a core for all of it, a core taken from rank 0 wherever the
    ranks share one. A barrier that is tested, with sleeps of up to 20 ms between tests, then lets
    the collective that follows run with every rank present."""
    request = comm.Ibarrier()
    delay = 1e-4
    while not request.Test():
        time.sleep(delay)
        delay = min(2 * delay, 0.02)


def _local_rank_and_size() -> tuple[int, int]:
    for rank_var, size_var in (
        ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        ("SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
    ):
        if rank_var in os.environ and size_var in os.environ:
            return int(os.environ[rank_var]), int(os.environ[size_var].split("(")[0])
    return 0, 1


def init_context(cfg: TrainConfig, out_dir: Path) -> MPIContext:
    """Threads, device, the torch process group at a rendezvous chosen by rank 0, and the watchdog
    over the MPI collectives (its files go to the run folder, ``out_dir``)."""
    comm = _comm()
    local_rank, local_size = _local_rank_and_size()
    threads = setup_process(cfg.launcher.threads, local_size)
    device = pick_device(local_rank)
    addr = comm.bcast(
        (os.environ.get("MASTER_ADDR") or socket.gethostbyname(socket.getfqdn()), free_port(""))
        if comm.Get_rank() == 0
        else None,
        root=0,
    )
    torch.distributed.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=f"tcp://{addr[0]}:{addr[1]}",
        rank=comm.Get_rank(),
        world_size=comm.Get_size(),
        timeout=timedelta(seconds=cfg.launcher.timeout_s),
    )
    launcher = cfg.launcher
    ctx = _guarded(comm, launcher.grad_sync, device, local_rank, launcher.timeout_s, out_dir)
    if ctx.is_main:
        log.info(
            "mpi: %d ranks, %d torch threads each, device %s, rendezvous %s:%d, grad_sync=%s",
            ctx.world_size,
            threads,
            device,
            *addr,
            cfg.launcher.grad_sync,
        )
    return ctx


def _guarded(comm, grad_sync: str, device, local_rank: int, timeout_s: float, state: Path,
             folder: str = FOLDER) -> MPIContext:  # fmt: skip
    """The context, with a watchdog over its collectives when there are other ranks to wait on
    (its files in ``state/folder``, a folder every rank sees)."""
    watchdog = None
    if comm.Get_size() > 1:
        watchdog = Watchdog(
            state,
            rank=comm.Get_rank(),
            world_size=comm.Get_size(),
            timeout_s=timeout_s,
            end=comm.Abort,
            folder=folder,
        ).start()
    ctx = MPIContext(comm, grad_sync, device, local_rank, watchdog)
    if watchdog is not None:
        watchdog.before_end = ctx.abort_hooks
    return ctx


def scoring_context(threads: int, timeout_s: float, state: Path, folder: str) -> MPIContext:
    """The MPI world on CPU for a job that does not train (scoring): torch threads, and the
    watchdog, so a rank that stops answering ends the job after ``timeout_s`` as in training."""
    local_rank, local_size = _local_rank_and_size()
    setup_process(threads, local_size)
    return _guarded(_comm(), "mpi", torch.device("cpu"), local_rank, timeout_s, state, folder)


def _share(payload: Any) -> Any:
    """Rank 0's ``payload`` on every rank (the others pass None), once all are there."""
    wait_for_all(_comm())
    return _comm().bcast(payload, root=0)


def lead(cfg: TrainConfig, out_dir: Path) -> Report:
    """Rank 0: share the resolved config and output folder, then train as rank 0."""
    _share((cfg, out_dir))
    return _run_rank(cfg, out_dir)


def release_followers() -> None:
    """Rank 0 failed before ``lead``: tell the waiting ranks there is no job."""
    _share(None)


def follow() -> int:
    """Ranks > 0: receive the config composed by rank 0 (never compose it again) and train."""
    setup_process()  # logging now; threads once the config is known
    payload = _share(None)  # rank 0 composes the config meanwhile
    if payload is None:
        return EXIT_USER_ERROR
    try:
        _run_rank(*payload)
    except Preempted:
        return EXIT_PREEMPTED
    return 0


def _run_rank(cfg: TrainConfig, out_dir: Path) -> Report | None:
    comm = _comm()
    ctx = None
    try:
        ctx = init_context(cfg, out_dir)
        from training.core.pipeline import run

        return run(cfg, out_dir, ctx)
    except Preempted:
        raise  # every rank stopped at the same step: a clean exit, not a failure
    except BaseException as e:
        abort_all(comm, e)
        raise
    finally:
        if ctx is not None:
            ctx.close()


def abort_all(comm, e: BaseException) -> None:
    """A failure on this rank while others may wait in a collective: one line naming the rank and
    its error (with the traceback unless the user can fix it), then ``MPI_Abort`` ends every rank
    now, with the bad-input or the crash exit code. Call it from an ``except`` block."""
    rank, size = comm.Get_rank(), comm.Get_size()
    detail = "" if isinstance(e, RiskbrainError) else "\n" + traceback.format_exc()
    print(
        f"riskbrain: rank {rank} of {size} failed: {type(e).__name__}: {e}{detail}",
        file=sys.stderr,
        flush=True,
    )
    comm.Abort(EXIT_USER_ERROR if isinstance(e, RiskbrainError) else EXIT_FAILED)
