"""The code keeps the shape a newcomer reads in one sitting: wings that import only downwards,
short functions, one MLflow wing, one place that writes the environment."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "training"
JOBS = ROOT / "jobs"
# Straight-line data generation: one feature a line, clearer long than split.
LONG_ALLOWED = {("data/synthetic.py", "_draw_block"), ("data/synthetic.py", "_true_pd")}

# The ground floor: declarations and pure functions every wing may use. They import only each
# other (and the standard library, numpy, scikit-learn): no torch, no MLflow, no wing.
GROUND = {
    "__init__.py",
    "errors.py",
    "constants.py",
    "metrics.py",
    "config.py",
    "report.py",
    "data/schema.py",
    "tracking/secrets.py",
}
# The wings of training/, lowest first: a module imports its own wing, the ground floor and the
# wings below it, never one above. jobs/ stands above them all.
WINGS = (
    "runtime",  # the process a rank runs in: set-up, distributed context, preemption, watchdog
    "data",  # reading, splitting, preprocessing, tensors
    "models",  # networks; know nothing of training
    "serving",  # the bundle a registered model carries, scores and reasons
    "tracking",  # the one MLflow wing: tracker, journal, server, registry
    "scoring",  # portfolio books, drift, the scoring driver
    "governance",  # benchmark, plots, fairness, checks, card, promotion gate
    "core",  # the job: pipeline, loop, state, checkpoints, parallelism
    "launch",  # local, MPI and Ray launchers, sweeps
    "cluster",  # Slurm submission, the doctor
)


def _rel(path: Path) -> str:
    return path.relative_to(TRAINING).as_posix()


def _sources() -> list[Path]:
    return sorted(TRAINING.rglob("*.py")) + sorted(JOBS.rglob("*.py"))


def floor(path: Path) -> int:
    """-1 for the ground floor, a wing's index in WINGS, len(WINGS) for jobs/."""
    if path.is_relative_to(JOBS):
        return len(WINGS)
    rel = _rel(path)
    if rel in GROUND or rel.endswith("/config.py"):
        return -1
    return WINGS.index(rel.split("/")[0])


def _module_file(name: str) -> Path | None:
    for path in (ROOT / f"{name.replace('.', '/')}.py", ROOT / name.replace(".", "/") / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports(path: Path) -> list[tuple[int, str, Path]]:
    """Every ``training``/``jobs`` module a file imports, at any depth: (line, name, file)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in ("training", "jobs") and (file := _module_file(name)):
                found.append((node.lineno, name, file))
    return found


def test_every_module_is_on_a_floor():
    for path in sorted(TRAINING.rglob("*.py")):
        rel = _rel(path)
        assert rel in GROUND or rel.endswith("/config.py") or rel.split("/")[0] in WINGS, (
            f"training/{rel} is in no wing: add its folder to WINGS in {__file__}"
        )


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_wings_import_only_downwards(path):
    here = floor(path)
    upward = []
    for line, name, file in imports(path):
        if file.is_relative_to(JOBS):
            upward.append(f"line {line}: {name} (an entry point imports another)")
        elif floor(file) > here:
            upward.append(f"line {line}: {name} (wing {WINGS[floor(file)]})")
    assert upward == [], f"{path.relative_to(ROOT)} imports upwards: {upward}"


def test_the_layout_check_sees_imports_at_any_depth(tmp_path):
    assert floor(TRAINING / "runtime" / "dist.py") < floor(TRAINING / "core" / "loop.py")
    assert floor(TRAINING / "data" / "config.py") == floor(TRAINING / "errors.py") == -1
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.core import loop\n")
    assert [(line, name) for line, name, _ in imports(module)] == [
        (2, "training.core"),
        (2, "training.core.loop"),
    ]


def test_importing_the_config_pulls_in_no_torch_or_mlflow():
    code = "import sys, training.config; print(sorted({'torch', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _functions() -> list[tuple[str, str, int]]:
    out = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                rel = path.relative_to(TRAINING if path.is_relative_to(TRAINING) else ROOT)
                out.append((rel.as_posix(), node.name, node.end_lineno - node.lineno + 1))
    return out


def _length(module: str, name: str) -> int:
    return next(n for rel, fn, n in _functions() if rel == module and fn == name)


def test_the_job_and_the_loop_read_in_one_sitting():
    assert _length("core/pipeline.py", "run") <= 40
    assert _length("core/loop.py", "fit") <= 50


def test_no_function_over_60_lines():
    long = [(rel, fn, n) for rel, fn, n in _functions() if n > 60]
    assert [(rel, fn) for rel, fn, _ in long if (rel, fn) not in LONG_ALLOWED] == [], long


def _mlflow_uses(tree: ast.AST) -> list[str]:
    """``import mlflow...``, ``from mlflow... import x`` and ``mlflow.<attr>`` in a module."""
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            uses += [a.name for a in node.names if a.name.split(".")[0] == "mlflow"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlflow":
            uses.append(f"from {node.module}")
        elif isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "mlflow":
            uses.append(f"mlflow.{node.attr}")
    return uses


def test_the_mlflow_check_sees_every_kind_of_use():
    code = "import mlflow\nfrom mlflow import MlflowClient\nmlflow.start_run()\n"
    assert _mlflow_uses(ast.parse(code)) == ["mlflow", "from mlflow", "mlflow.start_run"]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_only_the_tracking_wing_and_the_serving_runtime_call_mlflow(path):
    if path.is_relative_to(TRAINING) and _rel(path).split("/")[0] in ("tracking", "serving"):
        return
    uses = _mlflow_uses(ast.parse(path.read_text()))
    assert uses == [], f"{path.relative_to(ROOT)} uses MLflow ({uses}); go through training.tracking"


# Process set-up owns the environment: it sets what a job's libraries read, once; `scoped_env`
# there sets a variable for one library call and restores it.
ENV_OWNER = "runtime/process.py"


def _environ_writes(tree: ast.AST) -> list[int]:
    """Lines that write ``os.environ``: item assignment or deletion, and its mutating methods."""
    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for t in targets:
            if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "os.environ":
                lines.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and ast.unparse(node.func.value) == "os.environ"
            and node.func.attr in ("update", "pop", "setdefault", "clear", "popitem")
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_environ_check_sees_every_kind_of_write():
    code = (
        "os.environ['A'] = '1'\nos.environ.update(B='2')\nos.environ.pop('C', None)\n"
        "del os.environ['D']\nos.environ.setdefault('E', '3')\nx = os.environ.get('F')\n"
    )
    assert _environ_writes(ast.parse(code)) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_only_process_set_up_writes_the_environment(path):
    if path.is_relative_to(TRAINING) and _rel(path) == ENV_OWNER:
        return
    lines = _environ_writes(ast.parse(path.read_text()))
    assert lines == [], (
        f"{path.relative_to(ROOT)} writes os.environ at lines {lines}: use "
        f"training.{ENV_OWNER[:-3].replace('/', '.')} (set_env / scoped_env)"
    )
