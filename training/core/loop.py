"""The one training loop: plain PyTorch. No Ray, MPI or Slurm in here; launchers call it.

Batches are slices of in-memory tensors (one ``index_select`` per batch), not per-row
``Dataset.__getitem__`` calls. Early stopping on validation AUC keeps the best weights.

Data parallelism without changing the result: every rank draws the same permutation of the
*global* training rows each epoch, and a global batch is the rows of that slice of the
permutation; each rank computes the summed loss of the rows it holds (its shard) divided by the
global batch size, and the gradients are summed over ranks. So 1, 2 or N processes take the
same optimisation steps, up to floating-point rounding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import metrics
from training.core.checkpoint import Checkpointer
from training.core.config import OptimConfig, TrainerConfig
from training.core.state import FitResult, TrainState
from training.data.tensors import Tensors
from training.errors import RiskbrainError
from training.models.build import predict_pd
from training.runtime.dist import DistContext, GradSync, local_rows
from training.runtime.preemption import Preempted
from training.runtime.process import peak_rss_mib, seconds_since_start
from training.runtime.progress import EpochProgress
from training.tracking.tracker import Tracker

log = logging.getLogger("riskbrain")


class TrainingDiverged(RiskbrainError):
    """The loss became NaN or infinite."""


def loss_fn(
    logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean", smoothing: float = 0.0
) -> torch.Tensor:
    """Binary cross-entropy, averaged over the k ensemble members (k=1 for an MLP), then over
    the batch (``mean``) or summed over it (``sum``); with label ``smoothing`` s the targets are
    y (1 - s) + s / 2.

    Shape: logits (batch, k), y (batch,).
    """
    target = y * (1.0 - smoothing) + 0.5 * smoothing if smoothing else y
    per_row = F.binary_cross_entropy_with_logits(
        logits, target.unsqueeze(1).expand_as(logits), reduction="none"
    ).mean(1)
    return per_row.sum() if reduction == "sum" else per_row.mean()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Tensors,
    global_batch: int | None = None,
    sync: GradSync | None = None,
    *,
    grad_clip: float = 0.0,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """One step on this rank's rows of a global batch; returns their summed loss.

    The loss is scaled by 1/global_batch and ``sync`` sums gradients over ranks, so the step
    equals one process's step on the whole global batch. ``grad_clip`` > 0 clips the summed
    gradients' global norm (the same on every rank) before the step.
    """
    model.train()
    logits = model(batch.x_num, batch.x_cat)
    loss_sum = loss_fn(logits, batch.y, reduction="sum", smoothing=smoothing)
    optimizer.zero_grad(set_to_none=False)  # in place: GradSync's gradient views stay valid
    (loss_sum / (global_batch or len(batch))).backward()
    if sync is not None:
        sync()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    optimizer.step()
    return loss_sum.detach()


@dataclass
class Hooks:
    """What ``fit`` reports to and asks, besides the model: each optional, a no-op by default."""

    tracker: Tracker = field(default_factory=Tracker)  # per-epoch metrics
    progress: EpochProgress | None = None  # a bar in a terminal, a line per epoch in the log
    checkpointer: Checkpointer | None = None
    stop: Callable[[], bool] = lambda: False  # a preemption request (signal or stop file)
    on_epoch: Callable[[int, dict[str, float]], None] | None = None  # a sweep's scheduler


def fit(
    state: TrainState,
    train: Tensors,
    valid: Tensors,
    optim: OptimConfig,
    trainer: TrainerConfig,
    *,
    ctx: DistContext | None = None,
    hooks: Hooks | None = None,
) -> FitResult:
    """Train from ``state`` until validation AUC stops improving; leaves the best weights in the model.

    ``train`` and ``valid`` hold this rank's shard; validation predictions are gathered, so the
    AUC (and so early stopping) is the same on every rank and equals the single-process value.
    A loaded ``state`` continues exactly where its checkpoint was taken. When ``hooks.stop()``
    turns true on any rank, all ranks checkpoint after the same step and raise ``Preempted``.
    """
    ctx, hooks = ctx or DistContext(), hooks or Hooks()
    quiet = EpochProgress(trainer.max_epochs, enabled=False, log_epochs=False)
    hooks = replace(hooks, progress=hooks.progress or quiet)
    sync = GradSync(state.model, ctx)
    y_valid = ctx.allgather_array(valid.y.cpu().numpy())
    state.schedule.start(-(-train.global_rows // optim.batch_size), trainer.max_epochs)
    log.info(
        "rank %d/%d: first step %.1f s after start (%.1f CPU-seconds)",
        ctx.rank, ctx.world_size, seconds_since_start(), time.process_time(),
    )  # fmt: skip
    while state.epoch <= trainer.max_epochs:
        epoch, t0 = state.epoch, time.perf_counter()
        row = train_epoch(state, train, optim, ctx, sync, hooks)
        row |= validate(state.model, valid, y_valid, trainer.eval_batch_size, ctx)
        row["epoch_time_s"] = time.perf_counter() - t0
        improved = state.end_epoch(row)
        hooks.tracker.log_metrics(row, step=epoch)
        hooks.progress.end_epoch(epoch, {**row, "is_best": improved})
        if hooks.on_epoch is not None:
            hooks.on_epoch(epoch, row)
        if epoch - state.result.best_epoch >= trainer.patience:
            break
        if hooks.checkpointer is not None and hooks.checkpointer.due_epoch(epoch):
            hooks.checkpointer.save(state)
    state.model.load_state_dict(state.best_model)
    return state.result


def train_epoch(
    state: TrainState,
    train: Tensors,
    optim: OptimConfig,
    ctx: DistContext,
    sync: GradSync,
    hooks: Hooks,
) -> dict[str, float]:
    """The rest of the state's epoch, one global batch a step; returns the loss and throughput."""
    total, lo, hi, bs = train.global_rows, train.offset, train.offset + len(train), optim.batch_size
    n_batches, first = -(-total // bs), state.step
    hooks.progress.start_epoch(state.epoch, n_batches - first)
    t0, sync_before = time.perf_counter(), ctx.sync_seconds
    perm = state.permutation(total)
    how = {"grad_clip": optim.grad_clip, "smoothing": optim.label_smoothing}
    state.loss_sum = torch.full((), state.loss_sum, device=ctx.device)
    for b in range(first, n_batches):
        pos = perm[b * bs : (b + 1) * bs]
        sync.stop_requested = hooks.stop()
        mine = local_rows(pos, lo, hi).to(ctx.device)  # this rank's rows of the global batch
        state.schedule.apply(state.optimizer)
        loss = train_step(state.model, state.optimizer, train.take(mine), len(pos), sync, **how)
        state.schedule.t += 1
        state.loss_sum += loss
        state.step = b + 1
        hooks.progress.advance(loss, len(mine))
        global_step = (state.epoch - 1) * n_batches + state.step
        if hooks.checkpointer is not None and (
            sync.stop_agreed or hooks.checkpointer.due_step(global_step)
        ):
            hooks.checkpointer.save(state)
        if sync.stop_agreed:
            raise Preempted(
                f"stopped on request after step {state.step} of epoch {state.epoch}; checkpoint written"
            )
    train_time = time.perf_counter() - t0
    ctx.allreduce_sum_(state.loss_sum)
    if not torch.isfinite(state.loss_sum):
        raise TrainingDiverged(
            f"training loss is {float(state.loss_sum)} in epoch {state.epoch}: the model diverged "
            f"(optim.lr={optim.lr}; try a lower learning rate)"
        )
    rows_per_s = len(train) * (n_batches - first) / n_batches / train_time
    per_rank = ctx.allgather((rows_per_s, ctx.sync_seconds - sync_before, peak_rss_mib()))
    row = {"train_loss": float(state.loss_sum) / total, "rows_per_s": sum(r[0] for r in per_rank)}
    row["lr"] = state.optimizer.param_groups[0]["lr"]  # the epoch's last step's
    if ctx.world_size > 1:
        row |= {f"rows_per_s_rank{r}": v for r, (v, _, _) in enumerate(per_rank)}
        row |= {f"sync_s_rank{r}": s for r, (_, s, _) in enumerate(per_rank)}
    row |= {f"peak_rss_mib_rank{r}": m for r, (_, _, m) in enumerate(per_rank)}
    return row


def validate(
    model: nn.Module, valid: Tensors, y_valid: np.ndarray, batch_size: int, ctx: DistContext
) -> dict[str, float]:
    """Validation metrics over every rank's rows (predictions gathered in global order)."""
    p = ctx.allgather_array(predict_pd(model, valid.x_num, valid.x_cat, batch_size))
    return {
        "valid_auc": metrics.auc(y_valid, p),
        "valid_log_loss": metrics.log_loss(y_valid, p),
        "valid_ks": metrics.ks(y_valid, p),
    }
