"""The typed config tree: one small dataclass per concern, validated at start-up.

Hydra composes YAML over these dataclasses (registered in its ConfigStore as the schema), so an
unknown key or a wrong type fails at composition. Range checks live in ``__post_init__`` and
run when the entry point converts the composed config once with ``OmegaConf.to_object``; the
library never sees a ``DictConfig``.
"""

from __future__ import annotations

import math
import re
import signal
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from training.constants import STOP_SIGNAL
from training.data.schema import FeatureSpec, Kind
from training.errors import ConfigError, check, check_option
from training.models.config import MODEL_CONFIGS, ModelConfig
from training.tracking.secrets import PASSWORD, USERNAME, has_password, redact
from training.serving.explain import ExplainConfig
from training.serving.scorecard import ScoreScale

__all__ = ["ConfigError", "ModelConfig", "TrainConfig", "to_config", "to_dict"]


class DataFormat(StrEnum):
    synthetic = "synthetic"
    csv = "csv"
    parquet = "parquet"
    arff = "arff"


class SplitMethod(StrEnum):
    stratified = "stratified"
    time = "time"


class LauncherName(StrEnum):
    local = "local"
    mpi = "mpi"
    ray = "ray"


class Parallelism(StrEnum):
    data = "data"  # one network; each rank trains on its shard of the rows, gradients summed
    ensemble = "ensemble"  # one network per rank (seed + rank), each on every row; averaged


class GradSync(StrEnum):
    mpi = "mpi"  # mpi4py Allreduce of one flat buffer (faster on CPU)
    torch = "torch"  # the torch process group: gloo, or NCCL on GPUs


class Objective(StrEnum):
    """What a sweep may optimise: the validation metrics the loop reports each epoch."""

    valid_auc = "valid_auc"
    valid_ks = "valid_ks"
    valid_log_loss = "valid_log_loss"

    @property
    def mode(self) -> str:
        return "min" if self is Objective.valid_log_loss else "max"


class Search(StrEnum):
    tpe = "tpe"  # Optuna's TPE
    random = "random"


class Scheduler(StrEnum):
    asha = "asha"
    none = "none"


class Schedule(StrEnum):
    """The learning rate over training, after ``optim.warmup_epochs`` of linear warm-up."""

    constant = "constant"
    cosine = "cosine"  # cosine decay to 0 at the end of trainer.max_epochs
    plateau = "plateau"  # cut by plateau_factor when valid AUC stalls for plateau_patience epochs


class ParamType(StrEnum):
    float = "float"
    int = "int"
    choice = "choice"


def _check_signal(key: str, name: str) -> None:
    check(hasattr(signal, f"SIG{name}"), key, name, "must name a signal, e.g. USR2")


def _as_enum(enum: type[StrEnum], key: str, value: Any) -> Any:
    """Coerce a plain string set from Python (YAML values are coerced by OmegaConf itself)."""
    check(value in {e.value for e in enum}, key, value, f"must be one of {[e.value for e in enum]}")
    return enum(value)


@dataclass(kw_only=True)
class SplitConfig:
    """Stratified random split, or out-of-time by a period column (train < valid_from <= valid < test_from <= test).

    The period column holds numbers (a year, a month index) or dates: ISO dates are read as they
    are, other forms with ``period_format`` (a strptime format: ``'%b-%Y'`` reads ``Dec-2011``).
    With dates, ``valid_from``/``test_from`` are dates too (``2015-01-01``; a bare year is its
    1 January).
    """

    method: SplitMethod = SplitMethod.stratified
    train: float = 0.70
    valid: float = 0.15
    test: float = 0.15
    period_column: str | None = None
    period_format: str | None = None
    valid_from: Any = None  # a number or a date
    test_from: Any = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.method = _as_enum(SplitMethod, "data.split.method", self.method)
        if self.method == "stratified":
            for key in ("train", "valid", "test"):
                v = getattr(self, key)
                check(0 < v < 1, f"data.split.{key}", v, "must be in (0, 1)")
            total = self.train + self.valid + self.test
            check(
                math.isclose(total, 1.0, abs_tol=1e-6),
                "data.split.train+valid+test",
                round(total, 6),
                "must sum to 1",
            )
            return
        for key in ("period_column", "valid_from", "test_from"):
            value = getattr(self, key)
            check(
                value not in (None, ""), f"data.split.{key}", value, "is required for method=time"
            )
        if all(isinstance(v, (int, float)) for v in (self.valid_from, self.test_from)):
            check(
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
    format: DataFormat = DataFormat.synthetic
    root: str = "${oc.env:RISKBRAIN_DATA_ROOT,../shared/data}"
    path: str | None = None  # a file; for parquet also a folder of part files (hive partitions too)
    target: str = "default_flag"
    positive_label: Any = None  # the target value(s) that mean default, e.g. bad or [Charged Off]
    target_map: dict[Any, int] = field(default_factory=dict)  # or every target value -> 0/1
    missing_values: list[Any] = field(default_factory=list)  # tokens meaning "no value", any column
    sep: str = ","  # csv: the field separator ("\\s+": any whitespace, as in UCI's german.data)
    column_names: list[str] = field(default_factory=list)  # csv without a header row: its columns
    encoding: str = "utf-8-sig"  # csv: the text encoding (utf-8-sig also reads plain UTF-8)
    features: list[FeatureSpec] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)  # columns never used as inputs or reasons
    protected_bands: dict[str, Any] = field(default_factory=dict)  # {age: [25, 50]}: 3 age bands
    n_rows: int = 100_000
    seed: int = 0
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        self.format = _as_enum(DataFormat, "data.format", self.format)
        if self.format == "synthetic":
            check(self.n_rows >= 100, "data.n_rows", self.n_rows, "must be >= 100")
        else:
            check(bool(self.path), "data.path", self.path, f"is required for format={self.format}")
            check(
                bool(self.features),
                "data.features",
                "[]",
                f"must list the columns for format={self.format}",
            )
        for i, f in enumerate(self.features):
            check(
                f.monotone in (-1, 0, 1),
                f"data.features[{i}].monotone",
                f.monotone,
                "must be -1, 0 or 1",
            )
            check(
                f.monotone == 0 or f.kind != Kind.categorical,
                f"data.features[{i}].monotone",
                f.monotone,
                "applies to numeric and binary columns (categories have no order): set it to 0",
            )
            check(
                not f.sentinels or f.kind != Kind.categorical,
                f"data.features[{i}].sentinels",
                f.sentinels,
                "applies to numeric and binary columns (a categorical code is already a category)",
            )
        self._check_protected()
        check(
            self.positive_label is None or not self.target_map,
            "data.positive_label",
            self.positive_label,
            "and data.target_map both label the target: set one of them",
        )
        check(
            all(v in (0, 1) for v in self.target_map.values()),
            "data.target_map",
            dict(self.target_map),
            "must map each target value to 0 or 1 (1 = default)",
        )

    def _check_protected(self) -> None:
        """A protected column is never an input; its bands are numbers in ascending order."""
        inputs = [f.name for f in self.features]
        for i, name in enumerate(self.protected):
            check(
                name not in inputs,
                f"data.protected[{i}]",
                name,
                f"is also data.features[{inputs.index(name) if name in inputs else -1}]: a "
                "protected attribute is never a model input; remove one of the two",
            )
        for name, edges in self.protected_bands.items():
            check(
                len(edges) > 0
                and all(isinstance(e, int | float) for e in edges)
                and list(edges) == sorted(edges),
                f"data.protected_bands.{name}",
                list(edges),
                "must list the band edges of a data.protected column, numbers in ascending order",
            )

    @property
    def positive_labels(self) -> list[Any]:
        """``positive_label`` as a list (a YAML scalar or list)."""
        if self.positive_label is None:
            return []
        return (
            list(self.positive_label)
            if isinstance(self.positive_label, (list, tuple))
            else [self.positive_label]
        )


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW, its learning-rate schedule (``training/core/state.py``), gradient clipping, label smoothing."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 512
    schedule: Schedule = Schedule.constant
    warmup_epochs: float = 0.0  # linear warm-up from ~0 to lr over this many epochs
    plateau_patience: int = 3  # schedule=plateau: epochs without a better valid AUC before a cut
    plateau_factor: float = 0.3  # schedule=plateau: the learning rate is multiplied by this
    grad_clip: float = 0.0  # the gradients' global L2 norm is clipped to this; 0 = off
    label_smoothing: float = 0.0  # the loss's targets are y (1 - s) + s / 2

    def __post_init__(self) -> None:
        self.schedule = _as_enum(Schedule, "optim.schedule", self.schedule)
        check(self.lr > 0, "optim.lr", self.lr, "must be > 0")
        check(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "must be >= 0")
        check(self.batch_size > 0, "optim.batch_size", self.batch_size, "must be > 0")
        check(self.warmup_epochs >= 0, "optim.warmup_epochs", self.warmup_epochs, "must be >= 0")
        check(
            self.plateau_patience > 0,
            "optim.plateau_patience",
            self.plateau_patience,
            "must be > 0",
        )
        check(
            0 < self.plateau_factor < 1,
            "optim.plateau_factor",
            self.plateau_factor,
            "must be in (0, 1)",
        )
        check(self.grad_clip >= 0, "optim.grad_clip", self.grad_clip, "must be >= 0 (0 = off)")
        check(
            0 <= self.label_smoothing < 0.5,
            "optim.label_smoothing",
            self.label_smoothing,
            "must be in [0, 0.5)",
        )


@dataclass(kw_only=True)
class TrainerConfig:
    """The loop: epochs, early stopping on validation AUC, evaluation batch size."""

    max_epochs: int = 100
    patience: int = 16
    eval_batch_size: int = 16_384

    def __post_init__(self) -> None:
        check(self.max_epochs > 0, "trainer.max_epochs", self.max_epochs, "must be > 0")
        check(self.patience > 0, "trainer.patience", self.patience, "must be > 0")
        check(
            self.eval_batch_size > 0, "trainer.eval_batch_size", self.eval_batch_size, "must be > 0"
        )


@dataclass(kw_only=True)
class BenchmarkConfig:
    """The GBDT benchmark: LightGBM on the network's split, reported next to it (``training/governance/benchmark.py``)."""

    enabled: bool = True
    n_trials: int = 8  # settings tried, the first LightGBM's default; the best by validation AUC
    max_rounds: int = 2000  # boosting rounds at most; early stopping on the validation rows
    early_stopping: int = 50  # rounds without a better validation AUC
    max_rows: int = 200_000  # training (and validation) rows it sees at most, evenly spaced
    monotone: bool = True  # hold the data config's monotone directions, as the network does
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("n_trials", "max_rounds", "early_stopping", "max_rows"):
            check(getattr(self, key) > 0, f"benchmark.{key}", getattr(self, key), "must be > 0")


@dataclass(kw_only=True)
class FairnessConfig:
    """The fairness report per protected column (``training/governance/fairness.py``)."""

    approve_rate: float = 0.8  # the cut-off approves this share of rows, lowest PD first
    min_rows: int = 30  # smaller groups are listed but left out of the approval-rate ratio

    def __post_init__(self) -> None:
        check(
            0 < self.approve_rate < 1,
            "fairness.approve_rate",
            self.approve_rate,
            "must be in (0, 1)",
        )
        check(self.min_rows > 0, "fairness.min_rows", self.min_rows, "must be > 0")


@dataclass(kw_only=True)
class CheckpointConfig:
    """Checkpoints for preemption-safe, exact resume (in ``<output dir>/checkpoints``)."""

    every_epochs: int = 1  # 0 = never at epoch ends
    every_steps: int = 0  # global batches; 0 = never mid-epoch
    keep: int = 3  # the last K are kept
    resume: bool = True  # start from the latest valid checkpoint in the output folder, if any
    signal: str = (
        STOP_SIGNAL  # on this signal the job checkpoints at the next step and exits (code 3)
    )

    def __post_init__(self) -> None:
        check(self.every_epochs >= 0, "checkpoint.every_epochs", self.every_epochs, "must be >= 0")
        check(self.every_steps >= 0, "checkpoint.every_steps", self.every_steps, "must be >= 0")
        check(self.keep > 0, "checkpoint.keep", self.keep, "must be > 0")
        _check_signal("checkpoint.signal", self.signal)


@dataclass(kw_only=True)
class LauncherConfig:
    """How processes are started; each option of the ``launcher`` group adds its own fields."""

    name: LauncherName
    # Torch threads per rank; 0 = $OMP_NUM_THREADS, else $SLURM_CPUS_PER_TASK, else cores / ranks on the node.
    threads: int = 0
    parallelism: Parallelism = Parallelism.data  # what the ranks share: the data, or the ensemble

    def __post_init__(self) -> None:
        self.name = _as_enum(LauncherName, "launcher.name", self.name)
        self.parallelism = _as_enum(Parallelism, "launcher.parallelism", self.parallelism)
        check(
            self.parallelism is Parallelism.data or self.name is not LauncherName.local,
            "launcher.parallelism",
            str(self.parallelism),
            "needs several ranks: use launcher=mpi or launcher=ray",
        )
        check_option(self, "launcher", LAUNCHER_CONFIGS)
        check(self.threads >= 0, "launcher.threads", self.threads, "must be >= 0")


@dataclass(kw_only=True)
class LocalLauncherConfig(LauncherConfig):
    """One process on this machine."""

    name: LauncherName = LauncherName.local


@dataclass(kw_only=True)
class MPILauncherConfig(LauncherConfig):
    """Data-parallel ranks started by ``mpirun`` or ``srun``."""

    name: LauncherName = LauncherName.mpi
    grad_sync: GradSync = GradSync.mpi
    # A rank that stops answering fails the job after this many seconds in a collective: the
    # mpi4py collectives through a watchdog (training/runtime/watchdog.py; a rank busy alone, such as
    # rank 0 writing the model, is waited for), the gradient all_reduce with grad_sync=torch or
    # on GPUs through the torch process group's timeout.
    timeout_s: int = 300

    def __post_init__(self) -> None:
        super().__post_init__()
        self.grad_sync = _as_enum(GradSync, "launcher.grad_sync", self.grad_sync)
        check(self.timeout_s > 0, "launcher.timeout_s", self.timeout_s, "must be > 0")


@dataclass(kw_only=True)
class RayLauncherConfig(LauncherConfig):
    """Ray Train workers (``TorchTrainer``), one rank each; ``threads`` 0 means ``cpus_per_worker``."""

    name: LauncherName = LauncherName.ray
    num_workers: int = 2
    cpus_per_worker: int = 1
    use_gpu: bool = False  # one GPU per worker
    address: str | None = None  # cluster to join; null = $RAY_ADDRESS, else start a local one
    timeout_s: int = 300  # the process group's collective timeout
    max_failures: int = 0  # worker-group restarts from the latest checkpoint; 0 = fail fast

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.timeout_s > 0, "launcher.timeout_s", self.timeout_s, "must be > 0")
        check(self.max_failures >= 0, "launcher.max_failures", self.max_failures, "must be >= 0")
        check(self.num_workers > 0, "launcher.num_workers", self.num_workers, "must be > 0")
        check(
            self.cpus_per_worker > 0,
            "launcher.cpus_per_worker",
            self.cpus_per_worker,
            "must be > 0",
        )


LAUNCHER_CONFIGS: dict[LauncherName, type[LauncherConfig]] = {
    LauncherName.local: LocalLauncherConfig,
    LauncherName.mpi: MPILauncherConfig,
    LauncherName.ray: RayLauncherConfig,
}


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
    signal: str = STOP_SIGNAL  # sent before the time limit or on preemption: checkpoint and requeue
    signal_seconds: int = 120  # how long before the time limit
    env: str | None = None  # conda env or virtualenv to activate in the job (RISKBRAIN_ENV)
    log_dir: str = "."  # where slurm-<job id>.out goes

    def __post_init__(self) -> None:
        for key in ("nodes", "tasks_per_node", "cpus_per_task"):
            check(getattr(self, key) > 0, f"cluster.{key}", getattr(self, key), "must be > 0")
        check(self.gpus_per_node >= 0, "cluster.gpus_per_node", self.gpus_per_node, "must be >= 0")
        check(
            bool(re.fullmatch(r"(\d+-)?\d+(:\d{2}){0,2}", self.time)),
            "cluster.time",
            self.time,
            "must be a Slurm time such as 02:00:00 or 1-00:00:00",
        )
        _check_signal("cluster.signal", self.signal)
        check(self.signal_seconds > 0, "cluster.signal_seconds", self.signal_seconds, "must be > 0")


@dataclass(kw_only=True)
class ParamSpec:
    """One searched value: ``float``/``int`` in [low, high] (``log`` scale optional), or a ``choice``."""

    type: ParamType = ParamType.float
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)


@dataclass(kw_only=True)
class SweepConfig:
    """A hyperparameter search (``python -m jobs.sweep sweep=<name>``): Ray Tune, Optuna TPE, ASHA."""

    name: str = "none"
    metric: Objective = Objective.valid_auc
    search: Search = Search.tpe
    scheduler: Scheduler = Scheduler.asha
    num_samples: int = 16  # trials
    time_budget_s: float | None = None
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    grace_period: int = 2  # epochs every trial runs before ASHA may stop it
    reduction_factor: int = 3
    seed: int = 0
    # Register the mean of the best k completed trials as one model (0 or 1: the best trial).
    ensemble_top_k: int = 0
    params: dict[str, ParamSpec] = field(default_factory=dict)  # dotted config key -> its range

    @property
    def mode(self) -> str:
        return self.metric.mode

    def __post_init__(self) -> None:
        self.metric = _as_enum(Objective, "sweep.metric", self.metric)
        self.search = _as_enum(Search, "sweep.search", self.search)
        self.scheduler = _as_enum(Scheduler, "sweep.scheduler", self.scheduler)
        check(self.ensemble_top_k >= 0, "sweep.ensemble_top_k", self.ensemble_top_k, "must be >= 0")
        for key in ("num_samples", "max_concurrent", "grace_period"):
            check(getattr(self, key) > 0, f"sweep.{key}", getattr(self, key), "must be > 0")
        check(
            self.reduction_factor > 1,
            "sweep.reduction_factor",
            self.reduction_factor,
            "must be > 1",
        )
        check(self.cpus_per_trial > 0, "sweep.cpus_per_trial", self.cpus_per_trial, "must be > 0")
        check(
            self.time_budget_s is None or self.time_budget_s > 0,
            "sweep.time_budget_s",
            self.time_budget_s,
            "must be > 0",
        )
        for name, p in self.params.items():
            key = f"sweep.params.{name}"
            p.type = _as_enum(ParamType, f"{key}.type", p.type)
            if p.type == "choice":
                check(len(p.choices) > 0, f"{key}.choices", p.choices, "must not be empty")
                continue
            check(
                p.low is not None and p.high is not None,
                key,
                f"low={p.low}, high={p.high}",
                "needs low and high",
            )
            check(
                p.low < p.high,
                key,
                f"[{p.low}, {p.high}]",
                "is an empty or inverted range (low must be < high)",
            )
            check(not p.log or p.low > 0, f"{key}.low", p.low, "must be > 0 on a log scale")


TRACKING_MODES = ("online", "offline")


@dataclass(kw_only=True)
class TrackingConfig:
    """MLflow tracking: ``uri`` null means env ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here."""

    uri: str | None = None
    experiment: str = "riskbrain"
    # Every call is written to <run folder>/tracking/ first (training/tracking/journal.py). online: applied
    # to the store at once when it answers, retried with back-off when not; offline: nothing is
    # sent (compute nodes without a route to the server): `python -m jobs.sync <folder>` later.
    mode: str = "online"
    sync_timeout_s: int = 60  # online: at the end, how long to keep retrying a store that is down
    request_timeout_s: int = (
        30  # online: one request to a tracking server, before it counts as down
    )

    def __post_init__(self) -> None:
        check(bool(self.experiment), "tracking.experiment", self.experiment, "must not be empty")
        check(
            self.mode in TRACKING_MODES,
            "tracking.mode",
            self.mode,
            f"must be one of {TRACKING_MODES}",
        )
        for key in ("sync_timeout_s", "request_timeout_s"):
            check(getattr(self, key) >= 0, f"tracking.{key}", getattr(self, key), "must be >= 0")
        refuse_password(self.uri, "tracking.uri")


def refuse_password(uri: str | None, key: str) -> None:
    """A password in a tracking URI would be logged with every run (params, config.yaml, the
    model card): credentials come from the environment only (``training/tracking/secrets.py``)."""
    if uri and has_password(uri):
        raise ConfigError(
            f"config {key}={redact(uri)}: must not hold a password; "
            f"set {USERNAME} and {PASSWORD} in the environment instead"
        )


@dataclass(kw_only=True)
class RegistryConfig:
    """Where a trained model is registered: a name per data set, so a model of one lender's book
    can never become the ``@challenger`` a deployment of another pulls; and a rule for when the
    alias moves, so a debug run or a run of a few epochs registers a version but moves nothing."""

    register: bool = True
    name: str = "credit-risk-${data.name}"
    alias: str = "challenger"
    min_epochs: int = 5  # the alias moves only after this many epochs trained...
    move_alias: bool | None = None  # ...unless set: true always moves it, false never (debug=tiny)

    def __post_init__(self) -> None:
        check(bool(self.name), "registry.name", self.name, "must not be empty")
        check(bool(self.alias), "registry.alias", self.alias, "must not be empty")
        check(self.min_epochs >= 0, "registry.min_epochs", self.min_epochs, "must be >= 0")

    def alias_after(self, epochs: int) -> tuple[str | None, str]:
        """The alias to move onto a model trained for ``epochs`` epochs (or None), and why."""
        if self.move_alias is False:
            return None, "registry.move_alias=false, as debug=tiny sets it; set it true to move it"
        if self.move_alias is None and epochs < self.min_epochs:
            why = f"{epochs} epochs < registry.min_epochs={self.min_epochs}"
            return None, f"{why} (set registry.move_alias=true to move it anyway)"
        return self.alias, ""


@dataclass(kw_only=True)
class TrainConfig:
    """The whole job: one node per concern."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = MISSING  # an option of the group: MLPConfig, TabMConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    launcher: LauncherConfig = MISSING  # an option of the group: local, mpi, ray
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    score: ScoreScale = field(default_factory=ScoreScale)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
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
