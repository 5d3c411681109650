"""Process set-up shared by every entry point and launcher: logging, torch threads, free ports."""

from __future__ import annotations

import logging
import os
import socket

import torch

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job-log format


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
    return n


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
