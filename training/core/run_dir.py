"""The run folder of one job: its config, report, checkpoints, stop file and DONE marker.

Rank 0 writes it; every rank may read it. ``evaluation.json`` is written once, complete, and
``DONE`` (holding the MLflow run id) last, so a folder with ``DONE`` is a finished job.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from training.constants import STOP_FILE
from training.report import Report


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"  # resumable training states
        self.bundle = self.path / "checkpoint"  # the final model: weights.safetensors + bundle.json
        self.plots = self.path / "plots"
        self.stop_file = self.path / STOP_FILE

    @property
    def finished(self) -> bool:
        """A job finished in this folder (``DONE`` is written last)."""
        return (self.path / "DONE").is_file()

    def finished_report(self) -> Report | None:
        """The report of a job that already finished in this folder, else None."""
        if not self.finished:
            return None
        raw = json.loads((self.path / "evaluation.json").read_text())
        return Report.from_dict(raw, where=str(self.path / "evaluation.json"))

    def start(self, cfg: Any) -> None:
        """Create the folder, drop a stop request left by a previous attempt, write the config."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.stop_file.unlink(missing_ok=True)
        self.write_config(cfg)

    def write_config(self, cfg: Any) -> None:
        """``config.yaml``: the config the model is trained with."""
        (self.path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))

    def write_json(self, name: str, obj: dict) -> Path:
        path = self.path / name
        path.write_text(json.dumps(obj, indent=2, default=float))
        return path

    def write_folder(self, final: Path, write: Callable[[Path], Any]) -> Path:
        """``write(tmp)`` fills a temporary folder, renamed to ``final``: never half written."""
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final

    def write_report(self, report: Report) -> Path:
        return self.write_json("evaluation.json", report.to_dict())

    def mark_done(self, run_id: str) -> None:
        """The last write of a job: the report and the model are in place."""
        (self.path / "DONE").write_text(f"{run_id}\n")
