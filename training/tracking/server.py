"""A local ``mlflow server`` over a SQLite store, for many concurrent writers (sweeps); with
``auth``, MLflow's basic-auth app in front of it (a shared server: users, passwords, permissions)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen

from training.errors import check
from training.runtime.process import free_port
from training.tracking.secrets import PASSWORD, USERNAME, basic_auth
from training.tracking.tracker import prepare_store

log = logging.getLogger("riskbrain")

# A server's own environment: not a client of another server, and without MLflow 3's job runner
# (a dozen huey consumers for GenAI jobs, about 1.4 GiB and several CPU-seconds at start-up) that
# experiment tracking and the model registry do not use.
SERVER_ENV = {"MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

# The auth app's settings: users and grants in their own SQLite file beside the store. No
# password in it: the admin's comes from MLFLOW_AUTH_ADMIN_PASSWORD in the server's environment.
AUTH_INI = """[mlflow]
default_permission = {default_permission}
database_uri = sqlite:///{database}
admin_username = {admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


@dataclass(frozen=True, kw_only=True)
class Auth:
    """MLflow's basic-auth app: the admin it creates on first start, what other users get unasked."""

    admin: str = "admin"
    password: str  # the admin's: passed in the server's environment, never written to a file
    default_permission: str = "READ"  # READ, USE, EDIT, MANAGE or NO_PERMISSIONS

    def __post_init__(self) -> None:
        # the auth app refuses to start with a shorter one, and says so only in its log
        check(len(self.password) >= 12, "auth.password", "***", "must be at least 12 characters")


@contextlib.contextmanager
def serve(
    backend_uri: str, root: Path, timeout: float = 120, auth: Auth | None = None
) -> Iterator[str]:
    """Serve ``backend_uri`` on a free local port until the block ends; yields the HTTP URI.

    With ``auth``, every request needs a user's name and password (``add_user``)."""
    prepare_store(backend_uri)  # a new SQLite store is a copy of a migrated one, not migrated again
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(root / "mlartifacts"),
    ]
    env = {**os.environ, **SERVER_ENV}
    if auth is not None:
        command += ["--app-name", "basic-auth"]
        env = {k: v for k, v in env.items() if k not in (USERNAME, PASSWORD)}  # not a client's
        env |= auth_environment(auth, root)
    with open(root / "mlflow-server.log", "a") as out:  # its own process group: see stop_group
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, proc, timeout, f"mlflow server for {backend_uri}", root)
        log.info("tracking server %s over %s%s", uri, backend_uri, " (basic-auth)" if auth else "")
        yield uri
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """End a process started with ``start_new_session=True`` and everything it started.

    ``mlflow server`` runs uvicorn (and, unless SERVER_ENV turns it off, a job runner and a dozen
    task consumers); ending only the ``mlflow`` process leaves them running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):  # whatever outlived the grace period
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def auth_environment(auth: Auth, root: Path) -> dict[str, str]:
    """The basic-auth app's environment: its ini (written to ``root``), the admin's password and
    the static key Flask signs its CSRF tokens with."""
    ini = root / "basic_auth.ini"
    ini.write_text(
        AUTH_INI.format(
            default_permission=auth.default_permission,
            database=root / "basic_auth.db",
            admin=auth.admin,
        )
    )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": auth.password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }


def _wait_healthy(uri: str, proc: subprocess.Popen, timeout: float, what: str, root: Path) -> None:
    """Until ``/health`` answers (it needs no login); raises if the server exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urlopen(f"{uri}/health", timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} did not start; see {root / 'mlflow-server.log'}"
                ) from None
            time.sleep(0.5)


def add_user(
    uri: str,
    auth: Auth,
    username: str,
    password: str,
    grants: dict[tuple[str, str], str] | None = None,
) -> None:
    """Create ``username`` as the admin, then grant it ``{(resource type, name or id): permission}``
    (e.g. ``{("experiment", "7"): "EDIT", ("registered_model", "credit-risk"): "READ"}``)."""
    admin = basic_auth(auth.admin, auth.password)
    _post(uri, "/api/2.0/mlflow/users/create", {"username": username, "password": password}, admin)
    for (resource_type, resource_id), permission in (grants or {}).items():
        body = {
            "username": username,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "permission": permission,
        }
        _post(uri, "/api/3.0/mlflow/users/permissions/grant", body, admin)


def _post(uri: str, path: str, body: dict, authorization: str) -> dict:
    request = Request(
        uri + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": authorization},
        method="POST",
    )
    with urlopen(request, timeout=30) as answer:
        text = answer.read()
    return json.loads(text) if text else {}
