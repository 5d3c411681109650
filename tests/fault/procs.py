"""Real processes for the fault tests: jobs started in the background, a tracking server that can
be killed and started again on the same port, and what a run folder's journal says so far."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.conftest import BIN
from training.tracking.server import SERVER_ENV, stop_group

MPIRUN = [str(BIN / "mpirun"), "-n", "2", "--oversubscribe"] + (
    ["--allow-run-as-root"] if os.geteuid() == 0 else []
)
# A job of a few seconds per epoch that is still training when a fault is injected after epoch 2.
SLOW_TINY = ["debug=tiny", "data.n_rows=20000", "trainer.max_epochs=6", "trainer.patience=6"]


def start_job(run_dir: Path, *overrides: str, mpi: bool = False, env: dict | None = None):
    """``python -m jobs.train`` (under ``mpirun -n 2`` when ``mpi``) in the background; its output
    goes to ``<run_dir>.log``."""
    cmd = [*(MPIRUN if mpi else []), sys.executable, "-m", "jobs.train", *overrides]
    cmd += [f"hydra.run.dir={run_dir}"] + (["launcher=mpi"] if mpi else [])
    log = open(f"{run_dir}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )


def output(run_dir: Path) -> str:
    return Path(f"{run_dir}.log").read_text()


def wait_for(what: str, ready: Callable[[], bool], timeout: float, proc=None) -> float:
    """Seconds until ``ready()``; fails after ``timeout`` or if ``proc`` ends first."""
    t0 = time.monotonic()
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job ended (exit {proc.returncode}) before {what}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.2)
    return time.monotonic() - t0


def stop_rank(proc: subprocess.Popen, pid: int, timeout: float) -> tuple[int, float]:
    """SIGSTOP the rank ``pid`` of the job ``proc``: the job's exit code and the seconds until it
    ended. If it has not ended within ``timeout`` (the watchdog failed), the stopped rank and the
    job are killed, none left behind, and the wait's error stands."""
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.kill(pid, signal.SIGKILL)
            proc.kill()
    return code, time.monotonic() - stopped


def journal_epochs(run_dir: Path) -> int:
    """The last epoch whose metrics the job has written to its journal."""
    path = run_dir / "tracking" / "journal.jsonl"
    if not path.is_file():
        return 0
    steps = [
        r["step"]
        for r in map(json.loads, path.read_text().splitlines())
        if r["op"] == "metrics" and "valid_auc" in r["metrics"]
    ]
    return max(steps, default=0)


def rank_pids(mpirun_pid: int) -> dict[int, int]:
    """{rank: pid} of the ranks an ``mpirun`` started (read from their environment)."""
    out = {}
    for pid in descendants(mpirun_pid):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ranks = [v.split(b"=", 1)[1] for v in env if v.startswith(b"OMPI_COMM_WORLD_RANK=")]
        if ranks and b"python" in Path(f"/proc/{pid}/cmdline").read_bytes():
            out[int(ranks[0])] = pid
    return out


class Server:
    """``mlflow server`` over a SQLite store on a fixed port: kill it, start it again, same store."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port, self.proc = root, port, None
        self.uri = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 120) -> None:
        from urllib.request import urlopen

        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
             "--artifacts-destination", str(self.root / "mlartifacts")],
            stdout=open(self.root / "server.log", "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
            env={**os.environ, **SERVER_ENV}, start_new_session=True,
        )  # fmt: skip

        def up() -> bool:
            try:
                with urlopen(f"{self.uri}/health", timeout=2):
                    return True
            except OSError:
                return False

        wait_for("tracking server", up, timeout, self.proc)

    def kill(self) -> None:
        """SIGKILL to the server and everything it started: an outage, not a clean shutdown."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def stop_all(*procs) -> None:
    for p in procs:
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
