"""Bad input through the real entry point: a clear message, a non-zero exit, nothing registered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import ROOT, faults, run_job

pytestmark = pytest.mark.slow


def _job(tmp_path, *overrides: str) -> tuple[subprocess.CompletedProcess, str]:
    db = tmp_path / "mlflow.db"
    proc = run_job(*overrides, f"tracking.uri=sqlite:///{db}", cwd=tmp_path, timeout=300)
    return proc, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "override, names",
    [
        ("optim.momentum=0.9", ["optim.momentum"]),
        ("optim.lr=fast", ["optim.lr", "fast"]),
        ("optim.lr=-0.01", ["optim.lr", "-0.01"]),
        ("optim.batch_size=0", ["optim.batch_size", "0"]),
        ("data.split.test=0.3", ["data.split.train+valid+test", "1.15"]),
        ("model=resnet", ["model", "resnet"]),
        ("model.name=resnet", ["model.name", "resnet"]),
    ],
)
def test_bad_config_stops_before_data_and_mlflow(tmp_path, override, names):
    proc, out = _job(tmp_path, override)
    assert proc.returncode != 0
    for name in names:
        assert name in out, out
    assert not (tmp_path / "mlflow.db").exists()  # MLflow never touched
    assert "data synthetic_sme" not in out  # data never loaded


def _data_config(tmp_path, csv_text: str | None) -> list[str]:
    """A user's own portfolio file and data config, passed without touching the repository."""
    (tmp_path / "configs" / "data").mkdir(parents=True)
    if csv_text is not None:
        (tmp_path / "book.csv").write_text(csv_text)
    (tmp_path / "configs" / "data" / "book.yaml").write_text(
        textwrap.dedent(f"""\
        name: book
        format: csv
        root: {tmp_path}
        path: book.csv
        target: bad
        features:
          - {{name: revenue, kind: numeric, source: operations}}
          - {{name: sector, kind: categorical, source: application}}
        """)
    )
    return [f"hydra.searchpath=[file://{tmp_path}/configs]", "data=book", "debug=tiny"]


GOOD_ROWS = "".join(f"{i * 10},{'ab'[i % 2]},{int(i % 3 == 0)}\n" for i in range(60))


@pytest.mark.parametrize(
    "csv_text, names",
    [
        (None, ["not found", "book.csv"]),
        ("revenue,sector,bad\n" + GOOD_ROWS + "12k,a,0\n", ["'revenue'", "'12k'", "data row 61"]),
        ("revenue,bad\n1,0\n2,1\n", ["missing columns", "sector"]),
        ("revenue,sector,bad\n1,a,0\n2,b,0\n", ["single class"]),
        ("revenue,sector,bad\n1,a,0\n2,b,yes\n", ["'bad'", "'yes'"]),
        ("", ["empty"]),
        (
            "revenue,sector,bad\n" + "".join(f",a,{i % 2}\n" for i in range(20)),
            ["'revenue' is missing in every row"],
        ),
    ],
)
def test_bad_data_is_named_and_nothing_is_registered(tmp_path, csv_text, names):
    proc, out = _job(tmp_path, *_data_config(tmp_path, csv_text))
    assert proc.returncode == 2, out
    for name in names:
        assert name in out, out
    assert not (tmp_path / "mlflow.db").exists()


def test_good_user_data_config_trains(tmp_path):
    proc, out = _job(
        tmp_path,
        *_data_config(tmp_path, "revenue,sector,bad\n" + GOOD_ROWS * 5),
        "registry.name=book-model",
    )
    assert proc.returncode == 0, out
    assert "registered book-model version 1" in out


def _registry(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_diverging_run_fails_and_registers_nothing(tmp_path):
    proc, out = _job(tmp_path, "debug=tiny", "optim.lr=1e12")
    assert proc.returncode == 2 and "diverged" in out and "optim.lr" in out, out
    client, runs = _registry(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert client.search_registered_models() == []


def test_interrupted_run_registers_nothing(tmp_path):
    db = tmp_path / "mlflow.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.train",
            "data.n_rows=6000",
            "trainer.max_epochs=50",
            "trainer.patience=50",
            f"tracking.uri=sqlite:///{db}",
            f"hydra.run.dir={tmp_path}/outputs/run",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **faults(step_sleep="0.2")},  # 9 steps an epoch, 0.2 s each at least
        # Ctrl-C as a shell delivers it: a child inherits an ignored SIGINT, and something run
        # earlier in this pytest worker may have left it ignored (the job then ran to the end)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        if "epoch 1/" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)  # what Ctrl-C or a scheduler's first signal does
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    client, runs = _registry(tmp_path)
    assert len(runs) == 1 and runs[0].info.status != "FINISHED"
    assert client.search_registered_models() == []
    assert not (tmp_path / "outputs" / "run" / "DONE").exists()
