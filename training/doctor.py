"""Preflight checks for a job: can it track, checkpoint, read its data, run MPI and Ray, and does
the Slurm allocation agree with the config? Each check returns (status, name, detail)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from training.config import TrainConfig

OK, WARN, FAIL = "ok", "warn", "FAIL"
Check = tuple[str, str, str]


def tracking(cfg: TrainConfig) -> Check:
    from training.tracking import check_store, tracking_uri

    uri = tracking_uri(cfg.tracking)
    os.environ.setdefault(
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"
    )  # a down server fails now, not after minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        check_store(cfg.tracking)
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        return FAIL, "tracking store", f"{uri}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return OK, "tracking store", uri


def writable(folder: Path) -> Check:
    """Outputs and checkpoints: create, fsync and remove a file where the job will write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder) as f:
            f.write(b"riskbrain")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return FAIL, "checkpoint folder", f"{folder}: {e}"
    free = shutil.disk_usage(folder).free / 2**30
    return (
        (OK if free > 1 else WARN),
        "checkpoint folder",
        f"{folder.resolve()} writable, {free:.1f} GiB free",
    )


def data(cfg: TrainConfig) -> Check:
    if cfg.data.format == "synthetic":
        return OK, "data", f"synthetic, {cfg.data.n_rows:,} rows"
    from training.data.loaders import data_path

    path = data_path(cfg.data)
    if not path.is_file():
        return FAIL, "data", f"not found: {path} (data.root / RISKBRAIN_DATA_ROOT)"
    return OK, "data", f"{path} ({path.stat().st_size / 2**20:.1f} MiB)"


def mpi(cfg: TrainConfig) -> Check:
    try:
        import mpi4py

        mpi4py.rc.initialize = False  # look, do not start MPI
        from mpi4py import MPI

        library = MPI.Get_library_version().split(",")[0].strip()
    except Exception as e:  # noqa: BLE001
        return (FAIL if cfg.launcher.name == "mpi" else WARN), "mpi", f"mpi4py unusable: {e}"
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        import sys

        beside = Path(sys.executable).parent / "mpirun"
        hint = f" (there is {beside}: activate the environment)" if beside.is_file() else ""
        return (
            (FAIL if cfg.launcher.name == "mpi" else WARN),
            "mpi",
            f"{library}; mpirun not on PATH{hint}",
        )
    return OK, "mpi", f"{library}; {mpirun}"


def ray(cfg: TrainConfig) -> Check:
    try:
        import ray as ray_module
        from ray.train.torch import TorchTrainer  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return (FAIL if cfg.launcher.name == "ray" else WARN), "ray", f"ray unusable: {e}"
    address = getattr(cfg.launcher, "address", None) or os.environ.get("RAY_ADDRESS")
    return (
        OK,
        "ray",
        f"ray {ray_module.__version__}; "
        + (f"will join {address}" if address else "will start a local cluster"),
    )


def slurm(cfg: TrainConfig, env: dict[str, str] | None = None) -> Check:
    """Inside an allocation: tasks, CPUs and the stop signal must agree with the config."""
    env = dict(os.environ) if env is None else env
    if "SLURM_JOB_ID" not in env:
        where = "sbatch available" if shutil.which("sbatch") else "no sbatch on PATH"
        return OK, "slurm", f"not in a Slurm job ({where})"
    problems = []
    ntasks, nnodes = (
        int(env.get("SLURM_NTASKS", "1")),
        int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1"))),
    )
    per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    if per_node.isdigit() and int(per_node) * nnodes != ntasks:
        problems.append(
            f"SLURM_NTASKS={ntasks} but {nnodes} nodes x SLURM_NTASKS_PER_NODE={per_node}"
        )
    cpus = env.get("SLURM_CPUS_PER_TASK")
    if cpus and cfg.launcher.threads and cfg.launcher.threads > int(cpus):
        problems.append(
            f"launcher.threads={cfg.launcher.threads} > SLURM_CPUS_PER_TASK={cpus} (cores oversubscribed)"
        )
    if cfg.launcher.name == "mpi" and ntasks < 2:
        problems.append(f"launcher=mpi with SLURM_NTASKS={ntasks}: a single rank")
    if cfg.launcher.name == "local" and ntasks > 1:
        problems.append(f"launcher=local in an allocation of {ntasks} tasks: use launcher=mpi")
    if env.get("RISKBRAIN_SIGNAL", cfg.checkpoint.signal) != cfg.checkpoint.signal:
        problems.append(
            f"RISKBRAIN_SIGNAL={env['RISKBRAIN_SIGNAL']} but checkpoint.signal={cfg.checkpoint.signal}"
        )
    detail = (
        f"job {env['SLURM_JOB_ID']}: {nnodes} node(s), {ntasks} task(s), {cpus or '?'} CPU(s)/task"
    )
    return (
        (FAIL, "slurm", detail + "; " + "; ".join(problems)) if problems else (OK, "slurm", detail)
    )


def torch_device() -> Check:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return (
        OK,
        "torch",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        + (f"{gpus} GPU(s): NCCL" if gpus else "no GPU: CPU + gloo"),
    )


def run_checks(cfg: TrainConfig, out_root: Path) -> list[Check]:
    checks: list[Callable[[], Check]] = [
        lambda: tracking(cfg),
        lambda: writable(out_root),
        lambda: data(cfg),
        lambda: mpi(cfg),
        lambda: ray(cfg),
        lambda: slurm(cfg),
        torch_device,
    ]
    return [check() for check in checks]
