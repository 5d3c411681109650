"""Submit a training job to Slurm: ``python -m jobs.submit [cluster=...] [launcher=mpi|ray] [overrides]``.

Composes and validates the whole config here (a bad value fails now, not in the queue), renders
the sbatch script from ``cluster``, keeps it in this command's output folder, submits it, and
prints the job id. The job itself runs ``python -m jobs.train`` with the same overrides.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from training.cluster.submit import default_env, render, submit
from training.config import register_configs, to_config
from training.constants import EXIT_USER_ERROR
from training.errors import RiskbrainError

log = logging.getLogger("riskbrain")
register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(dcfg: DictConfig) -> None:
    try:
        cfg = to_config(dcfg)
        hc = HydraConfig.get()
        # The job gets the user's overrides, minus those only this command reads.
        overrides = [
            o for o in hc.overrides.task if not o.lstrip("+~").startswith(("cluster", "hydra."))
        ]
        if cfg.launcher.name == "local":
            overrides.append("launcher=mpi")  # a Slurm job runs its tasks as MPI ranks
        script = Path(hc.runtime.output_dir) / "job.sbatch"
        script.write_text(
            render(cfg.cluster, cfg.launcher.name, overrides, cfg.cluster.env or default_env())
        )
        job_id = submit(script)
    except RiskbrainError as e:
        log.error("%s", e)
        sys.exit(EXIT_USER_ERROR)
    log.info("submitted %s as job %s", script, job_id)
    print(job_id)


if __name__ == "__main__":
    main()
