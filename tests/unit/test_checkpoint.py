"""Checkpoints are atomic and checksummed, corrupt ones are skipped, and resume is exact."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.unit.test_loop import _model, toy  # noqa: F401 - the toy data fixture
from training.core.checkpoint import Checkpointer, checkpoint_name, load_latest, save
from training.core.config import CheckpointConfig, OptimConfig, TrainerConfig
from training.core.loop import Hooks, fit
from training.core.state import TrainState
from training.models.config import MLPConfig
from training.runtime.dist import DistContext
from training.runtime.preemption import Preempted


def _state(epoch: int, step: int) -> dict:
    return {"epoch": epoch, "step": step, "w": torch.full((3,), float(epoch * 100 + step))}


def test_save_keeps_the_last_k_and_writes_checksums(tmp_path):
    for e in range(1, 6):
        save(tmp_path, _state(e, 0), keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        checkpoint_name(4, 0),
        checkpoint_name(4, 0) + ".sha256",
        checkpoint_name(5, 0),
        checkpoint_name(5, 0) + ".sha256",
    ]
    state, path = load_latest(tmp_path)
    assert path.name == checkpoint_name(5, 0) and state["w"][0].item() == 500
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_checksum", "garbage"])
def test_a_corrupt_or_partial_checkpoint_is_skipped_with_a_warning(tmp_path, caplog, damage):
    save(tmp_path, _state(1, 0), keep=5)
    latest = save(tmp_path, _state(2, 7), keep=5)
    data = latest.read_bytes()
    if damage == "truncate":
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        latest.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "no_checksum":
        latest.with_name(latest.name + ".sha256").unlink()
    else:  # a matching checksum over bytes that are not a checkpoint
        import hashlib

        latest.write_bytes(b"not a checkpoint")
        latest.with_name(latest.name + ".sha256").write_text(
            hashlib.sha256(b"not a checkpoint").hexdigest()
        )
    with caplog.at_level(logging.WARNING, logger="riskbrain"):
        state, path = load_latest(tmp_path)
    assert path.name == checkpoint_name(1, 0) and state["epoch"] == 1
    assert latest.name in caplog.text and "trying the previous one" in caplog.text


def test_no_valid_checkpoint_means_none(tmp_path):
    assert load_latest(tmp_path) is None


def _fit(pre, train, valid, tmp_path, resume=None, stop=lambda: False, **recipe):
    model, _ = _model(pre, MLPConfig(d_block=32, n_blocks=2, dropout=0.2), train)
    ckpt = Checkpointer(
        tmp_path,
        CheckpointConfig(every_epochs=1, every_steps=7, keep=2),
        DistContext(),
        {"run_id": "r"},
    )
    optim = OptimConfig(lr=3e-3, batch_size=128, **recipe)
    state = TrainState.create(model, optim, seed=3)
    if resume is not None:
        state.load_state_dict(resume)
    trainer = TrainerConfig(max_epochs=4, patience=10)
    result = fit(state, train, valid, optim, trainer, hooks=Hooks(checkpointer=ckpt, stop=stop))
    return model, result


# The learning-rate schedule's position is part of the state: a resumed run continues the warm-up
# and the decay where they were (as do clipping and label smoothing, which hold no state).
RECIPES = {
    "constant": {},
    "cosine": {
        "schedule": "cosine",
        "warmup_epochs": 1.5,
        "grad_clip": 0.5,
        "label_smoothing": 0.05,
    },
    "plateau": {"schedule": "plateau", "plateau_patience": 1, "plateau_factor": 0.5},
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_stop_then_resume_equals_an_uninterrupted_run(toy, tmp_path, recipe):  # noqa: F811
    pre, train, valid, _ = toy
    recipe = RECIPES[recipe]
    reference, ref_result = _fit(pre, train, valid, tmp_path / "ref", **recipe)

    calls = {"n": 0}

    def stop_after_40_steps() -> bool:
        calls["n"] += 1
        return calls["n"] > 40  # mid-epoch 2 (24 steps an epoch)

    with pytest.raises(Preempted):
        _fit(pre, train, valid, tmp_path / "cut", stop=stop_after_40_steps, **recipe)
    state, path = load_latest(tmp_path / "cut")
    assert (state["epoch"], state["step"]) == (2, 17) and state["run_id"] == "r"

    assert state["schedule"]["t"] == 24 + 17
    resumed, result = _fit(pre, train, valid, tmp_path / "cut", resume=state, **recipe)
    assert [h["lr"] for h in result.history] == [h["lr"] for h in ref_result.history]
    assert [h["valid_auc"] for h in result.history] == [h["valid_auc"] for h in ref_result.history]
    assert [h["train_loss"] for h in result.history] == pytest.approx(
        [h["train_loss"] for h in ref_result.history], rel=1e-6
    )
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
