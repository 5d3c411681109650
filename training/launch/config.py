"""How processes are started (the ``launcher`` group: one dataclass per option) and the
hyperparameter search (``sweep.*``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from training.core.config import Parallelism
from training.errors import as_enum, check, check_option


class LauncherName(StrEnum):
    local = "local"
    mpi = "mpi"
    ray = "ray"


class GradSync(StrEnum):
    mpi = "mpi"  # mpi4py Allreduce of one flat buffer (faster on CPU)
    torch = "torch"  # the torch process group: gloo, or NCCL on GPUs


@dataclass(kw_only=True)
class LauncherConfig:
    """How processes are started; each option of the ``launcher`` group adds its own fields."""

    name: LauncherName
    # Torch threads per rank; 0 = $OMP_NUM_THREADS, else $SLURM_CPUS_PER_TASK, else cores / ranks on the node.
    threads: int = 0
    parallelism: Parallelism = Parallelism.data  # what the ranks share: the data, or the ensemble

    def __post_init__(self) -> None:
        self.name = as_enum(LauncherName, "launcher.name", self.name)
        self.parallelism = as_enum(Parallelism, "launcher.parallelism", self.parallelism)
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
        self.grad_sync = as_enum(GradSync, "launcher.grad_sync", self.grad_sync)
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
    # CPU workers that all run on one machine sum gradients through /dev/shm rather than gloo's
    # loopback TCP (training/runtime/node_sum.py); false: gloo always
    shared_memory: bool = True

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


# ---------------------------------------------------------------------------------------------
# Sweeps


class Objective(StrEnum):
    """What a sweep may optimise: the validation metrics the loop reports each epoch."""

    valid_auc = "valid_auc"
    valid_ks = "valid_ks"
    valid_log_loss = "valid_log_loss"

    @property
    def mode(self) -> str:
        return "min" if self is Objective.valid_log_loss else "max"


class ParamType(StrEnum):
    """How a swept parameter is drawn: a float or int range (log scale optional), or a list."""

    float = "float"
    int = "int"
    choice = "choice"


class Scheduler(StrEnum):
    """Early stopping of a sweep's trials: ASHA's rungs, or every trial to its end."""

    asha = "asha"
    none = "none"


class Search(StrEnum):
    """How a sweep picks its next trial's values."""

    tpe = "tpe"  # Optuna's TPE
    random = "random"


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
        self.metric = as_enum(Objective, "sweep.metric", self.metric)
        self.search = as_enum(Search, "sweep.search", self.search)
        self.scheduler = as_enum(Scheduler, "sweep.scheduler", self.scheduler)
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
            p.type = as_enum(ParamType, f"{key}.type", p.type)
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
