"""Sums through shared memory (``training/runtime/node_sum.py``) between real gloo processes."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from training.runtime.node_sum import SHM_DIR, NodeSum, _reserve
from training.runtime.process import free_port

WORLD = 3  # more than two, so the order of the slots matters


def _segments() -> set[str]:
    return {p.name for p in Path(SHM_DIR).glob("riskbrain-sum-*")}


def _rank(rank: int, port: int, shared: bool, out) -> None:
    import torch.distributed as dist

    from training.runtime.dist import TorchDistContext

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    ctx = TorchDistContext(rank=rank, world_size=WORLD)
    on_node = ctx.share_memory() if shared else False
    sums = []
    for step in range(5):  # both sets of slots, each used more than once
        for n, dtype in ((1000, torch.float32), (7, torch.float64)):
            g = torch.Generator().manual_seed(100 * step + 10 * rank + n)
            t = torch.randn(n, generator=g, dtype=dtype)
            ctx.allreduce_sum_(t)
            sums.append(t)
    left = _segments()  # every segment made so far is mapped and already unlinked
    dist.barrier()
    dist.destroy_process_group()
    out.put((rank, on_node, [t.numpy() for t in sums], left))  # numpy: pickled by value


def _run(shared: bool) -> dict[int, tuple]:
    spawn = mp.get_context("spawn")
    out, port = spawn.Queue(), free_port()
    procs = [spawn.Process(target=_rank, args=(r, port, shared, out)) for r in range(WORLD)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        rank, on_node, sums, left = out.get(timeout=120)
        results[rank] = (on_node, [torch.from_numpy(a) for a in sums], left)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results


def _expected() -> list[torch.Tensor]:
    sums = []
    for step in range(5):
        for n, dtype in ((1000, torch.float32), (7, torch.float64)):
            parts = [
                torch.randn(n, generator=torch.Generator().manual_seed(100 * step + 10 * r + n),
                            dtype=dtype)
                for r in range(WORLD)
            ]  # fmt: skip
            sums.append(torch.stack(parts).sum(0))
    return sums


@pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason=f"no {SHM_DIR} on this machine")
def test_ranks_on_one_machine_sum_through_shared_memory_to_the_same_bits():
    before = _segments()
    shm, gloo = _run(shared=True), _run(shared=False)
    assert all(on_node for on_node, _, _ in shm.values())
    assert not any(on_node for on_node, _, _ in gloo.values())
    for _, _, left in shm.values():
        assert not (left - before), f"segments left in {SHM_DIR}: {left - before}"
    reference = shm[0][1]
    for rank in range(WORLD):
        for got, same, want in zip(shm[rank][1], reference, _expected(), strict=True):
            assert torch.equal(got, same)  # every rank holds the same bits
            torch.testing.assert_close(got, want)  # and the sum
    for got, want in zip(gloo[0][1], reference, strict=True):
        torch.testing.assert_close(got, want)  # gloo's sum, within rounding
    assert _segments() == before


def test_ranks_on_several_machines_keep_gloo():
    hosts = iter([["node1", "node2"], ["node1", "node1"]])
    args = dict(broadcast=None, barrier=None, fallback=None)  # not used before the first sum
    assert NodeSum.on_one_node(0, 2, lambda _: next(hosts), **args) is None
    assert NodeSum.on_one_node(0, 2, lambda _: next(hosts), **args) is not None
    assert NodeSum.on_one_node(0, 1, lambda h: [h], **args) is None  # one rank: nothing to sum


@pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason=f"no {SHM_DIR} on this machine")
def test_no_room_in_shared_memory_means_the_fallback_and_no_file_left(monkeypatch):
    before = _segments()
    assert _reserve(1 << 50) is None  # a petabyte: ENOSPC or EFBIG now, not SIGBUS mid-sum
    assert _segments() == before
    monkeypatch.setattr("training.runtime.node_sum._reserve", lambda nbytes: None)
    summed = []
    node = NodeSum(0, 2, allgather=lambda x: [x, x], broadcast=lambda path: path,
                   barrier=lambda: None, fallback=summed.append)  # fmt: skip
    t = torch.ones(3)
    node.sum_(t)  # rank 0 found no room and said so: every rank sums this size by the fallback
    node.sum_(t)
    assert summed == [t, t] and node.segments == {(3, torch.float32): None}


@pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason=f"no {SHM_DIR} on this machine")
def test_a_rank_that_does_not_see_the_segment_means_the_fallback_and_no_file_left():
    """Two machines with the same host name: rank 1 finds no such file in its own /dev/shm."""
    before, summed = _segments(), []
    node = NodeSum(0, 2, allgather=lambda x: [x, None], broadcast=lambda path: path,
                   barrier=lambda: None, fallback=summed.append)  # fmt: skip
    t = torch.ones(5)
    node.sum_(t)
    assert summed == [t] and node.segments == {(5, torch.float32): None}
    assert _segments() == before  # rank 0 removed the file it made
