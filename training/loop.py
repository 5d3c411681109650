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

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import metrics
from training.checkpoint import Checkpointer
from training.config import OptimConfig, TrainerConfig
from training.dist import DistContext, GradSync
from training.errors import RiskbrainError
from training.models import predict_pd
from training.preemption import Preempted
from training.progress import EpochProgress
from training.tracking import NullTracker, Tracker


class TrainingDiverged(RiskbrainError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Tensors:
    """This rank's rows of one split, ready for the model.

    Shape: x_num (n, d_num) float32, x_cat (n, n_cat) int64, y (n,) float32. The rows are
    positions ``offset .. offset + n - 1`` of the split's ``total`` rows across all ranks.
    """

    x_num: torch.Tensor
    x_cat: torch.Tensor
    y: torch.Tensor
    offset: int = 0
    total: int = -1  # -1: this rank holds the whole split

    def __len__(self) -> int:
        return len(self.y)

    @property
    def global_rows(self) -> int:
        return len(self) if self.total < 0 else self.total

    def take(self, idx: torch.Tensor) -> Tensors:
        return Tensors(
            self.x_num.index_select(0, idx),
            self.x_cat.index_select(0, idx),
            self.y.index_select(0, idx),
        )

    def to(self, device: torch.device) -> Tensors:
        return Tensors(
            self.x_num.to(device), self.x_cat.to(device), self.y.to(device), self.offset, self.total
        )


@dataclass
class FitResult:
    best_epoch: int
    best_valid_auc: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def loss_fn(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy, averaged over the k ensemble members (k=1 for an MLP), then over
    the batch (``mean``) or summed over it (``sum``).

    Shape: logits (batch, k), y (batch,).
    """
    per_row = F.binary_cross_entropy_with_logits(
        logits, y.unsqueeze(1).expand_as(logits), reduction="none"
    ).mean(1)
    return per_row.sum() if reduction == "sum" else per_row.mean()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Tensors,
    global_batch: int | None = None,
    sync: GradSync | None = None,
) -> torch.Tensor:
    """One step on this rank's rows of a global batch; returns their summed loss.

    The loss is scaled by 1/global_batch and ``sync`` sums gradients over ranks, so the step
    equals one process's step on the whole global batch.
    """
    model.train()
    loss_sum = loss_fn(model(batch.x_num, batch.x_cat), batch.y, reduction="sum")
    optimizer.zero_grad(set_to_none=False)  # in place: GradSync's gradient views stay valid
    (loss_sum / (global_batch or len(batch))).backward()
    if sync is not None:
        sync()
    optimizer.step()
    return loss_sum.detach()


def fit(
    model: nn.Module,
    train: Tensors,
    valid: Tensors,
    *,
    optim: OptimConfig,
    trainer: TrainerConfig,
    seed: int,
    ctx: DistContext | None = None,
    tracker: Tracker | None = None,
    progress: EpochProgress | None = None,
    checkpointer: Checkpointer | None = None,
    resume: dict | None = None,
    stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train with AdamW until validation AUC stops improving; leaves the best weights in ``model``.

    ``train`` and ``valid`` hold this rank's shard; validation predictions are gathered, so the
    AUC (and so early stopping) is the same on every rank and equals the single-process value.
    ``resume`` (a checkpoint) continues exactly where it was taken. When ``stop()`` turns true on
    any rank, all ranks checkpoint after the same step and raise ``Preempted``. ``on_epoch(epoch,
    metrics)`` is called after each epoch (a sweep reports to its scheduler there).
    """
    ctx = ctx or DistContext()
    tracker = tracker or NullTracker()
    progress = progress or EpochProgress(trainer.max_epochs, enabled=False, log_epochs=False)
    stop = stop or (lambda: False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    sync = GradSync(model, ctx)
    generator = torch.Generator().manual_seed(
        seed
    )  # the global batch order depends on the seed alone
    total, lo, hi = train.global_rows, train.offset, train.offset + len(train)
    bs = optim.batch_size
    n_batches = (total + bs - 1) // bs
    y_valid = ctx.allgather_array(valid.y.cpu().numpy())

    result = FitResult(best_epoch=0, best_valid_auc=-1.0, epochs_run=0)
    best_state = copy.deepcopy(model.state_dict())
    start_epoch, start_step, carried_loss = 1, 0, 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        best_state, result = resume["best_model"], FitResult(**resume["result"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(
            resume["torch_rng"][ctx.rank % len(resume["torch_rng"])]
        )  # dropout masks
        start_epoch, start_step, carried_loss = resume["epoch"], resume["step"], resume["loss_sum"]

    def snapshot(epoch: int, step: int, generator_state: torch.Tensor, loss_sum: float) -> dict:
        """Everything needed to continue at ``step`` global batches into ``epoch``."""
        return {
            "epoch": epoch,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best_model": best_state,
            "result": vars(result),
            "generator": generator_state,
            "loss_sum": loss_sum,
        }

    for epoch in range(start_epoch, trainer.max_epochs + 1):
        first = start_step if epoch == start_epoch else 0
        progress.start_epoch(epoch, n_batches - first)
        t0, sync_before = time.perf_counter(), ctx.sync_seconds
        epoch_generator_state = generator.get_state()
        perm = torch.randperm(total, generator=generator)
        loss_sum = torch.full((), carried_loss if epoch == start_epoch else 0.0, device=ctx.device)
        for b in range(first, n_batches):
            pos = perm[b * bs : (b + 1) * bs]
            mine = pos[(pos >= lo) & (pos < hi)] - lo  # this rank's rows of the global batch
            sync.stop_requested = stop()
            loss_sum += train_step(
                model, optimizer, train.take(mine.to(ctx.device)), len(pos), sync
            )
            progress.advance()
            global_step = (epoch - 1) * n_batches + b + 1
            if checkpointer is not None and (
                sync.stop_agreed or checkpointer.due_step(global_step)
            ):
                checkpointer.save(snapshot(epoch, b + 1, epoch_generator_state, float(loss_sum)))
            if sync.stop_agreed:
                raise Preempted(
                    f"stopped on request after step {b + 1} of epoch {epoch}; checkpoint written"
                )
        train_time = time.perf_counter() - t0
        ctx.allreduce_sum_(loss_sum)
        if not torch.isfinite(loss_sum):
            raise TrainingDiverged(
                f"training loss is {float(loss_sum)} in epoch {epoch}: the model diverged "
                f"(optim.lr={optim.lr}; try a lower learning rate)"
            )

        valid_p = ctx.allgather_array(
            predict_pd(model, valid.x_num, valid.x_cat, trainer.eval_batch_size)
        )
        per_rank = ctx.allgather(
            (
                len(train) * (n_batches - first) / n_batches / train_time,
                ctx.sync_seconds - sync_before,
            )
        )
        row = {
            "train_loss": float(loss_sum) / total,
            "valid_auc": metrics.auc(y_valid, valid_p),
            "valid_log_loss": metrics.log_loss(y_valid, valid_p),
            "valid_ks": metrics.ks(y_valid, valid_p),
            "rows_per_s": sum(r for r, _ in per_rank),
            "epoch_time_s": time.perf_counter() - t0,
        }
        if ctx.world_size > 1:
            row |= {f"rows_per_s_rank{r}": v for r, (v, _) in enumerate(per_rank)}
            row |= {f"sync_s_rank{r}": s for r, (_, s) in enumerate(per_rank)}
        improved = row["valid_auc"] > result.best_valid_auc
        if improved:
            result.best_epoch, result.best_valid_auc = epoch, row["valid_auc"]
            best_state = copy.deepcopy(model.state_dict())
        result.epochs_run = epoch
        result.history.append({"epoch": epoch, **row})
        tracker.log_metrics(row, step=epoch)
        progress.end_epoch(epoch, {**row, "is_best": improved})
        if on_epoch is not None:
            on_epoch(epoch, row)
        if epoch - result.best_epoch >= trainer.patience:
            break
        if checkpointer is not None and checkpointer.due_epoch(epoch):
            checkpointer.save(snapshot(epoch + 1, 0, generator.get_state(), 0.0))

    model.load_state_dict(best_state)
    return result
