"""What a training run is at any step: model, optimizer, best weights, batch order, position.

``TrainState.state_dict()`` is the whole checkpoint format (``training/core/checkpoint.py`` adds every
rank's RNG state and the run's identity); ``load_state_dict`` continues exactly where it was taken.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from training.core.config import OptimConfig, Schedule


@dataclass
class FitResult:
    best_epoch: int = 0
    best_valid_auc: float = -1.0
    epochs_run: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """What the evaluation report keeps: everything but the per-epoch history."""
        return {k: v for k, v in vars(self).items() if k != "history"}


@dataclass
class LRSchedule:
    """The learning rate at each global step: linear warm-up over ``warmup_epochs``, then constant,
    cosine decay to 0 at the end of ``max_epochs``, or cut by ``plateau_factor`` whenever
    validation AUC has not improved for ``plateau_patience`` epochs.

    ``t`` (steps taken), ``scale`` and ``last_cut`` (the plateau cuts so far) are its state; the
    length of an epoch and of the run are set by ``fit`` (``start``) from the data and the config.
    """

    cfg: OptimConfig
    steps_per_epoch: int = 1
    max_epochs: int = 1
    t: int = 0
    scale: float = 1.0
    last_cut: int = 0

    def start(self, steps_per_epoch: int, max_epochs: int) -> None:
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs

    def lr(self) -> float:
        """The learning rate of step ``t`` (0-based)."""
        warm = self.cfg.warmup_epochs * self.steps_per_epoch
        f = min(1.0, (self.t + 1) / warm) if warm > 0 else 1.0
        if self.cfg.schedule is Schedule.cosine:
            total = self.max_epochs * self.steps_per_epoch
            progress = min(1.0, max(0.0, self.t - warm) / max(1.0, total - warm))
            f *= 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.cfg.lr * f * self.scale

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        """Set step ``t``'s learning rate on ``optimizer``; call before the step, then ``t += 1``."""
        lr = self.lr()
        for group in optimizer.param_groups:
            group["lr"] = lr

    def end_epoch(self, epoch: int, best_epoch: int) -> None:
        """schedule=plateau: cut the rate after ``plateau_patience`` epochs without progress."""
        if self.cfg.schedule is not Schedule.plateau:
            return
        if epoch - max(best_epoch, self.last_cut) >= self.cfg.plateau_patience:
            self.scale *= self.cfg.plateau_factor
            self.last_cut = epoch

    def state_dict(self) -> dict[str, float]:
        return {"t": self.t, "scale": self.scale, "last_cut": self.last_cut}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.t, self.scale, self.last_cut = state["t"], state["scale"], state["last_cut"]


@dataclass
class TrainState:
    """A run ``step`` global batches into ``epoch`` (1-based), with the epoch's loss so far.

    ``generator`` draws each epoch's permutation of the global training rows, so the batch order
    depends on the seed alone; ``epoch_start`` is its state before this epoch's draw, which is
    what a checkpoint taken mid-epoch stores to replay the same permutation.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    best_model: dict[str, torch.Tensor]
    schedule: LRSchedule
    result: FitResult = field(default_factory=FitResult)
    epoch: int = 1
    step: int = 0
    loss_sum: float = 0.0
    epoch_start: torch.Tensor | None = None

    @classmethod
    def create(cls, model: nn.Module, optim: OptimConfig, seed: int) -> TrainState:
        """A fresh run: AdamW over the model's parameters and its learning-rate schedule, the
        batch order seeded by ``seed``."""
        return cls(
            model=model,
            optimizer=torch.optim.AdamW(
                model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay
            ),
            generator=torch.Generator().manual_seed(seed),
            best_model=copy.deepcopy(model.state_dict()),
            schedule=LRSchedule(optim),
        )

    def permutation(self, n: int) -> torch.Tensor:
        """This epoch's order of the ``n`` global training rows."""
        self.epoch_start = self.generator.get_state()
        return torch.randperm(n, generator=self.generator)

    def end_epoch(self, row: dict[str, float]) -> bool:
        """Record the epoch's metrics, keep the weights if validation AUC improved, move to the
        next epoch. Returns whether it improved."""
        improved = row["valid_auc"] > self.result.best_valid_auc
        if improved:
            self.result.best_epoch, self.result.best_valid_auc = self.epoch, row["valid_auc"]
            self.best_model = copy.deepcopy(self.model.state_dict())
        self.result.epochs_run = self.epoch
        self.schedule.end_epoch(self.epoch, self.result.best_epoch)
        self.result.history.append({"epoch": self.epoch, **row})
        self.epoch, self.step, self.loss_sum = self.epoch + 1, 0, 0.0
        return improved

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loadable with ``weights_only=True``)."""
        mid_epoch = self.step > 0
        return {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "best_model": self.best_model,
            "result": vars(self.result),
            "generator": self.epoch_start if mid_epoch else self.generator.get_state(),
            "loss_sum": float(self.loss_sum),
            "torch_rng": [torch.get_rng_state()],  # the checkpointer gathers every rank's
        }

    def load_state_dict(self, state: dict[str, Any], rank: int = 0) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.best_model, self.result = state["best_model"], FitResult(**state["result"])
        self.generator.set_state(state["generator"])
        # Dropout masks: each rank continues its own random stream.
        torch.set_rng_state(state["torch_rng"][rank % len(state["torch_rng"])])
        self.epoch, self.step, self.loss_sum = state["epoch"], state["step"], state["loss_sum"]
