"""Sweep search spaces: validated before any trial starts; trials get a valid config of their own."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from tests.conftest import compose_config
from training.config import TrainConfig
from training.errors import ConfigError
from training.launch.config import LocalLauncherConfig, ParamSpec, SweepConfig
from training.launch.sweep import search_space, trial_config
from training.models.config import MLPConfig


def _sweep(**params: ParamSpec) -> TrainConfig:
    return TrainConfig(
        model=MLPConfig(), launcher=LocalLauncherConfig(), sweep=SweepConfig(name="t", params=params)
    )


@pytest.mark.parametrize(
    "params, names",
    [
        (
            {"optim.momentum": ParamSpec(low=0.1, high=0.9)},
            ["sweep.params.optim.momentum", "not a config key"],
        ),
        (
            {"model": ParamSpec(type="choice", choices=["mlp"])},
            ["sweep.params.model", "config group"],
        ),
        (
            {"optim.lr": ParamSpec(low=1e-2, high=1e-4, log=True)},
            ["sweep.params.optim.lr", "empty or inverted"],
        ),
        (
            {"optim.lr": ParamSpec(low=1e-3, high=1e-3)},
            ["sweep.params.optim.lr", "empty or inverted"],
        ),
        (
            {"optim.lr": ParamSpec(low=0.0, high=1e-2, log=True)},
            ["sweep.params.optim.lr.low", "log scale"],
        ),
        (
            {"model.d_block": ParamSpec(type="choice", choices=[])},
            ["sweep.params.model.d_block.choices", "empty"],
        ),
        (
            {"model.d_block": ParamSpec(type="grid", choices=[])},
            ["sweep.params.model.d_block.type", "grid"],
        ),
        ({"optim.lr": ParamSpec(high=1e-2)}, ["sweep.params.optim.lr", "needs low and high"]),
    ],
)
def test_bad_search_spaces_are_refused_with_the_parameter_named(params, names):
    with pytest.raises(ConfigError) as e:
        _sweep(**params)
    for name in names:
        assert name in str(e.value)


@pytest.mark.parametrize(
    "override, name",
    [
        ("sweep.metric=test_auc", "sweep.metric"),
        ("sweep.num_samples=0", "sweep.num_samples"),
        ("sweep.search=grid", "sweep.search"),
    ],
)
def test_bad_sweep_settings_are_refused(override, name):
    # Enum-typed keys (metric, search) are refused by Hydra at composition, the others by to_config.
    with pytest.raises((ConfigError, ConfigCompositionException)) as e:
        compose_config("sweep=smoke", override)
    assert name in str(e.value) + str(e.value.__cause__ or "")


def test_objective_direction_follows_the_metric():
    assert (
        SweepConfig(metric="valid_auc").mode == "max"
        and SweepConfig(metric="valid_log_loss").mode == "min"
    )


def test_search_space_uses_the_declared_scales():
    space = search_space(compose_config("sweep=mlp").sweep)
    lr, blocks, width = space["optim.lr"], space["model.n_blocks"], space["model.d_block"]
    samples = [lr.sample() for _ in range(200)]
    assert min(samples) >= 1e-4 and max(samples) <= 3e-3
    assert (
        sum(s < 5.5e-4 for s in samples) > 60
    )  # log scale: about half the mass below the geometric mean
    assert {blocks.sample() for _ in range(200)} == {1, 2, 3, 4}  # int range includes high
    assert {width.sample() for _ in range(200)} <= {64, 128, 256, 512}


def test_trial_config_applies_values_and_never_registers():
    base = compose_config("sweep=smoke")
    cfg = trial_config(base, {"optim.lr": 0.005, "model.d_block": 64})
    assert (
        cfg.optim.lr == 0.005
        and cfg.model.d_block == 64
        and cfg.model.n_blocks == base.model.n_blocks
    )
    assert cfg.registry.register is False and cfg.checkpoint.every_epochs == 0


def test_trial_config_validates_sampled_values():
    with pytest.raises(ConfigError, match="model.dropout"):
        trial_config(compose_config(), {"model.dropout": 1.5})
