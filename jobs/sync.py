"""Send run folders' tracking journals to the tracking store: ``python -m jobs.sync PATH``.

PATH is one run folder or a folder of them (``outputs/``). Each job writes every MLflow call to
``<run folder>/tracking/`` first (``training/tracking/journal.py``); a job with ``tracking.mode=offline``
(compute nodes with no route to the server), or one whose server was down at its end, leaves
records there for this command, run where the server is reachable (a login node). Safe to repeat:
what a store already has is never sent twice, and a model is registered once. A folder whose job
is still running is skipped (the job sends its own); runs a dead job left open end FAILED.

  python -m jobs.sync outputs/                        # to the store each job was configured with
  python -m jobs.sync outputs/taiwan/2026-11-29_10-00-00 --uri http://mlflow.login:5000 --wait 300

Exit code 0: every folder synced (or running); 1: some could not be sent (say which).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.constants import EXIT_FAILED, EXIT_OK, EXIT_USER_ERROR
from training.tracking.journal import find_journals
from training.tracking.tracker import sync_folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.sync", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="a run folder, or a folder of run folders")
    parser.add_argument("--uri", help="the tracking store (default: the one each job was run with)")
    parser.add_argument(
        "--wait", type=float, default=60, help="seconds to retry a store that is down"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    log = logging.getLogger("riskbrain")
    if not args.path.exists():
        log.error("%s: no such folder (give a run folder or outputs/)", args.path)
        return EXIT_USER_ERROR
    journals = find_journals(args.path)
    if not journals:
        log.error(
            "%s: no run folder with a tracking journal (tracking/journal.jsonl) in it", args.path
        )
        return EXIT_USER_ERROR
    failed = 0
    for journal in journals:
        result = sync_folder(
            journal, args.uri, args.wait, "the job died without ending the run (found by jobs.sync)"
        )
        failed += result["outcome"] == "failed"
        runs = ", ".join(
            f"run {r.get('run_id')}" + (f" -> version {r['version']}" if r.get("version") else "")
            for r in result["runs"]
        )
        sent = f"{result['sent']} records sent" if result["sent"] else "nothing new to send"
        detail = {"synced": f"{sent}; {runs}" if runs else sent, "running": "a job is running there: it sends its own",
                  "failed": result.get("error", "")}[result["outcome"]]  # fmt: skip
        print(f"{result['outcome']:8s} {result['folder']}: {detail}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
