"""Ray vs MPI: the same training job end to end, ``launcher=ray`` vs ``mpirun -n 2 ... launcher=mpi``.

Wall time is measured around the whole command. Start-up and training time come from the job's
own MLflow run: ``epoch_time_s`` per epoch, logged with a wall-clock timestamp at the end of each
epoch, so "training started" = end of epoch 1 - its duration, free of log buffering (Ray forwards
worker logs to the driver late).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, figure, median, mpirun_cmd, paired_ratio

GOAL_WALL = "<= 1.15"
LAUNCHERS = ("ray", "mpi")


def command(launcher: str, tmp: Path, name: str, rows: int, epochs: int) -> list[str]:
    job = [
        sys.executable,
        "-m",
        "jobs.train",
        "debug=tiny",
        f"data.n_rows={rows}",
        f"trainer.max_epochs={epochs}",
        "registry.register=false",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",  # tmp is absolute: sqlite:////tmp/...
        f"hydra.run.dir={tmp}/{name}",
    ]
    if launcher == "mpi":
        return mpirun_cmd(2) + job + ["launcher=mpi"]
    return job + ["launcher=ray", "launcher.num_workers=2"]


def session_pids(sid: int) -> list[int]:
    """Processes of a session; Ray's daemons stay in the session of the job that started them."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
        except OSError:
            continue  # the process ended while we looked
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


def settle(sid: int, limit_s: float = 30) -> None:
    """Wait for a finished job's leftovers (Ray shutting down) so they don't slow the next job."""
    deadline = time.monotonic() + limit_s
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run_command(cmd: list[str], timeout_s: float) -> float:
    """Run to the end in a session of its own; returns seconds until the command returned."""
    t0 = time.time()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so its session id is its pid
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        settle(proc.pid, limit_s=0)  # kills the whole session
        proc.communicate()
        raise RuntimeError(f"{' '.join(cmd)}: no result after {timeout_s:.0f}s") from None
    wall = time.time() - t0
    settle(proc.pid)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{out[-2000:]}")
    return wall


def epochs_logged(db: Path, run_id: str) -> list[tuple[float, float]]:
    """(epoch_time_s, wall-clock end of the epoch in s) per epoch, from the job's MLflow run."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT value, timestamp FROM metrics WHERE run_uuid = ? AND key = 'epoch_time_s' "
            "ORDER BY step",
            (run_id,),
        ).fetchall()
    return [(value, ts / 1000) for value, ts in rows]


def run_job(launcher: str, tmp: Path, name: str, rows: int, epochs: int, timeout_s: float) -> dict:
    """Seconds: the whole command, before training, training (sum of epochs), after training."""
    t0 = time.time()
    wall = run_command(command(launcher, tmp, name, rows, epochs), timeout_s)
    run_id = json.loads((tmp / name / "evaluation.json").read_text())["run_id"]
    logged = epochs_logged(tmp / "mlflow.db", run_id)
    first_time, first_end = logged[0]
    return {
        "wall_s": wall,
        "startup_s": first_end - first_time - t0,
        "train_s": sum(e for e, _ in logged),
        "after_training_s": t0 + wall - logged[-1][1],
    }


def measure(rows: int, epochs: int, repeats: int, timeout_s: float = 300) -> list[dict]:
    """One untimed MPI job first (it creates the MLflow database), then both launchers in turn."""
    with tempfile.TemporaryDirectory(prefix="riskbrain-bench-") as tmp:
        return _measure(Path(tmp), rows, epochs, repeats, timeout_s)


def _measure(tmp: Path, rows: int, epochs: int, repeats: int, timeout_s: float) -> list[dict]:
    run_job("mpi", tmp, "warmup", rows, epochs, timeout_s)
    runs: dict[str, list[dict]] = {name: [] for name in LAUNCHERS}
    errors: dict[str, str] = {}
    for i in range(repeats):
        for launcher in LAUNCHERS if i % 2 == 0 else reversed(LAUNCHERS):
            if launcher in errors:
                continue  # a launcher that failed once is not retried
            try:
                runs[launcher].append(
                    run_job(launcher, tmp, f"{launcher}{i}", rows, epochs, timeout_s)
                )
            except RuntimeError as e:
                if launcher == "mpi":
                    raise
                errors[launcher] = str(e)
    return figures(runs, errors, rows, epochs)


def figures(
    runs: dict[str, list[dict]], errors: dict[str, str], rows: int, epochs: int
) -> list[dict]:
    med = {name: {k: median([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items() if rs}

    def ratio(key: str) -> float | None:
        if not runs["ray"]:
            return None
        ray = [r[key] for r in runs["ray"]]  # fewer than MPI's if Ray failed part way
        return paired_ratio(ray, [r[key] for r in runs["mpi"]][: len(ray)])

    detail = {"rows": rows, "epochs": epochs, "median": med, "runs": runs, "errors": errors}
    return [
        figure(
            "ray_vs_mpi_wall",
            ratio("wall_s"),
            GOAL_WALL,
            "end-to-end wall time of the job, launcher=ray / mpirun -n 2 launcher=mpi",
            **detail,
        ),
        figure(
            "ray_vs_mpi_train",
            ratio("train_s"),
            None,
            "training time (sum of epoch_time_s), ray / mpi",
        ),
    ] + [
        figure(
            f"startup_s[{name}]",
            med[name]["startup_s"] if name in med else None,
            None,
            "seconds from the command's start to the first training step",
            unit="s",
        )
        for name in LAUNCHERS
    ]
