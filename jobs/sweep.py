"""Sweep hyperparameters: ``python -m jobs.sweep sweep=<name> [data=...] [overrides]``.

The search space is the ``sweep`` config group (YAML); it is validated with the rest of the
config before any trial starts (unknown keys, empty or inverted ranges, an objective the loop
does not report). The sweep folder is ``outputs/sweeps/<sweep.name>`` (or ``hydra.run.dir``):
running the same command again resumes an interrupted sweep without re-running finished trials.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from training.config import register_configs, to_config
from training.constants import EXIT_PREEMPTED, EXIT_USER_ERROR
from training.errors import ConfigError, RiskbrainError
from training.launch.sweep import SweepInterrupted

log = logging.getLogger("riskbrain")
register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(dcfg: DictConfig) -> float | None:
    try:
        cfg = to_config(dcfg)
        if not cfg.sweep.params:
            raise ConfigError(
                "config sweep: no parameters to search; pick a sweep, e.g. sweep=smoke"
            )
        hc = HydraConfig.get()
        chosen = any(o.startswith("hydra.run.dir=") for o in hc.overrides.hydra)
        sweep_dir = (
            Path(hc.runtime.output_dir) if chosen else Path("outputs") / "sweeps" / cfg.sweep.name
        )
        from training.launch.sweep import run_sweep

        report = run_sweep(cfg, sweep_dir)
    except SweepInterrupted as e:
        log.warning("%s", e)
        sys.exit(EXIT_PREEMPTED)
    except RiskbrainError as e:
        log.error("%s", e)
        sys.exit(EXIT_USER_ERROR)
    return report.get("best", {}).get("objective")


if __name__ == "__main__":
    main()
