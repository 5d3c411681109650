"""Shared test helpers: compose the real configs, find free ports, run the real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from training.config import TrainConfig, register_configs, to_config
from training.process import free_port  # noqa: F401 - the tests' free ports

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DATA_ROOT = Path(os.environ.get("RISKBRAIN_DATA_ROOT", ROOT.parent / "shared" / "data"))

register_configs()


def compose_config(*overrides: str) -> TrainConfig:
    """The job's config, composed exactly as ``python -m jobs.train`` would."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return to_config(compose(config_name="train", overrides=list(overrides)))


def run_job(
    *overrides: str,
    cwd: Path,
    env: dict | None = None,
    timeout: float = 600,
    module: str = "jobs.train",
) -> subprocess.CompletedProcess:
    """Run an entry point in a fresh process, outputs under ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", module, *overrides, f"hydra.run.dir={cwd}/outputs/run"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def needs_data(relative: str) -> Path:
    path = DATA_ROOT / relative
    if not path.is_file():
        pytest.skip(f"real data set not found at {path} (set RISKBRAIN_DATA_ROOT)")
    return path
