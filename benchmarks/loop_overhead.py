"""Loop overhead: ``fit`` (Tensors.take, train_step, GradSync) vs a hand-written PyTorch loop."""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import BATCH, build_mlp, figure, interleave, paired_ratio, synthetic_tensors
from training.core.config import OptimConfig, TrainerConfig
from training.core.loop import fit
from training.core.state import TrainState
from training.data.tensors import Tensors

GOAL = "<= 1.05"


def riskbrain_loop(model: nn.Module, data: Tensors, valid: Tensors) -> float:
    """The real ``fit``, one epoch on one process (so ``GradSync`` returns at once); returns
    ``fit``'s own timing of its batch loop (permutation, masks, ``Tensors.take``, ``train_step``),
    read back from rows/s. Validation and set-up are outside it."""
    optim = OptimConfig(lr=1e-3, weight_decay=1e-4, batch_size=BATCH)
    state = TrainState.create(model, optim, seed=0)
    result = fit(state, data, valid, optim, TrainerConfig(max_epochs=1))
    return len(data) / result.history[0]["rows_per_s"]


def plain_loop(model: nn.Module, data: Tensors, steps: int) -> float:
    """What a person would write by hand: index the tensors, mean BCE, backward, step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    x_num, x_cat, y = data.x_num, data.x_cat, data.y
    t0 = time.perf_counter()
    perm = torch.randperm(len(y), generator=generator)
    for start in range(0, steps * BATCH, BATCH):
        idx = perm[start : start + BATCH]
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x_num[idx], x_cat[idx]).squeeze(1), y[idx])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def measure(steps: int, repeats: int) -> list[dict]:
    """Both loops from the same initial weights, same data, same steps, one thread."""
    base, data = build_mlp("default"), synthetic_tensors(steps * BATCH)
    valid = synthetic_tensors(1_024, seed=1)
    times = interleave(
        {
            "riskbrain": lambda: riskbrain_loop(copy.deepcopy(base), data, valid),
            "plain": lambda: plain_loop(copy.deepcopy(base), data, steps),
        },
        repeats,
    )
    ratio = paired_ratio(times["riskbrain"], times["plain"])
    return [
        figure(
            "loop_overhead",
            ratio,
            GOAL,
            "time of riskbrain's training loop / a plain PyTorch loop (1 process, 1 thread)",
            steps=steps,
            batch=BATCH,
            seconds=times,
        )
    ]
