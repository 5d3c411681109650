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

from training.config import TrainConfig
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
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    out_dir = out_dir.resolve()
    # Workers run elsewhere (other nodes, other working directories): ship absolute locations.
    cfg = dataclasses.replace(
        cfg, tracking=dataclasses.replace(cfg.tracking, uri=tracking_uri(cfg.tracking))
    )
    ensure_experiment(cfg.tracking)
    address = cfg.launcher.address or os.environ.get("RAY_ADDRESS")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=True
        ) if address else ray.init(
            include_dashboard=False,
            num_cpus=max(
                os.cpu_count() or 1, cfg.launcher.num_workers * cfg.launcher.cpus_per_worker
            ),
        )
    log.info(
        "ray: %s, %d workers x %d CPU%s",
        "joined " + address if address else "local cluster",
        cfg.launcher.num_workers,
        cfg.launcher.cpus_per_worker,
        " + 1 GPU" if cfg.launcher.use_gpu else "",
    )
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"cfg": cfg, "out_dir": str(out_dir)},
        torch_config=TorchConfig(
            backend="nccl" if cfg.launcher.use_gpu else "gloo", timeout_s=cfg.launcher.timeout_s
        ),
        scaling_config=ScalingConfig(
            num_workers=cfg.launcher.num_workers,
            use_gpu=cfg.launcher.use_gpu,
            resources_per_worker={"CPU": cfg.launcher.cpus_per_worker},
        ),
        run_config=RunConfig(
            name="riskbrain",
            storage_path=str(out_dir / "ray"),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    stop_file = out_dir / STOP_FILE
    previous = _forward_stop_signal(cfg.checkpoint.signal, stop_file)
    try:
        return trainer.fit().return_value  # rank 0's evaluation report
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
