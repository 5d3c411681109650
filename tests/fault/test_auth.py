"""A shared tracking server with logins (MLflow's basic-auth app): the trainer's password reaches
nothing the run leaves behind, a wrong password is caught by the doctor before a job is queued,
and a user with READ on the registered model cannot move ``@champion``.

One server for the module: an admin, a ``trainer`` (creates the experiment and the model, so
MANAGE on both) and a ``reader`` (READ on the registered model, the server's default elsewhere).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_config, run_job
from tests.fault.report import record
from training.constants import EXIT_REFUSED
from training.errors import ConfigError
from training.runtime.process import scoped_env
from training.tracking.secrets import PASSWORD, USERNAME, has_password, redact

MODEL = "credit-risk-auth"
EXPERIMENT = "auth-it"
# Distinctive, so a hit is this password and nothing else; random per session.
TRAINER_SECRET = "trainer-pw-" + secrets.token_hex(8)
READER_SECRET = "reader-pw-" + secrets.token_hex(8)
ADMIN_SECRET = "admin-pw-" + secrets.token_hex(8)


# ---------------------------------------------------------------------------------------------
# Pure: the URI redaction and the grep the slow tests rely on


def test_redact_hides_the_password_of_a_uri_and_leaves_others_alone():
    assert redact("http://bob:s3cret@host:5000/x?y=1") == "http://bob:***@host:5000/x?y=1"
    assert redact("https://bob:p%40ss@h") == "https://bob:***@h"
    for uri in ("http://host:5000", "http://bob@host", "sqlite:////tmp/a.db", "file:///m", ""):
        assert redact(uri) == uri
    assert has_password("http://bob:s3cret@host") and not has_password("http://bob@host")


def _leaks(secret: str, where: dict[str, bytes]) -> list[str]:
    """The names in ``where`` whose bytes hold ``secret``, as typed or as it travels in a
    basic-auth header (base64 of ``user:password``, any user)."""
    needles = [secret.encode()] + [
        base64.b64encode(f"{user}:{secret}".encode()) for user in ("trainer", "reader", "admin")
    ]
    return sorted(name for name, data in where.items() if any(n in data for n in needles))


def _files(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}


def test_the_grep_finds_a_planted_secret(tmp_path):
    """The check below can fail: a password planted in a nested file, raw or as an auth header."""
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(f"- tracking.password={TRAINER_SECRET}\n")
    header = base64.b64encode(f"trainer:{TRAINER_SECRET}".encode()).decode()
    (tmp_path / "server.log").write_text(f"Authorization: Basic {header}\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    found = _leaks(TRAINER_SECRET, _files(tmp_path))
    assert found == sorted([str(tmp_path / ".hydra/overrides.yaml"), str(tmp_path / "server.log")])


# ---------------------------------------------------------------------------------------------
# The real server, one job, the doctor and the gate


@contextlib.contextmanager
def logged_in(user: str, password: str) -> Iterator[None]:
    """This process's MLflow calls as ``user`` for the block."""
    with scoped_env({USERNAME: user, PASSWORD: password}):
        yield


def _as(user: str, password: str) -> dict[str, str]:
    return {USERNAME: user, PASSWORD: password, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The auth server; yields (uri, its folder: store, artifacts, users, log)."""
    from training.tracking.server import Auth, add_user, serve

    root = tmp_path_factory.mktemp("auth-server")
    auth = Auth(password=ADMIN_SECRET)
    with serve(f"sqlite:///{root}/mlflow.db", root, auth=auth) as uri:
        add_user(uri, auth, "trainer", TRAINER_SECRET)
        add_user(uri, auth, "reader", READER_SECRET, {("registered_model", MODEL): "READ"})
        yield uri, root


@pytest.fixture(scope="module")
def job(server, tmp_path_factory):
    """A tiny training job as the trainer; returns (process, run folder, report)."""
    uri, _ = server
    work = tmp_path_factory.mktemp("auth-job")
    proc = run_job(
        "debug=tiny",
        "trainer.max_epochs=2",
        f"registry.name={MODEL}",
        "registry.move_alias=true",
        f"tracking.experiment={EXPERIMENT}",
        f"tracking.uri={uri}",
        cwd=work,
        env=_as("trainer", TRAINER_SECRET),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = work / "outputs" / "run"
    return proc, out, json.loads((out / "evaluation.json").read_text())


def _what_the_server_holds(uri: str, report: dict, into: Path) -> dict[str, bytes]:
    """The run's params, tags and metric names, every artifact of the run and of the registered
    model, the logged model's params and tags, the version's and the model's tags (as the admin)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    run = client.get_run(report["run_id"])
    version = report["registered"]["version"]
    mv = client.get_model_version(MODEL, version)
    logged = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    texts = {
        "run params": run.data.params,
        "run tags": run.data.tags,
        "run metric names": sorted(run.data.metrics),
        "version tags": mv.tags,
        "model tags": client.get_registered_model(MODEL).tags,
        "logged model params and tags": [(m.params, m.tags) for m in logged],
    }
    mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, dst_path=str(into / "run"), tracking_uri=uri
    )
    mlflow.set_registry_uri(uri)
    mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{MODEL}/{version}", dst_path=str(into / "model"), tracking_uri=uri
    )
    return {k: json.dumps(v).encode() for k, v in texts.items()}


@pytest.mark.slow
def test_the_password_is_nowhere_in_what_the_run_left(server, job, tmp_path, monkeypatch):
    uri, server_root = server
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    proc, out, report = job
    with logged_in("admin", ADMIN_SECRET):
        held = _what_the_server_holds(uri, report, tmp_path)
    held |= _files(tmp_path)  # the downloaded artifacts
    held |= _files(out)  # the run folder: .hydra/, the log, config.yaml, the card, checkpoints
    held |= _files(server_root)  # the store, artifact folder, user database and server log
    held |= {"job stdout": proc.stdout.encode(), "job stderr": proc.stderr.encode()}
    assert (out / ".hydra" / "overrides.yaml").is_file() and (out / "config.yaml").is_file()
    assert any(name.endswith("model_card.md") for name in held), sorted(held)
    assert any(name.endswith("MLmodel") for name in held), sorted(held)
    leaks = _leaks(TRAINER_SECRET, held)
    size = sum(len(v) for v in held.values())
    record(
        "trainer's password (env) vs everything the run wrote",
        f"found in {len(leaks)} of {len(held)} places ({size / 2**20:.1f} MiB grepped)",
        None,
        "-",
    )
    assert leaks == []


def _doctor(
    uri: str, env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.doctor",
            f"tracking.uri={uri}",
            f"tracking.experiment={EXPERIMENT}",
        ],
        cwd=ROOT,
        env={**os.environ, **env, "RISKBRAIN_RUN_DIR": str(tmp_path / "run"), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc, time.monotonic() - start


@pytest.mark.slow
def test_doctor_stops_a_wrong_password_before_the_job_is_queued(server, tmp_path):
    uri, _ = server
    wrong = "wrong-pw-" + secrets.token_hex(6)
    proc, seconds = _doctor(uri, _as("trainer", wrong), tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_REFUSED, text
    assert "FAIL" in text and "user 'trainer': wrong username or password" in text, text
    assert f"{USERNAME} / {PASSWORD}" in text and "Traceback" not in text
    assert wrong not in text
    record(
        "wrong tracking password (basic-auth server)",
        "doctor: FAIL tracking store, names the user and the two variables; exit 4",
        seconds,
        "0 (job not queued)",
    )


@pytest.mark.slow
def test_doctor_checks_the_login_and_the_experiment_permission(server, job, monkeypatch):
    """In-process, the tracking check alone: the trainer may log to the experiment, the reader
    may only read it, no login at all is asked for one, and a password in the URI is refused."""
    from training.cluster.doctor import FAIL, OK, tracking

    uri, _ = server
    cfg = compose_config(f"tracking.uri={uri}", f"tracking.experiment={EXPERIMENT}")
    for key, value in _as("trainer", TRAINER_SECRET).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    status, _, detail = tracking(cfg)
    assert status == OK and "as user 'trainer'" in detail and "MANAGE" in detail, detail

    monkeypatch.setenv(USERNAME, "reader")
    monkeypatch.setenv(PASSWORD, READER_SECRET)
    status, _, detail = tracking(cfg)
    assert status == FAIL and "user 'reader' has READ permission" in detail, detail
    assert "USE, EDIT or MANAGE" in detail and READER_SECRET not in detail

    monkeypatch.delenv(USERNAME)
    monkeypatch.delenv(PASSWORD)
    status, _, detail = tracking(cfg)
    assert status == FAIL and "asks for a login" in detail, detail

    with_password = uri.replace("http://", f"http://trainer:{TRAINER_SECRET}@")
    with pytest.raises(ConfigError) as refused:  # in the config: refused before anything runs
        compose_config(f"tracking.uri={with_password}", f"tracking.experiment={EXPERIMENT}")
    said = str(refused.value)
    assert "tracking.uri" in said and TRAINER_SECRET not in said and "trainer:***@" in said, said
    monkeypatch.setenv("MLFLOW_TRACKING_URI", with_password)  # in the environment: the doctor
    status, _, detail = tracking(compose_config(f"tracking.experiment={EXPERIMENT}"))
    assert status == FAIL and TRAINER_SECRET not in detail and "trainer:***@" in detail, detail
    assert "MLFLOW_TRACKING_URI" in detail, detail


@pytest.mark.slow
def test_a_reader_cannot_move_champion(server, job, tmp_path):
    """v1 holds @champion; v2 (the same model again) is gated by the reader: refused by the
    server, one clear line, and @champion still on v1."""
    import mlflow
    from mlflow import MlflowClient

    uri, _ = server
    _, _, report = job
    with logged_in("admin", ADMIN_SECRET):
        client = MlflowClient(uri, uri)
        v1 = client.get_model_version(MODEL, report["registered"]["version"])
        mlflow.set_registry_uri(uri)
        v2 = mlflow.register_model(v1.source, MODEL, tags=v1.tags)  # the logged model again
        client.set_registered_model_alias(MODEL, "champion", v1.version)
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.promote",
            f"name={MODEL}",
            f"candidate={v2.version}",
            f"tracking_uri={uri}",
            "promotion.benchmark=false",  # the gate is not under test: its cheapest form
            "promotion.bootstrap=20",
            "threads=1",
        ],
        cwd=ROOT,
        env={**os.environ, **_as("reader", READER_SECRET)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - start
    lines = [line for line in proc.stderr.splitlines() if line.startswith("promote:")]
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    assert "user 'reader'" in lines[0] and "permission denied" in lines[0], lines[0]
    assert f"EDIT on registered model '{MODEL}'" in lines[0] and "not moved" in lines[0], lines[0]
    assert READER_SECRET not in proc.stdout + proc.stderr
    with logged_in("admin", ADMIN_SECRET):
        assert client.get_model_version_by_alias(MODEL, "champion").version == v1.version
    record(
        "READ-only user runs jobs.promote (basic-auth server)",
        "server refused the version tag (403) after the gate; one line naming the user and "
        "the missing EDIT; exit 2; @champion unchanged",
        seconds,
        "the gate's scoring (its decision run ends FAILED, out of the history)",
    )
