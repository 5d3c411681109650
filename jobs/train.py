"""Train one credit-risk model: ``python -m jobs.train [group=option] [key=value ...]``.

Composes the Hydra config once (on rank 0 when started as MPI ranks: the other ranks receive
it, so every rank runs the identical resolved config and the job has one output folder),
converts it to the typed tree (every range check runs before any data or MLflow is touched),
and hands it to the configured launcher. Errors a user can fix are reported as one line naming
what is wrong, with exit code 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from training.config import register_configs, to_config
from training.constants import EXIT_FAILED, EXIT_PREEMPTED, EXIT_USER_ERROR
from training.errors import JobFailed, RiskbrainError
from training.launch import mpi_world
from training.runtime.exit import run
from training.runtime.preemption import Preempted

log = logging.getLogger("riskbrain")
register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def compose_and_launch(dcfg: DictConfig) -> float:
    _, size = mpi_world()
    try:
        cfg = to_config(dcfg)
        # Heavy imports only once the config is known to be valid.
        from training.launch import launch

        report = launch(cfg, Path(HydraConfig.get().runtime.output_dir))
    except Preempted as e:
        log.warning("preempted: %s; exit %d so the scheduler requeues the job", e, EXIT_PREEMPTED)
        sys.exit(EXIT_PREEMPTED)
    except JobFailed as e:  # a crash elsewhere (a Ray worker), already told in one line
        log.error("%s", e)
        sys.exit(EXIT_FAILED)
    except RiskbrainError as e:
        if size > 1:  # failed before the config was shared (errors after it abort every rank)
            from training.launch.mpi import release_followers

            release_followers()
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # one job of a sweep: Hydra's launcher reports it (submitit: as the task's result)
        log.error("%s", e)
        sys.exit(EXIT_USER_ERROR)
    return report.test.auc  # what a Hydra sweeper optimises


def main() -> None:
    rank, size = mpi_world()
    if size > 1 and rank > 0:
        from training.launch.mpi import follow

        sys.exit(follow())
    compose_and_launch()


if __name__ == "__main__":
    run(main)
