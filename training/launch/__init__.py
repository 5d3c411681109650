"""Launchers: thin adapters that start the processes and end in the same ``pipeline.run``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from training.errors import ConfigError
from training.report import Report

if TYPE_CHECKING:
    # Not at run time: training.config imports training.launch.config, which runs this file first.
    from training.config import TrainConfig

log = logging.getLogger("riskbrain")


def mpi_world() -> tuple[int, int]:
    """(rank, size) from the MPI launcher's environment (Open MPI, PMIx, PMI/Slurm), without starting MPI."""
    env = os.environ
    for rank_var, size_var in (
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
    ):
        if rank_var in env and size_var in env:
            return int(env[rank_var]), int(env[size_var])
    if "PMIX_RANK" in env:  # srun --mpi=pmix sets the rank only: the step's task count is the size
        return int(env["PMIX_RANK"]), int(
            env.get("PMIX_SIZE") or env.get("SLURM_STEP_NUM_TASKS") or 1
        )
    return 0, 1


def launch(cfg: TrainConfig, out_dir: Path) -> Report:
    """Run the job with the configured launcher; returns rank 0's evaluation report."""
    _, size = mpi_world()
    if cfg.launcher.name == "mpi":
        from training.launch.mpi import lead

        return lead(cfg, out_dir)
    if size > 1:
        raise ConfigError(
            f"config launcher.name={cfg.launcher.name!r}: the job was started as {size} MPI ranks; "
            "add launcher=mpi"
        )
    if cfg.launcher.name == "ray":
        from training.launch.ray import launch as ray_launch

        return ray_launch(cfg, out_dir)
    from training.core.pipeline import run
    from training.runtime.process import setup_process

    setup_process(cfg.launcher.threads)
    return run(cfg, out_dir)
