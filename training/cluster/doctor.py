"""Preflight checks for a job: can it track, checkpoint, read its data, run MPI and Ray, and does
the Slurm allocation agree with the config? Each check returns (status, name, detail)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from training.config import TrainConfig
from training.errors import ConfigError
from training.runtime.process import fail_fast_http, set_env
from training.tracking.secrets import PASSWORD, USERNAME, basic_auth, login, redact

OK, WARN, FAIL = "ok", "warn", "FAIL"
Check = tuple[str, str, str]


def tracking(cfg: TrainConfig) -> Check:
    """The store answers; on a server with logins (MLflow's basic-auth app), the user of
    ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` gets in and may log runs to the experiment."""
    from training.tracking.tracker import check_store, tracking_uri

    try:
        uri = tracking_uri(
            cfg.tracking
        )  # refuses a URI that holds a password ($MLFLOW_TRACKING_URI)
    except ConfigError as e:
        return FAIL, "tracking store", str(e)
    shown = redact(uri)  # a password is never printed, even in a FAIL
    set_env(fail_fast_http(10))
    user, note = login(), ""
    if uri.startswith(("http://", "https://")):
        problem, note = server_access(uri, cfg.tracking.experiment, user)
        if problem:
            return FAIL, "tracking store", f"{shown}: {problem}"
        note = (f" as user {user[0]!r}" if user else "") + note
    try:
        check_store(cfg.tracking)
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        first = redact(str(e).splitlines()[0][:200]) if str(e) else ""
        return FAIL, "tracking store", f"{shown}: {type(e).__name__}: {first}"
    return OK, "tracking store", shown + note


def server_access(uri: str, experiment: str, user: tuple[str, str] | None) -> tuple[str, str]:
    """(problem, note) for ``user`` on a tracking server: the login refused (401), the experiment
    unreadable (403) or read-only to the user (the auth app's own permission query). ("", "")
    when the server cannot be reached from here: the store check then says why."""
    who = f"user {user[0]!r}" if user else "no user"
    status, body = _get(
        uri, "/api/2.0/mlflow/experiments/get-by-name", user, experiment_name=experiment
    )
    if status == 401 and user is None:
        return f"the server asks for a login: set {USERNAME} / {PASSWORD}", ""
    if status == 401:
        return f"{who}: wrong username or password ({USERNAME} / {PASSWORD})", ""
    if status == 403:
        return f"{who} has no permission on experiment {experiment!r} (cannot read it)", ""
    if status == 404:
        return "", f"; experiment {experiment!r} does not exist yet: the job creates it"
    if status != 200 or user is None:
        return "", ""
    status, grant = _get(
        uri,
        "/api/3.0/mlflow/users/permissions/get",  # the auth app's; a plain server answers 404
        user,
        username=user[0],
        resource_type="experiment",
        resource_id=body.get("experiment", {}).get("experiment_id", ""),
    )
    if status != 200:
        return "", ""
    level = grant.get("permission", "?")
    if not grant.get("allowed", True):  # "allowed": the permission can use the experiment
        return (
            f"{who} has {level} permission on experiment {experiment!r}: logging runs needs "
            "USE, EDIT or MANAGE (ask the server's admin)"
        ), ""
    return "", f" ({level} on experiment {experiment!r})"


def _get(uri: str, path: str, user: tuple[str, str] | None, **query: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a GET; status 0 when the server cannot be reached."""
    headers = {"Authorization": basic_auth(*user)} if user else {}
    request = Request(f"{uri.rstrip('/')}{path}?{urlencode(query)}", headers=headers)
    try:
        with urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except HTTPError as e:
        return e.code, {}
    except (OSError, ValueError):
        return 0, {}


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
