"""The training loop, the models and the saved bundle, on tiny tensors: no processes, no MLflow."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from training import metrics
from training.core.config import OptimConfig, TrainerConfig
from training.core.loop import fit, loss_fn, train_step
from training.core.state import LRSchedule, TrainState
from training.data.preprocess import Preprocessor
from training.data.schema import FeatureSpec, Kind, Schema
from training.data.tensors import Tensors
from training.models.build import build_model, predict_pd
from training.models.config import MODEL_CONFIGS, MLPConfig, ModelConfig, TabMConfig
from training.models.embeddings import fit_bins
from training.serving.bundle import Scorer, save_bundle

ROOT = Path(__file__).resolve().parents[2]


def _toy(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Default depends non-linearly on x1, x2 and the sector."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.lognormal(size=n)
    sector = rng.choice(["a", "b", "c"], n)
    logit = -1.5 + 1.5 * x1 + np.log(x2) ** 2 * 0.5 + (sector == "c") * 1.0
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "sector": sector,
            "bad": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )


SCHEMA = Schema(
    features=[
        FeatureSpec(name="x1"),
        FeatureSpec(name="x2"),
        FeatureSpec(name="sector", kind=Kind.categorical),
    ],
    target="bad",
)


def _tensors(pre: Preprocessor, frame: pd.DataFrame) -> Tensors:
    x_num, x_cat = pre.transform(frame)
    return Tensors(
        torch.from_numpy(x_num),
        torch.from_numpy(x_cat),
        torch.tensor(frame.bad.to_numpy(), dtype=torch.float32),
    )


@pytest.fixture(scope="module")
def toy():
    train, valid = _toy(3000, 0), _toy(1000, 1)
    pre = Preprocessor.fit(train, SCHEMA)
    return pre, _tensors(pre, train), _tensors(pre, valid), valid


def _model(pre: Preprocessor, cfg: ModelConfig, train: Tensors, seed: int = 0):
    torch.manual_seed(seed)
    bins = fit_bins(cfg, train.x_num)
    return build_model(
        cfg, n_num=pre.n_num_features, cat_cardinalities=pre.cat_cardinalities, bins=bins
    ), bins


@pytest.mark.parametrize("name, k", [("mlp", 1), ("tabm", 4)])
def test_models_give_one_logit_per_member(toy, name, k):
    pre, train, _, _ = toy
    model, _ = _model(
        pre,
        MODEL_CONFIGS[name](d_block=16, n_blocks=1, **({"k": 4} if name == "tabm" else {})),
        train,
    )
    assert model(train.x_num[:5], train.x_cat[:5]).shape == (5, k)


def test_loss_averages_members():
    logits, y = torch.tensor([[0.0, 2.0]]), torch.tensor([1.0])
    expected = (np.log(2) + np.log(1 + np.exp(-2))) / 2
    assert loss_fn(logits, y).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_moves_the_targets_towards_one_half():
    logits, y = torch.tensor([[0.3], [-1.0]]), torch.tensor([1.0, 0.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 0], torch.tensor([0.95, 0.05])
    )
    assert loss_fn(logits, y, smoothing=0.1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_grad_clip_bounds_the_gradient_norm(toy):
    pre, train, _, _ = toy
    model, _ = _model(pre, MLPConfig(d_block=32, n_blocks=2, dropout=0.0), train)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_step(model, opt, train, grad_clip=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm.item() == pytest.approx(1e-3, rel=1e-4)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    optim = OptimConfig(lr=1.0, schedule="cosine", warmup_epochs=2)
    schedule = LRSchedule(optim)
    schedule.start(steps_per_epoch=10, max_epochs=12)
    lrs = []
    for _ in range(120):
        lrs.append(schedule.lr())
        schedule.t += 1
    assert lrs[0] == pytest.approx(0.05) and lrs[19] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:], strict=False))
    assert lrs[70] == pytest.approx(0.5, abs=0.02) and lrs[-1] < 1e-3


def test_plateau_schedule_cuts_after_patience_epochs_without_progress():
    schedule = LRSchedule(OptimConfig(lr=1.0, schedule="plateau", plateau_patience=2))
    scales = []
    for epoch, best in [(1, 1), (2, 1), (3, 1), (4, 1), (5, 5), (6, 5), (7, 5)]:
        schedule.end_epoch(epoch, best)
        scales.append(schedule.scale)
    assert scales == pytest.approx([1, 1, 0.3, 0.3, 0.3, 0.3, 0.09])


def test_train_step_reduces_loss(toy):
    pre, train, _, _ = toy
    model, _ = _model(pre, MLPConfig(d_block=32, n_blocks=2, dropout=0.0), train)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = train_step(model, opt, train).item()
    for _ in range(30):
        last = train_step(model, opt, train).item()
    assert last < first * 0.9


@pytest.mark.parametrize(
    "cfg",
    [
        MLPConfig(d_block=32, n_blocks=2),
        TabMConfig(k=4, d_block=32, n_blocks=1, num_embeddings="piecewise", n_bins=8),
    ],
)
def test_fit_learns_keeps_best_weights_and_is_deterministic(toy, cfg):
    pre, train, valid, _ = toy
    runs = []
    for _ in range(2):
        model, _ = _model(pre, cfg, train)
        optim = OptimConfig(lr=3e-3, batch_size=128)
        state = TrainState.create(model, optim, seed=7)
        result = fit(state, train, valid, optim, TrainerConfig(max_epochs=6, patience=2))
        runs.append((model, result))
    (m1, r1), (m2, r2) = runs
    assert r1.best_valid_auc > 0.75
    p = predict_pd(m1, valid.x_num, valid.x_cat)
    assert metrics.auc(valid.y.numpy(), p) == pytest.approx(
        r1.best_valid_auc
    )  # the best epoch's weights
    assert [h["valid_auc"] for h in r1.history] == [h["valid_auc"] for h in r2.history]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_early_stopping_stops_after_patience(toy):
    pre, train, valid, _ = toy
    model, _ = _model(pre, MLPConfig(d_block=32, n_blocks=2), train)
    # A huge learning rate makes validation AUC stall quickly.
    optim = OptimConfig(lr=5.0, batch_size=64)
    state = TrainState.create(model, optim, seed=0)
    result = fit(state, train, valid, optim, TrainerConfig(max_epochs=30, patience=2))
    assert result.epochs_run == result.best_epoch + 2 < 30


@pytest.mark.parametrize(
    "cfg",
    [
        MLPConfig(d_block=16, n_blocks=1, num_embeddings="periodic"),
        TabMConfig(k=3, d_block=16, n_blocks=1, num_embeddings="piecewise", n_bins=8),
    ],
)
def test_bundle_round_trip_gives_the_same_pds(toy, tmp_path, cfg):
    pre, train, _, valid_frame = toy
    model, bins = _model(pre, cfg, train)
    save_bundle(tmp_path, model=model, members=[(cfg, bins)], pre=pre, schema=SCHEMA)
    assert {p.name for p in tmp_path.iterdir()} == {"weights.safetensors", "bundle.json"}
    expected = predict_pd(model, *map(torch.from_numpy, pre.transform(valid_frame)))
    np.testing.assert_allclose(Scorer(tmp_path).predict(valid_frame), expected, rtol=1e-6)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path",
    [
        "training/core/loop.py",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "training/models").glob("*.py")),
    ],
)
def test_loop_and_models_know_nothing_of_launchers(path):
    assert not _imports(ROOT / path) & {"ray", "mpi4py", "submitit", "mlflow", "hydra"}
