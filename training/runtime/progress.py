"""Training progress: a live bar in a terminal, one plain line per epoch in a log file."""

from __future__ import annotations

import logging
import sys

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("riskbrain")


class EpochProgress:
    """Per-batch bar while an epoch runs (terminals only); the epoch summary always goes to the log.

    The summary line, e.g. ``epoch 3/20  loss 0.2411  valid_auc 0.8412  rows/s 412,331  2.1s``,
    reads the same in a terminal and in Hydra's job log file.
    """

    def __init__(
        self, max_epochs: int, enabled: bool | None = None, log_epochs: bool = True
    ) -> None:
        self.max_epochs = max_epochs
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.log_epochs = log_epochs
        self._bar: Progress | None = None
        self._task = None

    def start_epoch(self, epoch: int, n_batches: int) -> None:
        if not self.enabled:
            return
        self._bar = Progress(
            TextColumn(f"epoch {epoch}/{self.max_epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=n_batches, loss=float("nan"))

    def advance(self, loss_sum: torch.Tensor | float, rows: int) -> None:
        """One step done; ``loss_sum`` over this rank's ``rows`` of the batch (read only when shown)."""
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=float(loss_sum) / max(rows, 1))

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if not self.log_epochs:
            return
        log.info(
            "epoch %d/%d  loss %.4f  valid_auc %.4f  rows/s %s  %.1fs%s",
            epoch,
            self.max_epochs,
            metrics["train_loss"],
            metrics["valid_auc"],
            f"{metrics['rows_per_s']:,.0f}",
            metrics["epoch_time_s"],
            "  *best*" if metrics.get("is_best") else "",
        )
