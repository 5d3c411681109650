"""Preflight: ``python -m jobs.doctor [overrides]`` checks what a job needs before it is queued.

Tracking store reachable, checkpoint folder writable, data present, MPI and Ray usable, Slurm
variables consistent with the config. Prints a table; exits 4 (refused) if any check fails.

``python -m jobs.doctor --repair [overrides]`` also ends FAILED every RUNNING run of the experiment
whose job is dead (its run folder's lock is free: the job was killed, or its node died), with the
reason, and sends what the run's journal still held.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from training.cluster.doctor import FAIL, OK, run_checks
from training.config import register_configs, to_config
from training.constants import EXIT_OK, EXIT_REFUSED
from training.errors import RiskbrainError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main(argv: list[str]) -> int:
    repair = "--repair" in argv  # also end FAILED the RUNNING runs whose job is dead
    argv = [a for a in argv if a != "--repair"]
    register_configs()
    console = Console()
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = to_config(compose(config_name="train", overrides=argv))
    except (RiskbrainError, Exception) as e:  # noqa: BLE001 - composition errors are reported the same way
        console.print(f"[red]FAIL[/] config: {e}")
        return EXIT_REFUSED
    out_root = Path(os.environ.get("RISKBRAIN_RUN_DIR", "outputs"))
    results = run_checks(cfg, out_root)
    table = Table(title="riskbrain doctor", show_lines=False)
    for col in ("", "check", "detail"):
        table.add_column(col)
    style = {OK: "green", FAIL: "red"}
    for status, name, detail in results:
        table.add_row(f"[{style.get(status, 'yellow')}]{status}[/]", name, detail)
    console.print(table)
    failed = any(status == FAIL for status, _, _ in results)
    if repair and not failed:
        repair_stale_runs(cfg, console)
    return EXIT_REFUSED if failed else EXIT_OK


def repair_stale_runs(cfg, console: Console) -> None:
    """End FAILED each RUNNING run of the experiment whose job is dead (its run folder's lock is
    free), through the folder's journal, so the record says why; then send what the journal holds."""
    from training.tracking.journal import Journal
    from training.tracking.tracker import stale_runs_in_store, sync_folder

    stale = stale_runs_in_store(cfg.tracking)
    if not stale:
        console.print("repair: no RUNNING run of a dead job")
    for run_id, folder in stale:
        reason = "the job died without ending the run (found by jobs.doctor --repair)"
        result = sync_folder(Journal(Path(folder)), None, 0, reason)
        console.print(f"repair: run {run_id} ({folder}): marked FAILED: {result['outcome']}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
