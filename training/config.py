"""The typed config tree: one small dataclass per concern, validated at start-up.

Hydra composes YAML over these dataclasses (registered in its ConfigStore as the schema), so an
unknown key or a wrong type fails at composition. Range checks live in ``__post_init__`` and
run when the entry point converts the composed config once with ``OmegaConf.to_object``; the
library never sees a ``DictConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from training.data.schema import FeatureSpec
from training.errors import ConfigError

MODEL_NAMES = ("mlp", "tabm")
SWEEP_METRICS = {
    "valid_auc": "max",
    "valid_ks": "max",
    "valid_log_loss": "min",
}  # what the loop reports
SEARCHERS = ("tpe", "random")
SCHEDULERS = ("asha", "none")
PARAM_TYPES = ("float", "int", "choice")
LAUNCHERS = ("local", "mpi", "ray")
GRAD_SYNC = ("mpi", "torch")
DATA_FORMATS = ("synthetic", "csv", "parquet", "arff")
SPLIT_METHODS = ("stratified", "time")
NUM_EMBEDDINGS = ("none", "piecewise", "periodic")


def _check(ok: bool, key: str, value: Any, must: str) -> None:
    if not ok:
        raise ConfigError(f"config {key}={value!r}: {must}")


def _check_signal(key: str, name: str) -> None:
    import signal

    _check(hasattr(signal, f"SIG{name}"), key, name, "must name a signal, e.g. USR2")


@dataclass(kw_only=True)
class SplitConfig:
    """Stratified random split, or out-of-time by a period column (train < valid_from <= valid < test_from <= test)."""

    method: str = "stratified"
    train: float = 0.70
    valid: float = 0.15
    test: float = 0.15
    period_column: str | None = None
    valid_from: float | None = None
    test_from: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check(
            self.method in SPLIT_METHODS,
            "data.split.method",
            self.method,
            f"must be one of {SPLIT_METHODS}",
        )
        if self.method == "stratified":
            for key in ("train", "valid", "test"):
                v = getattr(self, key)
                _check(0 < v < 1, f"data.split.{key}", v, "must be in (0, 1)")
            total = self.train + self.valid + self.test
            _check(
                math.isclose(total, 1.0, abs_tol=1e-6),
                "data.split.train+valid+test",
                round(total, 6),
                "must sum to 1",
            )
        else:
            _check(
                bool(self.period_column),
                "data.split.period_column",
                self.period_column,
                "is required for method=time",
            )
            _check(
                self.valid_from is not None,
                "data.split.valid_from",
                self.valid_from,
                "is required for method=time",
            )
            _check(
                self.test_from is not None,
                "data.split.test_from",
                self.test_from,
                "is required for method=time",
            )
            _check(
                self.valid_from < self.test_from,
                "data.split.valid_from",
                self.valid_from,
                f"must be < data.split.test_from={self.test_from}",
            )


@dataclass(kw_only=True)
class DataConfig:
    """A data set: where it is, what its columns are, how to split it.

    For ``format: synthetic`` the schema comes from the generator and ``n_rows`` sets the size;
    for files, ``path`` is read relative to ``root`` (env ``RISKBRAIN_DATA_ROOT`` by default).
    """

    name: str = MISSING
    format: str = "synthetic"
    root: str = "${oc.env:RISKBRAIN_DATA_ROOT,../shared/data}"
    path: str | None = None
    target: str = "default_flag"
    features: list[FeatureSpec] = field(default_factory=list)
    n_rows: int = 100_000
    seed: int = 0
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        _check(
            self.format in DATA_FORMATS,
            "data.format",
            self.format,
            f"must be one of {DATA_FORMATS}",
        )
        if self.format == "synthetic":
            _check(self.n_rows >= 100, "data.n_rows", self.n_rows, "must be >= 100")
        else:
            _check(bool(self.path), "data.path", self.path, f"is required for format={self.format}")
            _check(
                bool(self.features),
                "data.features",
                "[]",
                f"must list the columns for format={self.format}",
            )
        for i, f in enumerate(self.features):
            _check(
                f.monotone in (-1, 0, 1),
                f"data.features[{i}].monotone",
                f.monotone,
                "must be -1, 0 or 1",
            )


@dataclass(kw_only=True)
class ModelConfig:
    """Architecture: ``mlp`` (a strong residual-free MLP) or ``tabm`` (TabM, optionally with numeric embeddings)."""

    name: str = "mlp"
    d_block: int = 256
    n_blocks: int = 3
    dropout: float = 0.1
    k: int = 32  # tabm: ensemble size
    num_embeddings: str = "none"
    d_embedding: int = 16
    n_bins: int = 32

    def __post_init__(self) -> None:
        _check(self.name in MODEL_NAMES, "model.name", self.name, f"must be one of {MODEL_NAMES}")
        _check(self.d_block > 0, "model.d_block", self.d_block, "must be > 0")
        _check(self.n_blocks > 0, "model.n_blocks", self.n_blocks, "must be > 0")
        _check(0 <= self.dropout < 1, "model.dropout", self.dropout, "must be in [0, 1)")
        _check(self.k > 0, "model.k", self.k, "must be > 0")
        _check(
            self.num_embeddings in NUM_EMBEDDINGS,
            "model.num_embeddings",
            self.num_embeddings,
            f"must be one of {NUM_EMBEDDINGS}",
        )
        _check(self.d_embedding > 0, "model.d_embedding", self.d_embedding, "must be > 0")
        _check(self.n_bins > 1, "model.n_bins", self.n_bins, "must be > 1")


@dataclass(kw_only=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 512

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", self.lr, "must be > 0")
        _check(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "must be >= 0")
        _check(self.batch_size > 0, "optim.batch_size", self.batch_size, "must be > 0")


@dataclass(kw_only=True)
class TrainerConfig:
    """The loop: epochs, early stopping on validation AUC, evaluation batch size."""

    max_epochs: int = 20
    patience: int = 4
    eval_batch_size: int = 16_384

    def __post_init__(self) -> None:
        _check(self.max_epochs > 0, "trainer.max_epochs", self.max_epochs, "must be > 0")
        _check(self.patience > 0, "trainer.patience", self.patience, "must be > 0")
        _check(
            self.eval_batch_size > 0, "trainer.eval_batch_size", self.eval_batch_size, "must be > 0"
        )


@dataclass(kw_only=True)
class CheckpointConfig:
    """Checkpoints for preemption-safe, exact resume (in ``<output dir>/checkpoints``)."""

    every_epochs: int = 1  # 0 = never at epoch ends
    every_steps: int = 0  # global batches; 0 = never mid-epoch
    keep: int = 3  # the last K are kept
    resume: bool = True  # start from the latest valid checkpoint in the output folder, if any
    signal: str = "USR2"  # on this signal the job checkpoints at the next step and exits (code 3)

    def __post_init__(self) -> None:
        _check(self.every_epochs >= 0, "checkpoint.every_epochs", self.every_epochs, "must be >= 0")
        _check(self.every_steps >= 0, "checkpoint.every_steps", self.every_steps, "must be >= 0")
        _check(self.keep > 0, "checkpoint.keep", self.keep, "must be > 0")
        _check_signal("checkpoint.signal", self.signal)


@dataclass(kw_only=True)
class LauncherConfig:
    """How processes are started: ``local`` (one process), ``mpi`` (mpirun/srun ranks), ``ray`` (Ray Train)."""

    name: str = "local"
    threads: int = (
        0  # torch threads per rank; 0 = $SLURM_CPUS_PER_TASK, else cores / ranks on the node
    )
    grad_sync: str = "mpi"  # mpi launcher: "mpi" (mpi4py Allreduce of one flat buffer) or "torch" (process group)
    timeout_s: int = 300  # collective timeout: a rank that stops answering fails the job after this
    num_workers: int = 2  # ray: workers (one rank each)
    cpus_per_worker: int = 1  # ray
    use_gpu: bool = False  # ray: one GPU per worker
    address: str | None = None  # ray: cluster to join; null = $RAY_ADDRESS, else start a local one

    def __post_init__(self) -> None:
        _check(self.name in LAUNCHERS, "launcher.name", self.name, f"must be one of {LAUNCHERS}")
        _check(self.threads >= 0, "launcher.threads", self.threads, "must be >= 0")
        _check(
            self.grad_sync in GRAD_SYNC,
            "launcher.grad_sync",
            self.grad_sync,
            f"must be one of {GRAD_SYNC}",
        )
        _check(self.timeout_s > 0, "launcher.timeout_s", self.timeout_s, "must be > 0")
        _check(self.num_workers > 0, "launcher.num_workers", self.num_workers, "must be > 0")
        _check(
            self.cpus_per_worker > 0,
            "launcher.cpus_per_worker",
            self.cpus_per_worker,
            "must be > 0",
        )


@dataclass(kw_only=True)
class ClusterConfig:
    """Slurm resources for ``python -m jobs.submit`` (submitit-style): rendered into #SBATCH lines."""

    partition: str | None = None
    nodes: int = 1
    tasks_per_node: int = 2  # MPI ranks per node (Ray: one Ray node per Slurm node)
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    time: str = "02:00:00"
    account: str | None = None
    qos: str | None = None
    signal: str = "USR2"  # sent before the time limit or on preemption: checkpoint and requeue
    signal_seconds: int = 120  # how long before the time limit
    env: str | None = None  # conda env or virtualenv to activate in the job (RISKBRAIN_ENV)
    log_dir: str = "."  # where slurm-<job id>.out goes

    def __post_init__(self) -> None:
        import re

        for key in ("nodes", "tasks_per_node", "cpus_per_task"):
            _check(getattr(self, key) > 0, f"cluster.{key}", getattr(self, key), "must be > 0")
        _check(self.gpus_per_node >= 0, "cluster.gpus_per_node", self.gpus_per_node, "must be >= 0")
        _check(
            bool(re.fullmatch(r"(\d+-)?\d+(:\d{2}){0,2}", self.time)),
            "cluster.time",
            self.time,
            "must be a Slurm time such as 02:00:00 or 1-00:00:00",
        )
        _check_signal("cluster.signal", self.signal)
        _check(
            self.signal_seconds > 0, "cluster.signal_seconds", self.signal_seconds, "must be > 0"
        )


@dataclass(kw_only=True)
class ParamSpec:
    """One searched value: ``float``/``int`` in [low, high] (``log`` scale optional), or a ``choice``."""

    type: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)


@dataclass(kw_only=True)
class SweepConfig:
    """A hyperparameter search (``python -m jobs.sweep sweep=<name>``): Ray Tune, Optuna TPE, ASHA."""

    name: str = "none"
    metric: str = "valid_auc"
    search: str = "tpe"
    scheduler: str = "asha"
    num_samples: int = 16  # trials
    time_budget_s: float | None = None
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    grace_period: int = 2  # epochs every trial runs before ASHA may stop it
    reduction_factor: int = 3
    seed: int = 0
    params: dict[str, ParamSpec] = field(default_factory=dict)  # dotted config key -> its range

    @property
    def mode(self) -> str:
        return SWEEP_METRICS[self.metric]

    def __post_init__(self) -> None:
        _check(
            self.metric in SWEEP_METRICS,
            "sweep.metric",
            self.metric,
            f"the loop reports only {sorted(SWEEP_METRICS)}",
        )
        _check(self.search in SEARCHERS, "sweep.search", self.search, f"must be one of {SEARCHERS}")
        _check(
            self.scheduler in SCHEDULERS,
            "sweep.scheduler",
            self.scheduler,
            f"must be one of {SCHEDULERS}",
        )
        for key in ("num_samples", "max_concurrent", "grace_period"):
            _check(getattr(self, key) > 0, f"sweep.{key}", getattr(self, key), "must be > 0")
        _check(
            self.reduction_factor > 1,
            "sweep.reduction_factor",
            self.reduction_factor,
            "must be > 1",
        )
        _check(self.cpus_per_trial > 0, "sweep.cpus_per_trial", self.cpus_per_trial, "must be > 0")
        _check(
            self.time_budget_s is None or self.time_budget_s > 0,
            "sweep.time_budget_s",
            self.time_budget_s,
            "must be > 0",
        )
        for name, p in self.params.items():
            key = f"sweep.params.{name}"
            _check(p.type in PARAM_TYPES, f"{key}.type", p.type, f"must be one of {PARAM_TYPES}")
            if p.type == "choice":
                _check(len(p.choices) > 0, f"{key}.choices", p.choices, "must not be empty")
                continue
            _check(
                p.low is not None and p.high is not None,
                key,
                f"low={p.low}, high={p.high}",
                "needs low and high",
            )
            _check(
                p.low < p.high,
                key,
                f"[{p.low}, {p.high}]",
                "is an empty or inverted range (low must be < high)",
            )
            _check(not p.log or p.low > 0, f"{key}.low", p.low, "must be > 0 on a log scale")


@dataclass(kw_only=True)
class TrackingConfig:
    """MLflow tracking: ``uri`` null means env ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here."""

    uri: str | None = None
    experiment: str = "riskbrain"

    def __post_init__(self) -> None:
        _check(bool(self.experiment), "tracking.experiment", self.experiment, "must not be empty")


@dataclass(kw_only=True)
class RegistryConfig:
    register: bool = True
    name: str = "credit-risk"
    alias: str = "challenger"

    def __post_init__(self) -> None:
        _check(bool(self.name), "registry.name", self.name, "must not be empty")
        _check(bool(self.alias), "registry.alias", self.alias, "must not be empty")


@dataclass(kw_only=True)
class TrainConfig:
    """The whole job: one node per concern."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.sweep.params:  # every searched key must be a value of this tree
            node: Any = self
            for part in name.split("."):
                _check(
                    hasattr(node, part) and part in {f.name for f in fields(node)},
                    f"sweep.params.{name}",
                    name,
                    "is not a config key (e.g. optim.lr, model.d_block)",
                )
                node = getattr(node, part)
            _check(
                not is_dataclass(node),
                f"sweep.params.{name}",
                name,
                "names a config group, not a value",
            )


def register_configs() -> None:
    """Register the schema so YAML files are validated against the dataclasses."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


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


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain containers (enums as their names)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


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
