"""Every shipped config composes; bad values are refused with the key and the value named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from tests.conftest import CONFIGS, compose_config
from training.config import TrainConfig
from training.data.schema import Kind
from training.errors import ConfigError
from training.launch.config import LAUNCHER_CONFIGS
from training.models.config import MODEL_CONFIGS

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


def _leaves(node: dict, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.001}}`` -> ``{"optim.lr": 0.001}``."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def yaml_values(rel: str, root: Path = CONFIGS) -> dict[str, Any]:
    """Every value a config file sets, by dotted key, as written (interpolations unresolved)."""
    node = OmegaConf.to_container(OmegaConf.load(root / rel), resolve=False)
    for key in ("defaults", "hydra"):
        node.pop(key, None)
    return _leaves(node)


def schema_defaults(schema: type) -> dict[str, Any]:
    """Every field's default in a config dataclass, by dotted key, as YAML would write it."""
    node = OmegaConf.structured(schema)
    return _leaves(OmegaConf.to_container(node, resolve=False, enum_to_str=True))


def disagreements(rel: str, schema: type, root: Path = CONFIGS) -> dict[str, tuple[Any, Any]]:
    """(the YAML's value, the dataclass default) of each key where they differ."""
    defaults = schema_defaults(schema)
    return {
        key: (value, defaults.get(key, "<no such field>"))
        for key, value in yaml_values(rel, root).items()
        if key not in defaults or defaults[key] != value
    }


# train.yaml and each option of the groups with a dataclass of their own: the YAML states the
# defaults so people can read them, the dataclass holds them; they must be the same values. (The
# options of data, cluster and sweep share one dataclass and set their own values on purpose.)
STATED = [("train.yaml", TrainConfig)] + [
    (f"{group}/{name}.yaml", schema)
    for group, options in (("model", MODEL_CONFIGS), ("launcher", LAUNCHER_CONFIGS))
    for name, schema in options.items()
]


@pytest.mark.parametrize(("rel", "schema"), STATED, ids=[rel for rel, _ in STATED])
def test_the_yaml_states_the_dataclass_defaults(rel, schema):
    assert yaml_values(rel), f"configs/{rel} sets no value"
    assert disagreements(rel, schema) == {}, f"configs/{rel} (value, dataclass default)"


def test_the_defaults_check_sees_a_value_that_differs(tmp_path):
    (tmp_path / "train.yaml").write_text(
        "defaults:\n  - train_schema\noptim:\n  lr: 3.0e-4\n  batch_size: 512\n"
        "registry:\n  name: credit-risk-${data.name}\n  flavour: x\n"
    )
    assert disagreements("train.yaml", TrainConfig, tmp_path) == {
        "optim.lr": (3.0e-4, 1.0e-3),
        "registry.flavour": ("x", "<no such field>"),
    }


def test_the_default_job_composes_from_the_yaml_it_states():
    cfg = compose_config()
    assert cfg.optim.lr == yaml_values("train.yaml")["optim.lr"]
    assert cfg.model.d_block == yaml_values("model/mlp.yaml")["d_block"]
