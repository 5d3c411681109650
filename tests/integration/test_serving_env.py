"""A registered model runs where a deployment team runs it: a fresh virtualenv with nothing but
the model's own requirements.txt (no training packages), loaded with mlflow and served over HTTP.

Two tiny jobs train and register a TabM and an MLP into one SQLite store; each model is
downloaded from ``models:/<name>@challenger`` into a folder, a clean ``python3.11 -m venv`` gets
``pip install -r requirements.txt`` (one venv per distinct requirements file: the MLP's lacks the
TabM libraries; torch comes from the machine's local wheel, the rest from the pip cache or the
index), and that venv's python predicts the rows the training process scored. About 3 minutes on
2 cores, most of it pip installing torch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, run_job
from tests.integration.conftest import wait_http
from training.serving.package import RUNTIME_MODULES

pytestmark = pytest.mark.slow
EXPERIMENT = "serving-env"
MODELS = {"tabm": "credit-risk", "mlp": "credit-risk-mlp"}
TRAINING_ONLY = ("omegaconf", "hydra", "scipy", "sklearn", "rich", "ray", "training")

PREDICT = """
import json, sys
import mlflow, pandas as pd

model_dir, example = sys.argv[1], json.load(open(sys.argv[2]))
frame = pd.DataFrame(example["data"], columns=example["columns"])
frame = frame.astype({c: "float64" for c in frame.columns if frame[c].dtype.kind in "iuf"})
model = mlflow.pyfunc.load_model(model_dir)
print(json.dumps({"pd": model.predict(frame)["pd"].tolist()}))
"""


def _clean_env(venv: Path | None = None) -> dict[str, str]:
    """This process's environment less anything that points into the training venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MLFLOW_TRACKING_URI"}
    }
    training_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p != training_bin]
    if venv is not None:
        path.insert(0, str(venv / "bin"))  # `mlflow models serve` execs uvicorn from PATH
    return env | {"PATH": os.pathsep.join(path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """Train and register both models; returns the store URI and, per model, its example rows."""
    from mlflow import MlflowClient

    work = tmp_path_factory.mktemp("serving-env")
    uri = f"sqlite:///{work}/mlflow.db"
    # artifacts under this test's folder, not the default ./mlruns of the job's working directory
    MlflowClient(tracking_uri=uri).create_experiment(
        EXPERIMENT, artifact_location=(work / "artifacts").as_uri()
    )
    examples = {}
    for model, name in MODELS.items():
        cwd = work / model
        cwd.mkdir()
        proc = run_job(
            "debug=tiny",
            f"model={model}",
            f"tracking.uri={uri}",
            f"tracking.experiment={EXPERIMENT}",
            f"registry.name={name}",
            "registry.move_alias=true",
            cwd=cwd,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        examples[model] = cwd / "outputs" / "run" / "example_predictions.json"
    return {"uri": uri, "work": work, "examples": examples}


@pytest.fixture(scope="module")
def downloaded(store) -> dict[str, Path]:
    """Each model's folder, downloaded from the registry as a deployment would."""
    import mlflow
    from mlflow import MlflowClient

    # Resolve the alias with a client bound to the store (no global URI is set: mlflow.set_*_uri
    # would leak into later tests through this process's globals and environment).
    client = MlflowClient(tracking_uri=store["uri"], registry_uri=store["uri"])
    folders = {}
    for model, name in MODELS.items():
        version = client.get_model_version_by_alias(name, "challenger").version
        source = client.get_model_version_download_uri(name, version)
        folders[model] = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source,
                dst_path=str(store["work"] / "download" / model),
                tracking_uri=store["uri"],
            )
        )
    for folder in folders.values():
        assert (folder / "MLmodel").is_file()
    return folders


@pytest.fixture(scope="module")
def venvs(downloaded, tmp_path_factory) -> dict[str, Path]:
    """A fresh virtualenv per distinct requirements.txt, with exactly those requirements."""
    python = shutil.which("python3.11", path=_clean_env()["PATH"])
    assert python, "python3.11 must be on PATH to build the deployment venv"
    by_requirements: dict[str, Path] = {}
    out = {}
    for model, folder in downloaded.items():
        reqs = (folder / "requirements.txt").read_text()
        if reqs not in by_requirements:
            venv = tmp_path_factory.mktemp("venv") / "env"
            started = time.monotonic()
            subprocess.run([python, "-m", "venv", str(venv)], check=True, env=_clean_env())
            pip = subprocess.run(
                [
                    venv / "bin/python",
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-compile",  # no .pyc for torch's thousands of modules: 11 CPU-s, not 25
                    "-r",
                    folder / "requirements.txt",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                env=_clean_env(),
            )
            assert pip.returncode == 0, pip.stdout + pip.stderr
            seconds = time.monotonic() - started
            print(f"\nvenv + pip install -r requirements.txt ({model}): {seconds:.0f} s")
            by_requirements[reqs] = venv
        out[model] = by_requirements[reqs]
    return out


def _example(path: Path) -> dict:
    return json.loads(path.read_text())


def test_requirements_pin_only_the_serving_runtime(downloaded):
    for model, folder in downloaded.items():
        names = [
            line.split("==")[0]
            for line in (folder / "requirements.txt").read_text().split()
            if line and not line.startswith("#")
        ]
        assert "mlflow-skinny" in names and "torch" in names
        assert not {"scipy", "omegaconf", "hydra-core", "rich", "scikit-learn", "mlflow"} & set(
            names
        )
        # Each model pins the network libraries it imports, and no others.
        network = {"tabm", "rtdl-num-embeddings"} & set(names)
        assert network == ({"tabm", "rtdl-num-embeddings"} if model == "tabm" else set())


def test_model_carries_only_the_runtime_code(downloaded):
    for folder in downloaded.values():
        code = folder / "code"
        carried = {p.relative_to(code).as_posix() for p in code.rglob("*.py")}
        assert carried == set(RUNTIME_MODULES)


def test_the_venv_has_no_training_packages(venvs, tmp_path):
    for venv in set(venvs.values()):
        for module in TRAINING_ONLY:
            proc = subprocess.run(
                [venv / "bin/python", "-c", f"import {module}"],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env=_clean_env(),
            )
            assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, module


@pytest.mark.parametrize("model", list(MODELS))
def test_clean_venv_predicts_the_training_pds(model, store, downloaded, venvs, tmp_path):
    script = tmp_path / "predict.py"
    script.write_text(PREDICT)
    example = store["examples"][model]
    proc = subprocess.run(
        [venvs[model] / "bin/python", script, downloaded[model], example],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])["pd"]
    assert got == pytest.approx(_example(example)["pd"], abs=1e-6)


def test_clean_venv_serves_the_model_over_http(store, downloaded, venvs, tmp_path):
    venv, port = venvs["tabm"], free_port()
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [
                venv / "bin/mlflow",
                "models",
                "serve",
                "-m",
                downloaded["tabm"],
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=_clean_env(venv),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # serve starts uvicorn as a child: stop the whole group
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=120)
        example = _example(store["examples"]["tabm"])
        body = {"dataframe_split": {"columns": example["columns"], "data": example["data"]}}
        r = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert r.status_code == 200, r.text + (tmp_path / "serve.log").read_text()
    pds = [row["pd"] for row in r.json()["predictions"]]
    assert pds == pytest.approx(example["pd"], abs=1e-6)
