"""The options of ``jobs.score``: which model, which book, where the scores go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from training.errors import check


@dataclass(kw_only=True)
class ScoreConfig:
    model: str = MISSING
    input: str = MISSING
    output: str = MISSING
    rejects: str | None = None
    keep: list[str] = field(default_factory=list)
    reasons: int = 4
    chunk_rows: int = 65_536
    sep: str = ","
    launcher: str = "local"
    threads: int = 0
    timeout_s: float = 300.0  # launcher=mpi: a rank silent this long in a collective ends the job
    tracking_uri: str | None = None
    experiment: str = "scoring"

    def __post_init__(self) -> None:
        check(self.reasons >= 0, "reasons", self.reasons, "must be >= 0 (0: no reasons)")
        check(self.chunk_rows > 0, "chunk_rows", self.chunk_rows, "must be > 0")
        check(self.launcher in ("local", "mpi"), "launcher", self.launcher, "must be local or mpi")
        check(self.threads >= 0, "threads", self.threads, "must be >= 0 (0: automatic)")
        check(self.timeout_s > 0, "timeout_s", self.timeout_s, "must be > 0 seconds")

    def paths(self) -> dict[str, Path]:
        output = Path(self.output).resolve()
        rejects = Path(self.rejects).resolve() if self.rejects else Path(f"{output}.rejects")
        return {
            "input": Path(self.input).resolve(),
            "output": output,
            "rejects": rejects,
            "summary": Path(f"{output}.summary.json"),
        }

    def watch_folder(self) -> tuple[Path, str]:
        """Where the ranks' watchdogs leave their state: a hidden folder beside the output."""
        output = Path(self.output).resolve()
        return output.parent, f".{output.name}.ranks"
