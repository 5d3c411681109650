"""The one training loop: plain PyTorch. No Ray, MPI or Slurm in here; launchers call it.

Batches are slices of in-memory tensors (one ``index_select`` per batch), not per-row
``Dataset.__getitem__`` calls. Early stopping on validation AUC keeps the best weights.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import metrics
from training.config import OptimConfig, TrainerConfig
from training.errors import RiskbrainError
from training.progress import EpochProgress
from training.tracking import NullTracker, Tracker


class TrainingDiverged(RiskbrainError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Tensors:
    """One split, ready for the model. Shape: x_num (n, d_num) float32, x_cat (n, n_cat) int64, y (n,) float32."""

    x_num: torch.Tensor
    x_cat: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor) -> Tensors:
        return Tensors(
            self.x_num.index_select(0, idx),
            self.x_cat.index_select(0, idx),
            self.y.index_select(0, idx),
        )


@dataclass
class FitResult:
    best_epoch: int
    best_valid_auc: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the batch and over the k ensemble members (k=1 for an MLP).

    Shape: logits (batch, k), y (batch,).
    """
    return F.binary_cross_entropy_with_logits(logits, y.unsqueeze(1).expand_as(logits))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Tensors) -> torch.Tensor:
    model.train()
    loss = loss_fn(model(batch.x_num, batch.x_cat), batch.y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict_pd(
    model: nn.Module, x_num: torch.Tensor, x_cat: torch.Tensor, batch_size: int = 16_384
) -> np.ndarray:
    """PD per row: the mean of the ensemble members' probabilities. Shape: (n,) float64."""
    model.eval()
    out = [
        torch.sigmoid(model(x_num[i : i + batch_size], x_cat[i : i + batch_size])).mean(1)
        for i in range(0, len(x_num), batch_size)
    ]
    return torch.cat(out).double().numpy() if out else np.empty(0)


def fit(
    model: nn.Module,
    train: Tensors,
    valid: Tensors,
    *,
    optim: OptimConfig,
    trainer: TrainerConfig,
    seed: int,
    tracker: Tracker | None = None,
    progress: EpochProgress | None = None,
) -> FitResult:
    """Train with AdamW until validation AUC stops improving; leaves the best weights in ``model``."""
    tracker = tracker or NullTracker()
    progress = progress or EpochProgress(trainer.max_epochs, enabled=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    generator = torch.Generator().manual_seed(seed)  # the batch order depends on the seed alone
    n, bs = len(train), optim.batch_size
    n_batches = (n + bs - 1) // bs
    y_valid = valid.y.numpy()

    result = FitResult(best_epoch=0, best_valid_auc=-1.0, epochs_run=0)
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, trainer.max_epochs + 1):
        progress.start_epoch(epoch, n_batches)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=generator)
        loss_sum = torch.zeros(())
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            loss = train_step(model, optimizer, train.take(idx))
            loss_sum += loss * len(idx)
            progress.advance()
        train_time = time.perf_counter() - t0
        if not torch.isfinite(loss_sum):
            raise TrainingDiverged(
                f"training loss is {float(loss_sum)} in epoch {epoch}: the model diverged "
                f"(optim.lr={optim.lr}; try a lower learning rate)"
            )

        valid_p = predict_pd(model, valid.x_num, valid.x_cat, trainer.eval_batch_size)
        row = {
            "train_loss": float(loss_sum) / n,
            "valid_auc": metrics.auc(y_valid, valid_p),
            "valid_log_loss": metrics.log_loss(y_valid, valid_p),
            "rows_per_s": n / train_time,
            "epoch_time_s": time.perf_counter() - t0,
        }
        improved = row["valid_auc"] > result.best_valid_auc
        if improved:
            result.best_epoch, result.best_valid_auc = epoch, row["valid_auc"]
            best_state = copy.deepcopy(model.state_dict())
        result.epochs_run = epoch
        result.history.append({"epoch": epoch, **row})
        tracker.log_metrics(row, step=epoch)
        progress.end_epoch(epoch, {**row, "is_best": improved})
        if epoch - result.best_epoch >= trainer.patience:
            break

    model.load_state_dict(best_state)
    return result
