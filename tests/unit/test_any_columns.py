"""Any lender's file trains with every model: only numeric columns, only categorical, or both."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.config import TrainConfig
from training.core.config import OptimConfig, TrainerConfig
from training.core.loop import fit
from training.core.parallel import Role, build
from training.core.run_dir import RunDir
from training.data.config import DataConfig
from training.data.prepare import prepare
from training.data.schema import FeatureSpec, Kind
from training.governance.benchmark import gbdt_benchmark
from training.governance.config import BenchmarkConfig
from training.launch.config import LocalLauncherConfig
from training.models.build import predict_pd
from training.models.config import MLPConfig, TabMConfig
from training.runtime.dist import DistContext
from training.serving.bundle import Scorer, save_bundle

N = 1500


def _book(path, kinds: str) -> list[FeatureSpec]:
    rng = np.random.default_rng(0)
    income = rng.lognormal(10, 1, N)
    sector = rng.choice(["retail", "tech", "farming", "transport"], N)
    risk = -2 * (np.log(income) - 10) + 2.5 * (sector == "farming") - 1.5 * (sector == "tech")
    frame = pd.DataFrame({"bad": (rng.random(N) < 1 / (1 + np.exp(-(risk - 1)))).astype(int)})
    features = []
    if "numeric" in kinds:
        frame["income"] = np.where(rng.random(N) < 0.1, np.nan, income)
        features.append(FeatureSpec(name="income", kind=Kind.numeric))
    if "categorical" in kinds:
        frame["sector"] = sector
        features.append(FeatureSpec(name="sector", kind=Kind.categorical))
    frame.to_csv(path, index=False)
    return features


@pytest.mark.parametrize("kinds", ["numeric", "categorical", "numeric+categorical"])
@pytest.mark.parametrize(
    "model",
    [
        MLPConfig(d_block=16, n_blocks=1),
        MLPConfig(d_block=16, n_blocks=1, num_embeddings="periodic"),
        TabMConfig(k=4, d_block=16, n_blocks=1, num_embeddings="piecewise", n_bins=8),
    ],
    ids=["mlp", "mlp-periodic", "tabm-piecewise"],
)
def test_a_book_trains_scores_and_benchmarks_with_every_model(tmp_path, kinds, model):
    features = _book(tmp_path / "book.csv", kinds)
    data_cfg = DataConfig(
        name="book",
        format="csv",
        root=str(tmp_path),
        path="book.csv",
        target="bad",
        features=features,
    )
    cfg = TrainConfig(data=data_cfg, model=model, launcher=LocalLauncherConfig())
    data = prepare(cfg.data, benchmark_rows=cfg.benchmark.rows)
    state, bins = build(cfg, data.training, Role.of(cfg, DistContext(), RunDir(tmp_path)), resume=None)
    optim, trainer = OptimConfig(lr=1e-2, batch_size=64), TrainerConfig(max_epochs=3, patience=3)
    result = fit(state, data.training.train, data.training.valid, optim, trainer)
    assert result.epochs_run == 3 and result.best_valid_auc > 0.55  # it learns from these columns
    save_bundle(tmp_path / "m", model=state.model, members=[(model, bins)], pre=data.training.pre,
                schema=data.training.schema)  # fmt: skip
    frame = data.evaluation.frames["test"]
    t = data.tensors("test")
    np.testing.assert_allclose(
        Scorer(tmp_path / "m").predict(frame), predict_pd(state.model, t.x_num, t.x_cat), atol=1e-6
    )
    gbdt = gbdt_benchmark(BenchmarkConfig(n_trials=1), data, DistContext())
    assert gbdt["test"]["n"] == len(frame) and 0 <= gbdt["test"]["auc"] <= 1
