"""Checkpoints: written atomically with a checksum, the last K kept, the latest valid one resumed.

A checkpoint is a ``TrainState.state_dict()`` (``training/core/state.py``) plus every rank's RNG state
and the run's identity: tensors and plain values saved with ``torch.save`` and loaded with
``weights_only=True`` (no pickled code). Next to ``ckpt-e0003-s0000120.pt`` sits its SHA-256 in
``ckpt-e0003-s0000120.pt.sha256``, written after the data; a file whose checksum is missing or
wrong (a crash mid-write, a truncated copy) is skipped with a warning in favour of the previous one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from training.core.config import CheckpointConfig
from training.core.state import TrainState
from training.runtime.dist import DistContext

log = logging.getLogger("riskbrain")


class Checkpointer:
    """When to checkpoint, and the collective save: every rank's RNG state, written by rank 0.

    ``meta`` identifies the run in every checkpoint (``run_id``: the MLflow run a resume
    reopens; ``config``: what a resume must match).
    """

    def __init__(
        self, directory: Path, cfg: CheckpointConfig, ctx: DistContext, meta: dict[str, Any]
    ) -> None:
        self.directory, self.cfg, self.ctx, self.meta = directory, cfg, ctx, meta

    def due_step(self, global_step: int) -> bool:
        return self.cfg.every_steps > 0 and global_step % self.cfg.every_steps == 0

    def due_epoch(self, epoch: int) -> bool:
        return self.cfg.every_epochs > 0 and epoch % self.cfg.every_epochs == 0

    def save(self, state: TrainState) -> None:
        rng = self.ctx.allgather(torch.get_rng_state())  # dropout masks differ per rank
        if self.ctx.is_main:
            snapshot = {**state.state_dict(), "torch_rng": rng, **self.meta}
            path = save(self.directory, snapshot, keep=self.cfg.keep)
            log.info("checkpoint %s", path.name)


def checkpoint_name(epoch: int, step: int) -> str:
    """Position where training resumes: ``step`` global batches into ``epoch``. Sorts by time."""
    return f"ckpt-e{epoch:04d}-s{step:07d}.pt"


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(directory: Path, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``state`` atomically (temporary file, fsync, rename), then its checksum; prune to ``keep``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / checkpoint_name(state["epoch"], state["step"])
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    _fsync_write(path, data)
    _fsync_write(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest().encode())
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the renames themselves survive a crash
    finally:
        os.close(dir_fd)
    for old in sorted(directory.glob("ckpt-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    return path


def load_latest(directory: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint whose checksum matches, or None; corrupt ones are skipped with a warning."""
    for path in sorted(directory.glob("ckpt-*.pt"), reverse=True):
        problem = _verify(path)
        if problem is None:
            try:
                return torch.load(path, map_location="cpu", weights_only=True), path
            except Exception as e:  # noqa: BLE001 - any unreadable file is skipped the same way
                problem = f"cannot be read ({type(e).__name__}: {e})"
        log.warning("checkpoint %s %s; trying the previous one", path, problem)
    return None


def _verify(path: Path) -> str | None:
    digest_file = path.with_name(path.name + ".sha256")
    if not digest_file.is_file():
        return "has no checksum (incomplete write)"
    expected = digest_file.read_text().strip()
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    return None if actual == expected else "fails its checksum (corrupt or partial)"
