"""Shared test helpers: compose the real configs, find free ports, run the real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from training.config import TrainConfig, register_configs, to_config
from training.runtime.process import free_port  # noqa: F401 - the tests' free ports

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DATA_ROOT = Path(os.environ.get("RISKBRAIN_DATA_ROOT", ROOT.parent / "shared" / "data"))

register_configs()

# The fault table (tests/fault/report.py): one file for the whole session, named here, before
# pytest-xdist starts its workers (they inherit the variable), and printed by the controller.
os.environ.setdefault("RISKBRAIN_FAULT_TABLE", f"/tmp/riskbrain_fault_table.{os.getpid()}.jsonl")

# pytest-xdist (`-n 2` in pyproject's addopts) runs two workers. Each module is one unit of work,
# run by one worker, so its module fixtures (a trained model, a server) are built once. Modules
# that share a machine-wide service form one unit, run one after another as without xdist: the
# Slurm cluster (its jobs need its nodes free) and local Ray clusters. These two, the longest
# units, start first, one on each worker. (xdist's own --dist loadgroup marks do not work with
# pytest 9: it renames `item._nodeid`, which pytest 9 no longer reads.)
SHARED = {
    "slurm": (
        "tests/integration/test_multinode.py",
        "tests/integration/test_multirun.py",
        "tests/integration/test_slurm_cluster.py",
        "tests/integration/test_slurm_jobs.py",
    ),
    "ray": (
        "tests/fault/test_ray_restart.py",
        "tests/integration/test_distributed.py",
        "tests/integration/test_sweep.py",
    ),
}


# The longest other modules start next (each has a job of minutes on one core: the default job,
# fresh virtualenvs, four trained models), so that many short modules are left for the end and
# both workers finish together.
LONG = (
    "tests/integration/test_quality.py",
    "tests/integration/test_serving_env.py",
    "tests/integration/test_promote.py",
)


def unit_of_work(nodeid: str) -> str:
    """The group a test runs in: its module, or the shared service its module uses."""
    path = nodeid.split("::")[0]
    return next((group for group, paths in SHARED.items() if path in paths), path)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    """The shared-service units first, then the long modules (a stable sort: within a unit, the
    usual order)."""

    def rank(item) -> tuple[int, int]:
        unit = unit_of_work(item.nodeid)
        return (0, 0) if unit in SHARED else (1, LONG.index(unit)) if unit in LONG else (2, 0)

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByUnitOfWork(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    config.option.loadscopereorder = False  # keep the collection's order: shared, long, the rest
    return ByUnitOfWork(config, log)


def pytest_configure(config) -> None:
    """Each worker's share of the cores, for everything it starts (torch and LightGBM threads).

    Two workers on 2 cores, each running jobs with 2 spinning OpenMP threads, slow each other down
    far beyond sharing: the default job cut to 5 epochs, beside the unit tests, took 412 s with 2
    threads each (3-5x slower epochs, the LightGBM benchmark over 5 min) and 121 s with 1.
    Set here, in the controller, before the workers start; they and their jobs inherit it."""
    if hasattr(config, "workerinput") or "OMP_NUM_THREADS" in os.environ:
        return
    workers = getattr(config.option, "numprocesses", None)
    workers = workers if isinstance(workers, int) and workers > 0 else 1  # -n 0, no xdist
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


def pytest_sessionstart(session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist)
        Path(os.environ["RISKBRAIN_FAULT_TABLE"]).unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault tests' rows as the table docs/reliability.md quotes."""
    from tests.fault import report

    rows = report.rows()
    if not rows:
        return
    tr = terminalreporter
    tr.section("fault table (docs/reliability.md)")
    tr.write_line("| fault | what happened | time to detect | work lost |")
    tr.write_line("|---|---|---|---|")
    for r in rows:
        detect = "-" if r["detect_s"] is None else f"{r['detect_s']} s"
        tr.write_line(f"| {r['fault']} | {r['happened']} | {detect} | {r['work_lost']} |")


def compose_config(*overrides: str) -> TrainConfig:
    """The job's config, composed exactly as ``python -m jobs.train`` would."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return to_config(compose(config_name="train", overrides=list(overrides)))


def run_job(
    *overrides: str,
    cwd: Path,
    env: dict | None = None,
    timeout: float = 600,
    module: str = "jobs.train",
) -> subprocess.CompletedProcess:
    """Run an entry point in a fresh process, outputs under ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", module, *overrides, f"hydra.run.dir={cwd}/outputs/run"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def faults(**variables: str) -> dict[str, str]:
    """The environment of a job with test-only fault injection (``tests/fault/sitecustomize.py``,
    loaded by Python at start-up from PYTHONPATH), switched on by ``RISKBRAIN_*`` variables."""
    path = f"{ROOT / 'tests' / 'fault'}:{os.environ.get('PYTHONPATH', '')}"
    return {"PYTHONPATH": path, **{f"RISKBRAIN_{k.upper()}": v for k, v in variables.items()}}


def needs_data(relative: str) -> Path:
    path = DATA_ROOT / relative
    if not path.is_file():
        pytest.skip(f"real data set not found at {path} (set RISKBRAIN_DATA_ROOT)")
    return path
