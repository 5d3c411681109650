"""Model configs: one typed dataclass per architecture, validated on construction.

Kept free of Hydra and OmegaConf, so a served model rebuilds its network from the JSON in its
bundle with the same classes (``model_config_from_dict``). ``training/config.py`` registers them
as the options of the ``model`` config group.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from training.errors import as_enum, check, check_option


class ModelName(StrEnum):
    mlp = "mlp"
    tabm = "tabm"


class NumEmbeddings(StrEnum):
    """How numeric features enter the network: raw, piecewise-linear or periodic embeddings."""

    none = "none"
    piecewise = "piecewise"
    periodic = "periodic"


@dataclass(kw_only=True)
class ModelConfig:
    """What every architecture shares: block width and depth, dropout, numeric embeddings, and
    whether the data config's monotone directions are enforced (``training/models/monotone.py``)."""

    name: ModelName
    d_block: int = 256
    n_blocks: int = 3
    dropout: float = 0.1
    num_embeddings: NumEmbeddings = NumEmbeddings.none
    d_embedding: int = 16
    n_bins: int = 32
    monotone: bool = True
    d_event: int = 32  # width of the event-history encoder (training/models/events.py); 0: none

    def __post_init__(self) -> None:
        # Plain strings arrive from Python callers and from a bundle's JSON.
        self.name, self.num_embeddings = ModelName(self.name), NumEmbeddings(self.num_embeddings)
        check_option(self, "model", MODEL_CONFIGS)
        check(self.d_block > 0, "model.d_block", self.d_block, "must be > 0")
        check(self.n_blocks > 0, "model.n_blocks", self.n_blocks, "must be > 0")
        check(0 <= self.dropout < 1, "model.dropout", self.dropout, "must be in [0, 1)")
        check(self.d_embedding > 0, "model.d_embedding", self.d_embedding, "must be > 0")
        check(self.n_bins > 1, "model.n_bins", self.n_bins, "must be > 1")
        check(self.d_event >= 0, "model.d_event", self.d_event, "must be >= 0 (0: no encoder)")


@dataclass(kw_only=True)
class MLPConfig(ModelConfig):
    """The default network: a plain MLP on the encoded features (quantile-normalised numbers, or
    their embeddings with ``num_embeddings``, and one-hot categoricals)."""

    name: ModelName = ModelName.mlp


@dataclass(kw_only=True)
class TabMConfig(ModelConfig):
    """TabM: ``k`` weight-sharing MLPs trained as one ensemble, with piecewise-linear numeric
    embeddings (the defaults are ``configs/model/tabm.yaml``'s, which jobs have always used)."""

    name: ModelName = ModelName.tabm
    k: int = 16
    n_blocks: int = 2
    num_embeddings: NumEmbeddings = NumEmbeddings.piecewise

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.k > 0, "model.k", self.k, "must be > 0")


MODEL_CONFIGS: dict[ModelName, type[ModelConfig]] = {
    ModelName.mlp: MLPConfig,
    ModelName.tabm: TabMConfig,
}


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    """The inverse of ``asdict``: the option's class is chosen by ``name``. Bundles written before
    monotone constraints existed have no ``monotone`` key: their networks are unconstrained."""
    return MODEL_CONFIGS[ModelName(values["name"])](**{"monotone": False} | values)


def model_config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, StrEnum) else v for k, v in asdict(cfg).items()}


class CalibrationMethod(StrEnum):
    """How the network's PD is calibrated on the validation rows after training."""

    auto = "auto"  # none, temperature or platt: the lowest cross-validated log loss
    none = "none"
    temperature = "temperature"  # logit / T
    platt = "platt"  # a * logit + b
    isotonic = "isotonic"  # a monotone piecewise-linear map of the logit


@dataclass
class CalibrationConfig:
    """The PD calibration fitted on validation rows after training (``training/models/calibration.py``),
    stored with the model and applied wherever a PD is given: report, served model, scoring."""

    method: CalibrationMethod = CalibrationMethod.auto
    folds: int = 5  # method=auto: folds of the validation rows the candidates are compared on

    def __post_init__(self) -> None:
        self.method = as_enum(CalibrationMethod, "calibration.method", self.method)
        check(self.folds >= 2, "calibration.folds", self.folds, "must be >= 2")
