"""Preflight: ``python -m jobs.doctor [overrides]`` checks what a job needs before it is queued.

Tracking store reachable, checkpoint folder writable, data present, MPI and Ray usable, Slurm
variables consistent with the config. Prints a table; exits 1 if any check fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from training.config import register_configs, to_config
from training.doctor import FAIL, OK, run_checks
from training.errors import RiskbrainError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main(argv: list[str]) -> int:
    register_configs()
    console = Console()
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = to_config(compose(config_name="train", overrides=argv))
    except (RiskbrainError, Exception) as e:  # noqa: BLE001 - composition errors are reported the same way
        console.print(f"[red]FAIL[/] config: {e}")
        return 1
    out_root = Path(os.environ.get("RISKBRAIN_RUN_DIR", "outputs"))
    results = run_checks(cfg, out_root)
    table = Table(title="riskbrain doctor", show_lines=False)
    for col in ("", "check", "detail"):
        table.add_column(col)
    style = {OK: "green", FAIL: "red"}
    for status, name, detail in results:
        table.add_row(f"[{style.get(status, 'yellow')}]{status}[/]", name, detail)
    console.print(table)
    return 1 if any(status == FAIL for status, _, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
