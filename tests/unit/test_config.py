"""Every shipped config composes; bad values are refused with the key and the value named."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from tests.conftest import CONFIGS, compose_config
from training.config import TrainConfig
from training.data.schema import Kind
from training.errors import ConfigError

GROUPS = ["data", "model", "launcher", "debug", "experiment"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


# Options that need a value only the user has (the folder make_portfolio wrote).
REQUIRED = {"data=portfolio": ["data.path=/scratch/book"]}


@pytest.mark.parametrize("override", [f"{g}={o}" for g in GROUPS for o in _options(g)])
def test_every_shipped_config_composes(override):
    cfg = compose_config(override, *REQUIRED.get(override, []))
    assert isinstance(cfg, TrainConfig)
    assert cfg.data.name and cfg.model.name


def test_a_missing_required_value_names_its_key():
    with pytest.raises(ConfigError, match="data.path"):
        compose_config("data=portfolio")


def test_defaults():
    cfg = compose_config()
    assert cfg.data.format == "synthetic" and cfg.model.name == "mlp"
    assert cfg.registry.name == "credit-risk-synthetic_sme" and cfg.registry.alias == "challenger"


def test_feature_kinds_are_typed():
    cfg = compose_config("data=taiwan")
    kinds = {f.name: f.kind for f in cfg.data.features}
    assert kinds["LIMIT_BAL"] is Kind.numeric and kinds["EDUCATION"] is Kind.categorical


@pytest.mark.parametrize(
    "override, names",
    [
        ("optim.lr=-0.001", ["optim.lr", "-0.001"]),
        ("optim.batch_size=0", ["optim.batch_size", "0"]),
        ("data.split.train=0.8", ["data.split.train+valid+test", "1.1"]),
        ("model.name=tabm", ["model.name", "model=tabm"]),
        ("model.dropout=1.5", ["model.dropout", "1.5"]),
        ("trainer.max_epochs=0", ["trainer.max_epochs", "0"]),
    ],
)
def test_out_of_range_values_are_refused(override, names):
    with pytest.raises(ConfigError) as e:
        compose_config(override)
    for name in names:
        assert name in str(e.value)


@pytest.mark.parametrize(
    "override, names",
    [
        ("optim.momentum=0.9", ["momentum"]),
        ("optim.lr=fast", ["optim.lr", "fast"]),
        ("+model.depth=3", ["depth"]),
        ("data.split.method=kfold", ["data.split.method", "kfold"]),
        ("data.format=xlsx", ["data.format", "xlsx"]),
        ("model.name=resnet", ["model.name", "resnet"]),
        ("model.k=4", ["model.k"]),
        ("launcher.num_workers=4", ["launcher.num_workers"]),
    ],
)
def test_unknown_keys_and_wrong_types_fail_at_composition(override, names):
    with pytest.raises((ConfigCompositionException, ConfigError)) as e:
        compose_config(override)
    text = str(e.value) + str(e.value.__cause__ or "")
    for name in names:
        assert name in text


def test_time_split_needs_its_period_column():
    with pytest.raises(ConfigError, match="data.split.period_column"):
        compose_config("data=sba", "data.split.period_column=null")
