"""Ray launcher: Ray Train's ``TorchTrainer`` runs the same pipeline in every worker.

The driver composes the config; workers receive the resolved config, build a ``DistContext``
from Ray Train's context (Ray has already set up the torch process group: gloo on CPU, NCCL on
GPUs) and call ``pipeline.run``. Rank 0 logs to MLflow. There are no Ray calls in the training step.

With ``launcher.max_failures=N`` Ray Train restarts a failed worker group (all workers, on a
worker's error or death) up to N times; each new group calls ``pipeline.run`` again, which
resumes from the latest checkpoint in the run folder into the MLflow run that checkpoint names.
Rank 0 appends one line per group start to ``ray_attempts.jsonl`` in the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import socket
import time
from pathlib import Path

from training.config import TrainConfig
from training.constants import STOP_FILE
from training.errors import JobFailed, RiskbrainError
from training.launch.config import RayLauncherConfig
from training.report import Report
from training.runtime.preemption import Preempted
from training.tracking.tracker import tracking_uri

log = logging.getLogger("riskbrain")

ATTEMPTS_FILE = "ray_attempts.jsonl"  # in the run folder: one line per worker-group start


class RayJobFailed(JobFailed):
    """A Ray worker crashed: the message names the worker's rank and its error."""


class RayWorkerRefused(RiskbrainError):
    """A Ray worker refused the config or the data (a ``RiskbrainError`` there): bad input."""


def _worker(config: dict) -> Report | None:
    """One rank: the pipeline on Ray Train's process group; rank 0's report is the job's result,
    None when the group found a stop request before it started (a restart after ``Preempted``)."""
    import ray.train
    import ray.train.torch

    from training.core.pipeline import run
    from training.runtime.dist import TorchDistContext
    from training.runtime.process import setup_process

    cfg: TrainConfig = config["cfg"]
    rt = ray.train.get_context()
    setup_process(cfg.launcher.threads or cfg.launcher.cpus_per_worker)
    ctx = TorchDistContext(
        rank=rt.get_world_rank(),
        local_rank=rt.get_local_rank(),
        world_size=rt.get_world_size(),
        device=ray.train.torch.get_device(),
    )
    out_dir = Path(config["out_dir"])
    try:
        if cfg.launcher.shared_memory and ctx.share_memory() and ctx.is_main:
            log.info("ray: %d workers on one machine: gradients summed through shared memory",
                     ctx.world_size)  # fmt: skip
        # Rank 0 decides for all, before the pipeline drops the request: after a stop, the
        # checkpoint is written and Ray's restart must not train on.
        if ctx.broadcast((out_dir / STOP_FILE).exists() if ctx.is_main else None):
            return None
        if ctx.is_main:
            _record_attempt(out_dir, cfg.launcher.max_failures)
        return run(cfg, out_dir, ctx)
    except Preempted:
        raise
    except BaseException as e:
        raise RuntimeError(
            f"rank {ctx.rank} of {ctx.world_size} failed: {type(e).__name__}: {e}"
        ) from e


def launch(cfg: TrainConfig, out_dir: Path) -> Report:
    """Run the job on Ray Train workers; returns rank 0's evaluation report."""
    import ray

    out_dir = out_dir.resolve()
    # Workers run elsewhere (other nodes, other working directories): ship absolute locations.
    # Rank 0 alone talks to MLflow, experiment included (its artifacts go beside a SQLite
    # store, wherever the creating process runs), so the driver never imports MLflow.
    cfg = dataclasses.replace(
        cfg, tracking=dataclasses.replace(cfg.tracking, uri=tracking_uri(cfg.tracking))
    )
    started_here = _connect(cfg.launcher)
    stop_file, stopped = out_dir / STOP_FILE, f"ray workers stopped on SIG{cfg.checkpoint.signal}"
    for stale in (stop_file, out_dir / ATTEMPTS_FILE):  # left by an earlier job in this folder
        stale.unlink(missing_ok=True)
    previous = _forward_stop_signal(cfg.checkpoint.signal, stop_file)
    try:
        report = _trainer(cfg, out_dir).fit().return_value
    except Exception as e:
        if stop_file.exists():  # the workers checkpointed and stopped on request
            raise Preempted(f"{stopped}; checkpoint written") from e
        root = _root_message(e)
        failed = RayWorkerRefused if _names_user_error(root) else RayJobFailed
        raise failed(f"ray job failed{_attempts_note(out_dir)}: {root}") from e
    finally:
        signal.signal(getattr(signal, f"SIG{cfg.checkpoint.signal}"), previous)
        if started_here:
            ray.shutdown()
    if note := _attempts_note(out_dir):
        log.warning("ray: the job finished%s", note)
    if report is None:  # a group restarted after the stop found the request and did not train
        raise Preempted(f"{stopped}; checkpoint written before the restart")
    return report


def _connect(launcher: RayLauncherConfig) -> bool:
    """Join ``launcher.address`` or ``$RAY_ADDRESS``, else start a local cluster; True if started here."""
    import ray

    if ray.is_initialized():
        return False
    address = launcher.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # With its dashboard (on 127.0.0.1): it serves the state API, which Ray Train's
        # placement-group cleaner asks every second whether the controller lives; without it,
        # each ask logged "Failed to query Ray Train Controller actor state".
        cpus = max(os.cpu_count() or 1, launcher.num_workers * launcher.cpus_per_worker)
        ray.init(include_dashboard=True, num_cpus=cpus)
    log.info(
        "ray: %s, %d workers x %d CPU%s",
        "joined " + address if address else "local cluster",
        launcher.num_workers,
        launcher.cpus_per_worker,
        " + 1 GPU" if launcher.use_gpu else "",
    )
    return True


def _trainer(cfg: TrainConfig, out_dir: Path):
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    launcher: RayLauncherConfig = cfg.launcher
    return TorchTrainer(
        _worker,
        train_loop_config={"cfg": cfg, "out_dir": str(out_dir)},
        torch_config=TorchConfig(
            backend="nccl" if launcher.use_gpu else "gloo", timeout_s=launcher.timeout_s
        ),
        scaling_config=ScalingConfig(
            num_workers=launcher.num_workers,
            use_gpu=launcher.use_gpu,
            resources_per_worker={"CPU": launcher.cpus_per_worker},
        ),
        run_config=RunConfig(
            name="riskbrain",
            storage_path=str(out_dir / "ray"),
            # Counts worker-group failures (an error or a dead worker); Ray's own node-preemption
            # retries (max_preemption_failures) are counted apart and left at Ray's default.
            failure_config=FailureConfig(max_failures=launcher.max_failures),
        ),
    )


def _record_attempt(out_dir: Path, max_failures: int) -> int:
    """Rank 0, at each worker-group start: one line in the run folder; returns the attempt number."""
    path = out_dir / ATTEMPTS_FILE
    attempt = 1 + (len(path.read_text().splitlines()) if path.is_file() else 0)
    row = {"attempt": attempt, "started": time.time(), "node": socket.gethostname(),
           "pid": os.getpid()}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    if attempt > 1:
        log.warning(
            "ray: worker group restarted, attempt %d of at most %d: resuming from the latest "
            "checkpoint", attempt, max_failures + 1,
        )  # fmt: skip
    return attempt


def _attempts_note(out_dir: Path) -> str:
    """' after N attempts' when Ray restarted the worker group, else ''."""
    path = out_dir / ATTEMPTS_FILE
    n = len(path.read_text().splitlines()) if path.is_file() else 0
    return f" after {n} attempts" if n > 1 else ""


def _forward_stop_signal(name: str, stop_file: Path):
    """The driver takes the stop signal and leaves a file the workers' loops look for."""
    return signal.signal(getattr(signal, f"SIG{name}"), lambda *_: stop_file.touch())


def _names_user_error(message: str) -> bool:
    """``rank r of n failed: DataError: ...`` (``_worker``'s line): the rank refused its input."""
    found = re.search(r"failed: (\w+): ", message)
    user_errors = {c.__name__ for c in _subclasses(RiskbrainError)}
    return found is not None and found.group(1) in user_errors


def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for c in cls.__subclasses__() for s in _subclasses(c)]


def _root_message(e: BaseException) -> str:
    """The rank whose process died, if one did (the others' errors follow from it: a collective
    with a dead peer fails), else the first line naming a rank in Ray's (long, nested) error,
    else Ray's own first line."""
    failures = getattr(e, "worker_failures", None) or {}  # Ray Train V2's WorkerGroupError
    for rank, error in sorted(failures.items()):
        cause = getattr(error, "health_check_failure", None)  # Ray lost the worker's process
        if cause is not None:
            first = (str(cause).strip().splitlines() or [""])[0]
            return f"rank {rank} failed Ray's health check ({type(cause).__name__}: {first})"
    text = str(e)
    for line in text.splitlines():
        if "rank " in line and " failed: " in line:
            return line.strip()
    return text.splitlines()[0] if text else type(e).__name__
