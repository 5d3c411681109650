"""Slurm resources for ``python -m jobs.submit`` (``cluster.*``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from training.constants import STOP_SIGNAL
from training.errors import check, check_signal


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
        check_signal("cluster.signal", self.signal)
        check(self.signal_seconds > 0, "cluster.signal_seconds", self.signal_seconds, "must be > 0")
