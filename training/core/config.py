"""The job's own settings: the optimiser (``optim.*``), the loop (``trainer.*``), checkpoints
(``checkpoint.*``), how the ranks share the work (``launcher.parallelism``), and whether the job
chooses its recipe (``recipe.*``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from training.constants import STOP_SIGNAL
from training.errors import as_enum, check, check_signal


class Parallelism(StrEnum):
    data = "data"  # one network; each rank trains on its shard of the rows, gradients summed
    ensemble = "ensemble"  # one network per rank (seed + rank), each on every row; averaged


class Schedule(StrEnum):
    """The learning rate over training, after ``optim.warmup_epochs`` of linear warm-up."""

    constant = "constant"
    cosine = "cosine"  # cosine decay to 0 at the end of trainer.max_epochs
    plateau = "plateau"  # cut by plateau_factor when valid AUC stalls for plateau_patience epochs


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW, its learning-rate schedule (``training/core/state.py``), gradient clipping, label smoothing."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 512
    schedule: Schedule = Schedule.constant
    warmup_epochs: float = 0.0  # linear warm-up from ~0 to lr over this many epochs
    plateau_patience: int = 3  # schedule=plateau: epochs without a better valid AUC before a cut
    plateau_factor: float = 0.3  # schedule=plateau: the learning rate is multiplied by this
    grad_clip: float = 0.0  # the gradients' global L2 norm is clipped to this; 0 = off
    label_smoothing: float = 0.0  # the loss's targets are y (1 - s) + s / 2

    def __post_init__(self) -> None:
        self.schedule = as_enum(Schedule, "optim.schedule", self.schedule)
        check(self.lr > 0, "optim.lr", self.lr, "must be > 0")
        check(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "must be >= 0")
        check(self.batch_size > 0, "optim.batch_size", self.batch_size, "must be > 0")
        check(self.warmup_epochs >= 0, "optim.warmup_epochs", self.warmup_epochs, "must be >= 0")
        check(
            self.plateau_patience > 0,
            "optim.plateau_patience",
            self.plateau_patience,
            "must be > 0",
        )
        check(
            0 < self.plateau_factor < 1,
            "optim.plateau_factor",
            self.plateau_factor,
            "must be in (0, 1)",
        )
        check(self.grad_clip >= 0, "optim.grad_clip", self.grad_clip, "must be >= 0 (0 = off)")
        check(
            0 <= self.label_smoothing < 0.5,
            "optim.label_smoothing",
            self.label_smoothing,
            "must be in [0, 0.5)",
        )


@dataclass(kw_only=True)
class TrainerConfig:
    """The loop: epochs, early stopping on validation AUC, evaluation batch size."""

    max_epochs: int = 100
    patience: int = 16
    eval_batch_size: int = 16_384

    def __post_init__(self) -> None:
        for key in ("max_epochs", "patience", "eval_batch_size"):
            check(getattr(self, key) > 0, f"trainer.{key}", getattr(self, key), "must be > 0")


@dataclass(kw_only=True)
class CheckpointConfig:
    """Checkpoints for preemption-safe, exact resume (in ``<output dir>/checkpoints``)."""

    every_epochs: int = 1  # 0 = never at epoch ends
    every_steps: int = 0  # global batches; 0 = never mid-epoch
    keep: int = 3  # the last K are kept
    resume: bool = True  # start from the latest valid checkpoint in the output folder, if any
    signal: str = (
        STOP_SIGNAL  # on this signal the job checkpoints at the next step and exits (code 3)
    )

    def __post_init__(self) -> None:
        check(self.every_epochs >= 0, "checkpoint.every_epochs", self.every_epochs, "must be >= 0")
        check(self.every_steps >= 0, "checkpoint.every_steps", self.every_steps, "must be >= 0")
        check(self.keep > 0, "checkpoint.keep", self.keep, "must be > 0")
        check_signal("checkpoint.signal", self.signal)


# The candidates ``recipe=auto`` knows (``training/core/recipe.py`` says what each changes).
CANDIDATES = ("base", "embeddings", "embeddings_ls", "tabm")


@dataclass(kw_only=True)
class RecipeConfig:
    """``fixed``: train the recipe as composed. ``auto``: train each of ``candidates`` on the
    training rows first, keep the best by validation AUC, and train that (``training/core/recipe.py``)."""

    name: str = "fixed"  # fixed | auto
    candidates: list[str] = field(default_factory=lambda: ["base", "embeddings", "embeddings_ls"])
    budget_minutes: float = 60.0  # no candidate starts after this long (the first always runs)

    def __post_init__(self) -> None:
        check(self.name in ("fixed", "auto"), "recipe.name", self.name, "must be fixed or auto")
        check(len(self.candidates) > 0, "recipe.candidates", self.candidates, "must not be empty")
        for i, c in enumerate(self.candidates):
            check(c in CANDIDATES, f"recipe.candidates[{i}]", c, f"must be one of {CANDIDATES}")
        check(self.budget_minutes > 0, "recipe.budget_minutes", self.budget_minutes, "must be > 0")
