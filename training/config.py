"""The typed config tree: one small dataclass per concern, validated at start-up.

Each concern's dataclass lives with its component, in ``training/<wing>/config.py``; this module
nests them into the job's tree (``TrainConfig``) and owns what is done with the whole tree.

Hydra composes YAML over these dataclasses (registered in its ConfigStore as the schema), so an
unknown key or a wrong type fails at composition. Range checks live in ``__post_init__`` and
run when the entry point converts the composed config once with ``OmegaConf.to_object``; the
library never sees a ``DictConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from training.cluster.config import ClusterConfig
from training.core.config import CheckpointConfig, OptimConfig, RecipeConfig, TrainerConfig
from training.data.config import DataConfig
from training.errors import ConfigError, check
from training.governance.config import BenchmarkConfig, FairnessConfig
from training.launch.config import LAUNCHER_CONFIGS, LauncherConfig, SweepConfig
from training.models.config import MODEL_CONFIGS, CalibrationConfig, ModelConfig
from training.serving.config import ExplainConfig, ScoreScale
from training.tracking.config import RegistryConfig, TrackingConfig

__all__ = [
    "NOT_TRAINING",
    "TrainConfig",
    "from_options",
    "register_configs",
    "to_config",
    "to_dict",
    "training_dict",
]


@dataclass(kw_only=True)
class TrainConfig:
    """The whole job: one node per concern."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = MISSING  # an option of the group: MLPConfig, TabMConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    launcher: LauncherConfig = MISSING  # an option of the group: local, mpi, ray
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    score: ScoreScale = field(default_factory=ScoreScale)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        check(
            self.sweep.ensemble_top_k < 2
            or not any(k.startswith("data.") for k in self.sweep.params),
            "sweep.ensemble_top_k",
            self.sweep.ensemble_top_k,
            "needs one preprocessing for every member: search no data.* key, or set it to 0",
        )
        check(
            self.recipe.name == "fixed" or not self.sweep.params,
            "recipe.name",
            self.recipe.name,
            "must be fixed in a sweep (the sweep chooses among its own trials)",
        )
        for name in self.sweep.params:  # every searched key must be a value of this tree
            node: Any = self
            for part in name.split("."):
                check(
                    hasattr(node, part) and part in {f.name for f in fields(node)},
                    f"sweep.params.{name}",
                    name,
                    "is not a config key (e.g. optim.lr, model.d_block)",
                )
                node = getattr(node, part)
            check(
                not is_dataclass(node),
                f"sweep.params.{name}",
                name,
                "names a config group, not a value",
            )


def register_configs() -> None:
    """Register the schema so YAML files are validated against the dataclasses.

    Each option of the ``model`` and ``launcher`` groups has its own dataclass, stored as
    ``<group>/<option>_schema``; its YAML lists that schema first in its defaults.
    """
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for name, node in MODEL_CONFIGS.items():
        store.store(group="model", name=f"{name}_schema", node=node)
    for name, node in LAUNCHER_CONFIGS.items():
        store.store(group="launcher", name=f"{name}_schema", node=node)


def to_config(cfg: Any) -> TrainConfig:
    """Convert a composed DictConfig once into the typed tree, running every range check."""
    _reject_unknown_keys(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as e:  # OmegaConf wraps errors raised inside __post_init__
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(str(e)) from e


def asks_for_help(argv: list[str], doc: str | None) -> bool:
    """``-h``/``--help`` among a small job's options: print its docstring (the manual) first."""
    if {"-h", "--help"} & set(argv):
        print(doc)
        return True
    return False


def from_options(schema: type, argv: list[str]) -> Any:
    """A small job's ``key=value`` options into its dataclass, checked: an unknown key, a wrong
    type, a missing value or an out-of-range one is a ``ConfigError`` naming it."""
    try:
        return OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        )
    except ConfigError:
        raise
    except Exception as e:  # OmegaConf's own errors (and those it wraps): their first line
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(str(e).splitlines()[0]) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config (or any node of it) as plain containers, enums as their names."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


# Settings of what runs around a training run (the Slurm allocation, the search), not of the run.
NOT_TRAINING = ("cluster", "sweep")


def training_dict(cfg: TrainConfig) -> dict[str, Any]:
    """What a training run logs as its params and checks on resume: the config less ``NOT_TRAINING``."""
    return {k: v for k, v in to_dict(cfg).items() if k not in NOT_TRAINING}


def _reject_unknown_keys(node: Any, path: str = "") -> None:
    """Hydra's ``+key=value`` can append keys the schema lacks; refuse them rather than drop them."""
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _reject_unknown_keys(item, f"{path}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    schema = OmegaConf.get_type(node)
    known = {f.name for f in fields(schema)} if is_dataclass(schema) else None
    for key in node:
        full = f"{path}.{key}" if path else str(key)
        if known is not None and key not in known:
            raise ConfigError(
                f"config {full}: unknown key (not a field of {schema.__name__}; known: {sorted(known)})"
            )
        _reject_unknown_keys(node._get_node(key), full)
