"""Ray vs MPI: the same training job end to end, ``launcher=ray`` vs ``mpirun -n 2 ... launcher=mpi``.

Ray twice: a job that starts its own local cluster (``ray``), and one that joins a cluster
already running on the machine (``ray_joined``: ``launcher.address``, as a Slurm job's
``ray start`` or a sweep provides; started once here, before the timed jobs).

Wall time is measured around the whole command. Start-up and training time come from the job's
own MLflow run: ``epoch_time_s`` per epoch, logged with a wall-clock timestamp at the end of each
epoch, so "training started" = end of epoch 1 - its duration, free of log buffering (Ray forwards
worker logs to the driver late).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import ROOT, figure, median, mpirun_cmd, paired_ratio
from training.runtime.process import free_port

GOAL_WALL = "<= 1.3"
LAUNCHERS = ("ray", "mpi", "ray_joined")
RAYS = ("ray", "ray_joined")


@dataclass(frozen=True)
class Job:
    """The job timed: ``data.n_rows``, ``trainer.max_epochs``, and ``debug=tiny``'s small network
    without the LightGBM benchmark (``tiny``) or the default job's network and benchmark."""

    rows: int
    epochs: int
    tiny: bool = True


def command(launcher: str, tmp: Path, name: str, job: Job, address: str = "") -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "jobs.train",
        *(["debug=tiny"] if job.tiny else []),
        f"data.n_rows={job.rows}",
        f"trainer.max_epochs={job.epochs}",
        "registry.register=false",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",  # tmp is absolute: sqlite:////tmp/...
        f"hydra.run.dir={tmp}/{name}",
    ]
    if launcher == "mpi":
        return mpirun_cmd(2) + cmd + ["launcher=mpi"]
    joined = [f"launcher.address={address}"] if launcher == "ray_joined" else []
    return cmd + ["launcher=ray", "launcher.num_workers=2", *joined]


@contextlib.contextmanager
def ray_cluster(tmp: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray cluster of this machine's cores (``ray start --head``, with its dashboard, as
    ``slurm/train_ray.sbatch`` starts one); yields its address and the environment that joins
    it (its auth token). Stopped with its session at the end."""
    port, env = free_port(), {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    ray = Path(sys.executable).parent / "ray"
    head = [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(port), "--num-cpus", str(os.cpu_count()), "--include-dashboard", "true",
            "--disable-usage-stats", "--temp-dir", str(tmp / "ray")]  # fmt: skip
    proc = subprocess.Popen(head, env={**os.environ, **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        up = [str(ray), "status", "--address", address]
        deadline = time.monotonic() + 120
        while subprocess.run(up, env={**os.environ, **env}, capture_output=True).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(head)}: no cluster at {address}")
            time.sleep(1)
        yield address, env
    finally:
        settle(proc.pid, limit_s=0)  # the head and everything it started


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


def run_command(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> float:
    """Run to the end in a session of its own; returns seconds until the command returned."""
    t0 = time.time()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
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


def run_job(
    launcher: str, tmp: Path, name: str, job: Job, timeout_s: float,
    cluster: tuple[str, dict[str, str]] = ("", {}),
) -> dict:  # fmt: skip
    """Seconds: the whole command, before training, training (sum of epochs), after training."""
    address, env = cluster if launcher == "ray_joined" else ("", {})
    t0 = time.time()
    wall = run_command(command(launcher, tmp, name, job, address), timeout_s, env)
    run_id = json.loads((tmp / name / "evaluation.json").read_text())["run_id"]
    logged = epochs_logged(tmp / "mlflow.db", run_id)
    first_time, first_end = logged[0]
    return {
        "wall_s": wall,
        "startup_s": first_end - first_time - t0,
        "train_s": sum(e for e, _ in logged),
        "after_training_s": t0 + wall - logged[-1][1],
    }


def measure(
    rows: int, epochs: int, repeats: int, timeout_s: float = 300, tiny: bool = True
) -> list[dict]:
    """One untimed MPI job first (it creates the MLflow database), then the launchers in turn."""
    with tempfile.TemporaryDirectory(prefix="riskbrain-bench-") as tmp:
        return _measure(Path(tmp), Job(rows, epochs, tiny), repeats, timeout_s)


def _measure(tmp: Path, job: Job, repeats: int, timeout_s: float) -> list[dict]:
    run_job("mpi", tmp, "warmup", job, timeout_s)
    runs: dict[str, list[dict]] = {name: [] for name in LAUNCHERS}
    errors: dict[str, str] = {}
    with ray_cluster(tmp) as cluster:
        for i in range(repeats):
            for launcher in LAUNCHERS if i % 2 == 0 else reversed(LAUNCHERS):
                if launcher in errors:
                    continue  # a launcher that failed once is not retried
                try:
                    runs[launcher].append(
                        run_job(launcher, tmp, f"{launcher}{i}", job, timeout_s, cluster)
                    )
                except RuntimeError as e:
                    if launcher == "mpi":
                        raise
                    errors[launcher] = str(e)
    return figures(runs, errors, job)


def figures(runs: dict[str, list[dict]], errors: dict[str, str], job: Job) -> list[dict]:
    med = {name: {k: median([r[k] for r in rs]) for k in rs[0]} for name, rs in runs.items() if rs}

    def ratio(ray: str, key: str) -> float | None:
        if not runs[ray]:
            return None
        num = [r[key] for r in runs[ray]]  # fewer than MPI's if Ray failed part way
        return paired_ratio(num, [r[key] for r in runs["mpi"]][: len(num)])

    cluster = {"ray": "starting its own local cluster", "ray_joined": "joining a running cluster"}
    detail = {**asdict(job), "median": med, "runs": runs, "errors": errors}
    out = []
    for ray in RAYS:
        name = ray.replace("ray", "ray_vs_mpi", 1)  # ray_vs_mpi, ray_vs_mpi_joined
        out += [
            figure(f"{name}_wall", ratio(ray, "wall_s"), GOAL_WALL,
                   f"end-to-end wall time of the job, launcher=ray {cluster[ray]} / "
                   "mpirun -n 2 launcher=mpi", **(detail if ray == "ray" else {})),
            figure(f"{name}_train", ratio(ray, "train_s"), None,
                   f"training time (sum of epoch_time_s), ray {cluster[ray]} / mpi"),
        ]  # fmt: skip
    return out + [
        figure(
            f"startup_s[{name}]",
            med[name]["startup_s"] if name in med else None,
            None,
            "seconds from the command's start to the first training step",
            unit="s",
        )
        for name in LAUNCHERS
    ]


def main() -> None:
    """``python -m benchmarks.launchers --rows 200000 --epochs 5 --default-job``: the default job
    (its network and LightGBM benchmark) under each launcher; prints the figures as JSON."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--default-job", action="store_true", help="not debug=tiny")
    p.add_argument("--out", type=Path, help="also write the figures here")
    args = p.parse_args()
    out = measure(args.rows, args.epochs, args.repeats, timeout_s=900, tiny=not args.default_job)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
