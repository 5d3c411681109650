"""The code a registered model carries imports only what its requirements.txt installs.

Every runtime module (training.serving.package.RUNTIME_MODULES) is parsed and each import, at any
depth (in functions too), must be the standard library, one of the serving packages below, or
another runtime module. A fresh process on the staged copy alone then scores a bundle while the
training-only packages are blocked.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from training.data.preprocess import Preprocessor, _quantile_normal, feature_bins
from training.data.schema import FeatureSpec, Kind, Schema
from training.models.build import build_model, predict_pd
from training.models.config import MLPConfig, ModelConfig, TabMConfig
from training.serving.bundle import Scorer, make_decision, save_bundle
from training.serving.config import ExplainConfig, ScoreScale
from training.serving.package import (
    RUNTIME_DISTRIBUTIONS,
    RUNTIME_MODULES,
    SOURCE_ROOT,
    pip_requirements,
    pyfunc_model,
    stage_runtime,
)

SERVING_PACKAGES = {
    "torch",
    "numpy",
    "pandas",
    "safetensors",
    "mlflow",
    "tabm",
    "rtdl_num_embeddings",
    "duckdb",
}
# Installed for training only; the staged runtime must score with all of them unimportable.
TRAINING_ONLY = (
    "omegaconf",
    "hydra",
    "rich",
    "scipy",
    "sklearn",
    "ray",
    "mpi4py",
    "matplotlib",
    "lightgbm",
    "optuna",
    "pyarrow",
)
RUNTIME_NAMES = {
    rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for rel in RUNTIME_MODULES
}


def _is_module(name: str) -> bool:
    path = SOURCE_ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(tree: ast.AST, package: str) -> list[tuple[str, bool]]:
    """(module name, whether it is certainly a module) for each import; relative ones resolved.

    ``from a.b import c`` gives ("a.b", True) and ("a.b.c", False): c may be a submodule.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, True) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            found.append((module, True))
            found += [(f"{module}.{a.name}", False) for a in node.names if a.name != "*"]
    return found


def foreign_imports(source: str, package: str = "training.serving") -> list[str]:
    """The imports in ``source`` (a module of ``package``) that the serving runtime cannot satisfy."""
    bad = []
    for name, certain in _imports(ast.parse(source), package):
        top = name.split(".")[0]
        if top == "training":
            if (certain or _is_module(name)) and name not in RUNTIME_NAMES:
                bad.append(name)
        elif certain and top not in sys.stdlib_module_names and top not in SERVING_PACKAGES:
            bad.append(name)
    return sorted(set(bad))


def test_runtime_modules_exist_and_cover_models_and_serving():
    for rel in RUNTIME_MODULES:
        assert (SOURCE_ROOT / rel).is_file(), rel
    # A new file in these packages would be left out of the model, so every one must be listed.
    for folder in ("training/models", "training/serving"):
        for path in (SOURCE_ROOT / folder).glob("*.py"):
            assert path.relative_to(SOURCE_ROOT).as_posix() in RUNTIME_MODULES, path
    # each listed module's packages are listed too, up to `training`
    for name in RUNTIME_NAMES:
        parts = name.split(".")
        for i in range(1, len(parts)):
            assert ".".join(parts[:i]) in RUNTIME_NAMES, name


@pytest.mark.parametrize("rel", RUNTIME_MODULES)
def test_runtime_module_imports_only_the_serving_runtime(rel):
    path = SOURCE_ROOT / rel
    name = rel.removesuffix(".py").replace("/", ".")
    package = (
        name.removesuffix(".__init__") if rel.endswith("__init__.py") else name.rsplit(".", 1)[0]
    )
    assert foreign_imports(path.read_text(), package) == [], rel


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        ("import omegaconf", "training.serving", ["omegaconf"]),
        ("from scipy.special import ndtri", "training.data", ["scipy.special"]),
        ("def f():\n    import rich.console\n", "training.serving", ["rich.console"]),
        ("from training.config import TrainConfig", "training.serving", ["training.config"]),
        ("from training.core import loop", "training.serving", ["training.core", "training.core.loop"]),
        ("from ..tracking import Tracker", "training.serving", ["training.tracking"]),
        ("from . import config", "training", ["training.config"]),
        ("import training.core.pipeline", "training.serving", ["training.core.pipeline"]),
        ("from training.nowhere import x", "training.serving", ["training.nowhere"]),
    ],
)
def test_the_check_catches_foreign_imports(source, package, expected):
    assert foreign_imports(source, package) == expected


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("import json, os.path\nfrom __future__ import annotations", "training.serving"),
        ("import torch.nn.functional as F\nfrom safetensors.torch import load_file", "training"),
        ("from training.models import build_model, predict_pd", "training.serving"),
        ("from training.data import schema", "training.serving"),
        ("from .config import ModelConfig", "training.models"),
        ("from mlflow.pyfunc import PythonModel", "training.serving"),
    ],
)
def test_the_check_lets_runtime_imports_pass(source, package):
    assert foreign_imports(source, package) == []


def test_requirements_pin_each_serving_package_without_local_labels():
    assert set(RUNTIME_DISTRIBUTIONS) == SERVING_PACKAGES
    reqs = pip_requirements()
    assert [r.split("==")[0] for r in reqs] == list(RUNTIME_DISTRIBUTIONS.values())
    for req in reqs:
        assert "+" not in req and req.split("==")[1][0].isdigit(), req
    assert "mlflow-skinny==" in " ".join(reqs) and "scipy" not in " ".join(reqs)


@pytest.mark.parametrize(
    "model, network",
    [
        (MLPConfig(), []),
        (MLPConfig(num_embeddings="periodic"), ["rtdl-num-embeddings"]),
        (TabMConfig(), ["tabm", "rtdl-num-embeddings"]),
    ],
)
def test_a_model_pins_only_the_network_libraries_it_imports(model, network):
    names = [r.split("==")[0] for r in pip_requirements([model])]
    base = ["torch", "numpy", "pandas", "safetensors", "mlflow-skinny"]
    assert sorted(names) == sorted(base + network)


def _schema() -> Schema:
    return Schema(
        target="default",
        features=[
            FeatureSpec(name="revenue"),
            FeatureSpec(name="has_lawsuit", kind=Kind.binary),
            FeatureSpec(name="industry", kind=Kind.categorical),
        ],
    )


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    revenue = rng.lognormal(10, 2, n)
    revenue[::7] = np.nan
    return pd.DataFrame(
        {
            "revenue": revenue,
            "has_lawsuit": rng.integers(0, 2, n).astype(float),
            "industry": rng.choice(["retail", "tech", "farming"], n),
        }
    )


def test_quantile_normal_matches_scipy_ndtri():
    from scipy.special import ndtri

    rng = np.random.default_rng(1)
    q = np.sort(rng.lognormal(0, 3, 1000))
    q[100:300] = q[100]  # a run of equal quantiles
    levels = np.linspace(0, 1, len(q))
    x = np.concatenate([rng.lognormal(0, 3, 50_000), q, [q[0] - 1, q[-1] + 1, np.nan]])
    step = 1e-9 * np.abs(x) + 1e-12  # up from just below, down from just above (ROUNDING)
    u = 0.5 * (np.interp(x - step, q, levels) - np.interp(-(x + step), -q[::-1], -levels[::-1]))
    expected = np.where(np.isnan(x), 0.0, ndtri(np.clip(u, 1e-7, 1 - 1e-7)))
    got = _quantile_normal(np.stack([x, x[::-1]], axis=1), [q, q], levels)
    assert got.dtype == np.float64 and got.shape == (len(x), 2)
    np.testing.assert_allclose(got[:, 0], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[:, 1], expected[::-1], rtol=0, atol=1e-12)


def test_quantile_normal_maps_values_equal_but_for_rounding_alike():
    """A mean or slope summed in another order (a served request's history in numpy, the book's
    in DuckDB) differs in its last bits; on a run of tied quantiles, which the fitted quantiles
    themselves may hold in two roundings, it must map to the same place. Before: 0.26 points of
    PD apart on a served wide book. Elsewhere the map is the plain interpolation."""
    from scipy.special import ndtri

    v = 10 / 3
    ulp = np.nextafter(v, 4.0)
    q = np.sort(np.array([0.0, 1.0, v, v, ulp, v, ulp, 5.0, 6.0]))  # a run, in two roundings
    levels = np.linspace(0, 1, len(q))
    x = np.array([[v], [ulp], [np.nextafter(v, 0.0)], [v * (1 + 1e-15)], [2.0], [5.5]])
    got = _quantile_normal(x, [q], levels)[:, 0]
    assert np.ptp(got[:4]) < 1e-6  # one place for every rounding of 10/3 ...
    np.testing.assert_allclose(got[0], ndtri(0.5 * (levels[2] + levels[6])), atol=1e-6)  # its middle
    plain = ndtri(np.interp([2.0, 5.5], q, levels))
    np.testing.assert_allclose(got[4:], plain, atol=1e-8)  # ... and the rest as before


def test_staged_package_holds_only_the_runtime_modules(tmp_path):
    package = stage_runtime(tmp_path)
    assert package == tmp_path / "training"
    staged = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert staged == set(RUNTIME_MODULES)


def _bundle(path: Path, cfg: ModelConfig, schema: Schema, train: pd.DataFrame) -> Path:
    pre = Preprocessor.fit(train, schema)
    torch.manual_seed(0)
    model = build_model(cfg, n_num=pre.n_num_features, cat_cardinalities=pre.cat_cardinalities)
    x_num, x_cat = (torch.from_numpy(x) for x in pre.transform(train))
    p = predict_pd(model, x_num, x_cat)
    decision = make_decision(ScoreScale(), ExplainConfig(), x_num, x_cat, p, feature_bins(train, schema))
    return save_bundle(path, model=model, members=[(cfg, None)], pre=pre, schema=schema,
                       decision=decision)  # fmt: skip


def test_pyfunc_model_gives_log_model_its_arguments(tmp_path):
    frame = _frame(5)
    _bundle(tmp_path / "bundle", MLPConfig(d_block=8, n_blocks=1), _schema(), _frame(50))
    kwargs = pyfunc_model(tmp_path / "bundle", _schema(), frame, tmp_path / "work")
    assert set(kwargs) == {
        "python_model",
        "artifacts",
        "code_paths",
        "signature",
        "input_example",
        "pip_requirements",
    }
    assert Path(kwargs["python_model"]).name == "pyfunc_model.py"
    assert kwargs["artifacts"] == {"bundle": str(tmp_path / "bundle")}
    assert kwargs["code_paths"] == [str(tmp_path / "work" / "code" / "training")]
    assert (tmp_path / "work" / "code" / "training" / "serving" / "pyfunc_model.py").is_file()
    assert [c.name for c in kwargs["signature"].inputs.inputs] == _schema().names()
    assert kwargs["pip_requirements"] == pip_requirements([MLPConfig()])  # read from the bundle


def test_staged_runtime_scores_a_bundle_with_training_packages_blocked(tmp_path):
    schema, train = _schema(), _frame(200)
    bundle = _bundle(tmp_path / "bundle", MLPConfig(d_block=8, n_blocks=1), schema, train)
    rows = _frame(20, seed=2)
    rows.loc[3, "industry"] = "never seen"
    rows.to_json(tmp_path / "rows.json", orient="split")
    expected = Scorer(bundle).predict(rows)

    stage_runtime(tmp_path / "code")
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys
        # An MLP without embeddings needs neither network library either.
        BLOCKED = {TRAINING_ONLY + ("tabm", "rtdl_num_embeddings")!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not in the serving runtime")

        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(tmp_path / "code")!r})
        import pandas as pd
        import training
        from training.serving.bundle import Scorer

        frame = pd.read_json({str(tmp_path / "rows.json")!r}, orient="split")
        print(json.dumps({{"file": training.__file__,
                          "pd": Scorer({str(bundle)!r}).predict(frame).tolist()}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["file"] == str(tmp_path / "code" / "training" / "__init__.py")
    np.testing.assert_allclose(out["pd"], expected, rtol=0, atol=1e-12)
