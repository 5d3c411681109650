"""pyproject.toml and environment.yml declare the same packages (pip users and conda users agree)."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import ROOT

CONDA_TO_PYPI = {
    "pytorch": "torch",
    "ray-default": "ray",
    "ray-train": "ray",
    "ray-tune": "ray",
    "python-duckdb": "duckdb",
}
CONDA_ONLY = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_pyproject_and_environment_yml_name_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {
        _name(d) for d in project["dependencies"] + project["optional-dependencies"]["test"]
    }
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_names = set()
    for dep in env["dependencies"]:
        specs = dep["pip"] if isinstance(dep, dict) else [dep]
        conda_names |= {CONDA_TO_PYPI.get(_name(s), _name(s)) for s in specs}
    assert conda_names - CONDA_ONLY == pip_names


def test_torch_is_pinned_in_both():
    assert '"torch==2.13.0"' in (ROOT / "pyproject.toml").read_text()
    assert "pytorch=2.13.0" in (ROOT / "environment.yml").read_text()
