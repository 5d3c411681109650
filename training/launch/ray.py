"""Ray launcher: Ray Train's ``TorchTrainer`` runs the same pipeline in every worker.

The driver composes the config; workers receive the resolved config, build a ``DistContext``
from Ray Train's context (Ray has already set up the torch process group: gloo on CPU, NCCL on
GPUs) and call ``pipeline.run``. Rank 0 logs to MLflow. There are no Ray calls in the training step.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from pathlib import Path

from training.config import RayLauncherConfig, TrainConfig
from training.constants import STOP_FILE
from training.errors import RiskbrainError
from training.preemption import Preempted
from training.tracking import ensure_experiment, tracking_uri

log = logging.getLogger("riskbrain")


class RayJobFailed(RiskbrainError):
    """A Ray worker raised: the message names the worker's rank and its error."""


def _worker(config: dict) -> dict:
    """One rank: the pipeline on Ray Train's process group; rank 0's report is the job's result."""
    import ray.train
    import ray.train.torch

    from training.dist import TorchDistContext
    from training.pipeline import run
    from training.process import setup_process

    cfg: TrainConfig = config["cfg"]
    rt = ray.train.get_context()
    setup_process(cfg.launcher.threads or cfg.launcher.cpus_per_worker)
    ctx = TorchDistContext(
        rank=rt.get_world_rank(),
        local_rank=rt.get_local_rank(),
        world_size=rt.get_world_size(),
        device=ray.train.torch.get_device(),
    )
    try:
        return run(cfg, Path(config["out_dir"]), ctx)
    except Preempted:
        raise
    except BaseException as e:
        raise RuntimeError(
            f"rank {ctx.rank} of {ctx.world_size} failed: {type(e).__name__}: {e}"
        ) from e


def launch(cfg: TrainConfig, out_dir: Path) -> dict:
    """Run the job on Ray Train workers; returns rank 0's evaluation report."""
    import ray

    out_dir = out_dir.resolve()
    # Workers run elsewhere (other nodes, other working directories): ship absolute locations.
    cfg = dataclasses.replace(
        cfg, tracking=dataclasses.replace(cfg.tracking, uri=tracking_uri(cfg.tracking))
    )
    ensure_experiment(cfg.tracking)
    started_here = _connect(cfg.launcher)
    stop_file = out_dir / STOP_FILE
    previous = _forward_stop_signal(cfg.checkpoint.signal, stop_file)
    try:
        return _trainer(cfg, out_dir).fit().return_value
    except Exception as e:
        if stop_file.exists():  # the workers checkpointed and stopped on request
            raise Preempted(
                f"ray workers stopped on SIG{cfg.checkpoint.signal}; checkpoint written"
            ) from e
        raise RayJobFailed(f"ray job failed: {_root_message(e)}") from e
    finally:
        signal.signal(getattr(signal, f"SIG{cfg.checkpoint.signal}"), previous)
        if started_here:
            ray.shutdown()


def _connect(launcher: RayLauncherConfig) -> bool:
    """Join ``launcher.address`` or ``$RAY_ADDRESS``, else start a local cluster; True if started here."""
    import ray

    if ray.is_initialized():
        return False
    address = launcher.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    else:
        cpus = max(os.cpu_count() or 1, launcher.num_workers * launcher.cpus_per_worker)
        ray.init(include_dashboard=False, num_cpus=cpus)
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
            failure_config=FailureConfig(max_failures=0),
        ),
    )


def _forward_stop_signal(name: str, stop_file: Path):
    """The driver takes the stop signal and leaves a file the workers' loops look for."""
    return signal.signal(getattr(signal, f"SIG{name}"), lambda *_: stop_file.touch())


def _root_message(e: BaseException) -> str:
    """The first line naming a rank in Ray's (long, nested) error, else Ray's own first line."""
    text = str(e)
    for line in text.splitlines():
        if "rank " in line and " failed: " in line:
            return line.strip()
    return text.splitlines()[0] if text else type(e).__name__
