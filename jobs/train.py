"""Train one credit-risk model: ``python -m jobs.train [group=option] [key=value ...]``.

Composes the Hydra config, converts it once to the typed tree (every range check runs before
any data or MLflow is touched) and runs the pipeline. Errors a user can fix are reported as one
line naming what is wrong, with exit code 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from training.config import register_configs, to_config
from training.errors import RiskbrainError

log = logging.getLogger("riskbrain")
register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(dcfg: DictConfig) -> float:
    try:
        cfg = to_config(dcfg)
        from training.pipeline import run  # heavy imports only once the config is known to be valid

        report = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except RiskbrainError as e:
        log.error("%s", e)
        sys.exit(2)
    return report["test"]["auc"]  # what a Hydra sweeper optimises


if __name__ == "__main__":
    main()
