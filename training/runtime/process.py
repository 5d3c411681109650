"""Process set-up shared by every entry point and launcher: logging, torch threads, the
environment the libraries read, free ports.

The one module that writes ``os.environ`` (tests/unit/test_layout.py holds it so): ``set_env``
for what a whole process keeps, ``scoped_env`` for what one library call needs and no more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping

import torch

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job-log format
# MLflow's client: no artifact progress bars in job logs.
QUIET = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def setup_process(threads: int = 0, local_world_size: int = 1) -> int:
    """Log INFO to stderr (Hydra sets its own handlers where it runs) and set torch threads.

    Threads per process: ``threads`` when set (``launcher.threads``, a Ray worker's CPUs, a sweep
    trial's CPUs), else ``$OMP_NUM_THREADS`` (the usual way to say it on a shared machine), else
    Slurm's CPUs per task, else this node's cores divided by its local ranks. Returns the number.
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    n = (
        threads
        or int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0] or 0)
        or int(os.environ.get("SLURM_CPUS_PER_TASK", 0))
        or max(1, (os.cpu_count() or 1) // local_world_size)
    )
    torch.set_num_threads(n)
    set_env(QUIET)
    return n


def fail_fast_http(timeout_s: float) -> dict[str, str]:
    """MLflow's HTTP client settings under which a store that is down fails a request now,
    not after minutes of retries (a job keeps its records in its journal meanwhile)."""
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}


def set_env(values: Mapping[str, str]) -> None:
    """Set what this process's libraries read from the environment, keeping what the user set."""
    for key, value in values.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def scoped_env(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in the environment for the block (and the processes it starts), then restored."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (for a rendezvous or a local server)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def seconds_since_start() -> float:
    """Wall seconds since this process started (from /proc: includes interpreter start and imports)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
