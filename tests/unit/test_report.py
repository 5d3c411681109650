"""The typed report: ``evaluation.json`` written and read back unchanged, the producers' dicts
fit its parts, and no reader names a field the report lacks (a static check of every module in
``training/`` and ``jobs/``, shown to catch a misspelt field)."""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import json
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.test_card import CONFIG, sample_report
from training import metrics
from training import report as report_module
from training.report import Part, Report, ReportError, TrialMember

ROOT = Path(__file__).resolve().parents[2]
PARTS = {
    c.__name__: c
    for c in vars(report_module).values()
    if isinstance(c, type) and issubclass(c, Part) and c is not Part
}


# ---- the static check: every field a reader names exists ------------------------------------


@dataclasses.dataclass(frozen=True)
class Holder:
    """A class of ours (not a report part) with a field that holds one: ``Evaluation.report``."""

    name: str


# The builtin containers an annotation may name besides the report's parts.
BUILTINS = {"Any": Any} | {n: getattr(builtins, n) for n in ("dict", "list", "tuple", "str",
            "int", "float", "bool")}  # fmt: skip
HOLDERS: dict[str, dict[str, Any]] = {}  # holder class -> {field: hint}, filled by index()


def imported_parts(tree: ast.Module) -> dict[str, Any]:
    """The report's parts a module may name: those it imports from ``training.report`` (under
    their ``as`` names), or all of them in ``training/report.py`` itself."""
    names = dict(BUILTINS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "training.report":
            names |= {a.asname or a.name: PARTS[a.name] for a in node.names if a.name in PARTS}
        if isinstance(node, ast.ClassDef) and node.name == "Part":  # training/report.py
            names |= PARTS
    return names


def _hint(annotation: ast.expr | None, names: dict[str, Any]) -> Any:
    """An annotation as a typing hint when it names report parts (``Report | None``,
    ``dict[str, MonotoneCheck]``, ``"Metrics"``) or a holder of one, else None. ``names``: what
    the module imported (a ``Split`` of its own is not the report's)."""
    if annotation is None:
        return None
    text = annotation.value if isinstance(annotation, ast.Constant) else ast.unparse(annotation)
    bare = str(text).removesuffix(" | None")
    if bare in HOLDERS:
        return Holder(bare)
    try:
        hint = eval(str(text), {"__builtins__": {}}, names)  # noqa: S307 - our annotations
    except Exception:  # a name that is no part: Path, Tracker, ...
        return None
    return hint if _mentions_parts(hint) else None


def _mentions_parts(hint: Any) -> bool:
    if isinstance(hint, Holder) or (isinstance(hint, type) and issubclass(hint, Part)):
        return True
    return any(_mentions_parts(a) for a in typing.get_args(hint))


def _parts_of(hint: Any) -> list[type]:
    """The report classes a value of ``hint`` may be (several for ``Member | TrialMember``)."""
    if isinstance(hint, type) and issubclass(hint, Part):
        return [hint]
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return [p for a in typing.get_args(hint) for p in _parts_of(a)]
    return []


def _element(hint: Any) -> Any:
    """What indexing or iterating a list or dict of ``hint`` gives (its values), else None."""
    for h in [hint, *typing.get_args(hint)]:
        origin, args = typing.get_origin(h), typing.get_args(h)
        if origin is list:
            return args[0]
        if origin is dict:
            return args[1]
    return None


def _field(part: type, name: str) -> Any:
    """The hint of ``part``'s field ``name``; a method's return hint; KeyError if neither."""
    if name in {f.name for f in dataclasses.fields(part)}:
        return typing.get_type_hints(part)[name]
    if callable(member := getattr(part, name)):  # AttributeError: no such field or method
        return typing.get_type_hints(member).get("return")
    return None


class Scope:
    """The names of one function (nested functions and comprehensions included) whose values
    are report parts, from annotations, assignments, loops and calls of annotated functions."""

    def __init__(self, node: ast.AST, module: dict[str, Any], returns: dict, owner) -> None:
        self.node, self.module, self.returns, self.names = node, module, returns, {}
        if owner is not None:
            self.names["self"] = owner
        for _ in range(3):  # an alias of an alias: bind until nothing changes
            for sub in ast.walk(node):
                self._bind(sub)

    def _set(self, target: ast.expr, hint: Any) -> None:
        if isinstance(target, ast.Name) and hint is not None and _mentions_parts(hint):
            self.names[target.id] = hint

    def _bind(self, sub: ast.AST) -> None:
        if isinstance(sub, ast.arg):
            self._set(ast.Name(sub.arg), _hint(sub.annotation, self.module))
        elif isinstance(sub, ast.Assign) and len(sub.targets) == 1:
            target, value = sub.targets[0], sub.value
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):  # a, b = x, y
                for t, v in zip(target.elts, value.elts, strict=False):
                    self._set(t, self.type_of(v))
            self._set(target, self.type_of(value))
        elif isinstance(sub, ast.AnnAssign):
            self._set(sub.target, _hint(sub.annotation, self.module) or self.type_of(sub.value))
        elif isinstance(sub, ast.NamedExpr):
            self._set(sub.target, self.type_of(sub.value))
        elif isinstance(sub, ast.For | ast.comprehension):
            self._bind_loop(sub.target, sub.iter)

    def _bind_loop(self, target: ast.expr, it: ast.expr) -> None:
        """``for k, v in x.items()``, ``for v in x.values()``, ``for i, v in enumerate(x)``,
        ``for v in x``: ``v`` is an element of ``x``."""
        pair = isinstance(target, ast.Tuple) and len(target.elts) == 2
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute):
            element = _element(self.type_of(it.func.value))
            if it.func.attr == "items" and pair:
                self._set(target.elts[1], element)
            elif it.func.attr == "values":
                self._set(target, element)
        elif isinstance(it, ast.Call) and getattr(it.func, "id", "") == "enumerate" and pair:
            self._set(target.elts[1], _element(self.type_of(it.args[0])))
        else:
            self._set(target, _element(self.type_of(it)))

    def type_of(self, e: ast.expr | None) -> Any:
        """The hint of an expression when it is (or holds) report parts, else None."""
        if isinstance(e, ast.Name):
            return self.names.get(e.id)
        if isinstance(e, ast.Attribute):
            if isinstance(holder := self.type_of(e.value), Holder):
                return HOLDERS[holder.name].get(e.attr)
            for part in _parts_of(self.type_of(e.value)):
                try:
                    return _field(part, e.attr)
                except AttributeError:
                    continue
            return None
        if isinstance(e, ast.Subscript):
            return _element(self.type_of(e.value))
        if isinstance(e, ast.Call):
            return self._call_type(e)
        if isinstance(e, ast.BoolOp):  # a or b: a's; a and b: b's
            return self.type_of(e.values[0 if isinstance(e.op, ast.Or) else -1])
        if isinstance(e, ast.IfExp):
            return self.type_of(e.body) or self.type_of(e.orelse)
        if isinstance(e, ast.NamedExpr):
            return self.type_of(e.value)
        return None

    def _call_type(self, call: ast.Call) -> Any:
        func = call.func
        if isinstance(func, ast.Name):  # a part's constructor, or an annotated function
            return self.module.get(func.id) or self.returns.get(func.id)
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id in self.module:
                return self.module[func.value.id]  # Metrics.from_dict(...)
            if func.attr == "get":
                return _element(self.type_of(func.value))
            if func.attr == "replace":  # dataclasses.replace(part, ...)
                return self.type_of(call.args[0]) if call.args else None
            return self.type_of(func)  # a part's method: its return hint
        return None


def _problem(scope: Scope, node: ast.AST) -> str | None:
    """What is wrong with one use of a report part: a field it lacks, a key lookup, or a
    keyword of its constructor or of ``dataclasses.replace`` that is no field."""
    if isinstance(node, ast.Attribute):
        parts = _parts_of(scope.type_of(node.value))
        if parts and not any(hasattr(p, node.attr) or node.attr in _names(p) for p in parts):
            return f"{ast.unparse(node)}: {[p.__name__ for p in parts]} have no field {node.attr!r}"
    if isinstance(node, ast.Subscript) and _parts_of(scope.type_of(node.value)):
        return f"{ast.unparse(node)}: a report part read as a dict; name its field"
    if isinstance(node, ast.Call):
        parts = _constructed(scope, node)
        for kw in node.keywords:
            if parts and kw.arg is not None and not any(kw.arg in _names(p) for p in parts):
                return f"{ast.unparse(node)[:80]}: {parts[0].__name__} has no field {kw.arg!r}"
        if getattr(node.func, "id", "") == "getattr" and len(node.args) >= 2:
            name, parts = node.args[1], _parts_of(scope.type_of(node.args[0]))
            if (
                parts
                and isinstance(name, ast.Constant)
                and not any(hasattr(p, name.value) or name.value in _names(p) for p in parts)
            ):
                return f"{ast.unparse(node)}: {parts[0].__name__} has no field {name.value!r}"
    return None


def _names(part: type) -> set[str]:
    return {f.name for f in dataclasses.fields(part)}


def _constructed(scope: Scope, call: ast.Call) -> list[type]:
    """The part a call builds: ``Metrics(...)`` or ``dataclasses.replace(report, ...)``."""
    func = call.func
    if isinstance(func, ast.Name) and _parts_of(scope.module.get(func.id)):
        return [scope.module[func.id]]
    if getattr(func, "attr", getattr(func, "id", "")) == "replace" and call.args:
        return _parts_of(scope.type_of(call.args[0]))
    return []


def _scopes(tree: ast.Module, returns: dict[str, Any]) -> list[Scope]:
    """One scope per top-level function and per method (``self`` typed in the report's parts)."""
    out, module = [], imported_parts(tree)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append(Scope(node, module, returns, None))
        elif isinstance(node, ast.ClassDef):
            owner = _parts_of(module.get(node.name))
            methods = [m for m in node.body if isinstance(m, ast.FunctionDef)]
            out += [Scope(m, module, returns, owner[0] if owner else None) for m in methods]
    return out


def index(trees: list[ast.Module]) -> dict[str, Any]:
    """Fill ``HOLDERS`` (classes with a field annotated as a report part); return function
    name -> return hint, for functions annotated to return parts or holders (a name two modules
    annotate differently is left out)."""
    HOLDERS.clear()
    for tree in trees:
        module = imported_parts(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name not in module:
                fields = {
                    f.target.id: _hint(f.annotation, module)
                    for f in node.body
                    if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)
                }
                if any(h is not None for h in fields.values()):
                    HOLDERS[node.name] = fields
    found: dict[str, set] = {}
    for tree in trees:
        module = imported_parts(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and (hint := _hint(node.returns, module)):
                found.setdefault(node.name, set()).add(hint)
    return {name: hints.pop() for name, hints in found.items() if len(hints) == 1}


def field_reads(tree: ast.Module, returns: dict[str, Any]) -> tuple[int, list[str]]:
    """(how many reads of report parts the check resolved, the problems found: line and why)."""
    seen, problems = 0, []
    for scope in _scopes(tree, returns):
        for node in ast.walk(scope.node):
            if isinstance(node, ast.Attribute) and _parts_of(scope.type_of(node.value)):
                seen += 1
            if (problem := _problem(scope, node)) is not None:
                problems.append(f"line {node.lineno}: {problem}")
    return seen, problems


def _modules() -> dict[str, ast.Module]:
    paths = sorted((ROOT / "training").rglob("*.py")) + sorted((ROOT / "jobs").rglob("*.py"))
    return {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text()) for p in paths}


def test_no_reader_names_a_field_the_report_lacks():
    modules = _modules()
    returns = index(list(modules.values()))
    problems = {}
    for name, tree in modules.items():
        if found := field_reads(tree, returns)[1]:
            problems[name] = found
    assert problems == {}, problems


def test_the_check_sees_every_reader():
    """Guards the check itself: it must resolve the readers' reads, not silently see nothing."""
    modules = _modules()
    returns = index(list(modules.values()))
    seen = {name: field_reads(modules[name], returns)[0] for name in READERS}
    assert all(seen[name] >= least for name, least in READERS.items()), seen


# Each reader and the fewest reads of report fields the check must resolve in it.
READERS = {
    "training/governance/card.py": 100,
    "training/core/pipeline.py": 15,
    "training/launch/sweep.py": 8,
    "training/report.py": 20,
    "jobs/train.py": 2,
}

MISSPELT = """
from training.report import Report, Metrics

def card(report: Report) -> str:
    return f"{report.test.acu}"

def alias(report: Report) -> float:
    gbdt = report.benchmark
    return gbdt.test.kss

def loop(report: Report) -> int:
    return sum(m.violation for m in report.monotonicity.values())

def nested(report: Report) -> list:
    return [g.aproval_rate for a in report.fairness.attributes.values() for g in a.groups]

def key(report: Report) -> float:
    return report.test["auc"]

def built() -> Metrics:
    return Metrics(auc=1.0, gini=1.0, ks=1.0, brier=0.0, log_loss=0.0, ece=0.0, n=1,
                   default_rate=0.5, mean_pd=0.5, recall=1.0)

def published(report: Report) -> Report:
    import dataclasses
    return dataclasses.replace(report, run_kye="k")

def called() -> float:
    return finished().valid.ksx

def finished() -> Report:
    return Report()

def walrus(report: Report) -> bool:
    return (ex := report.explain) is not None and ex.pased

def fine(report: Report) -> float:
    t = report.training
    return report.test.auc + t.best_valid_auc + report.monotone_violations()
"""


def test_the_check_fails_on_a_misspelt_field(tmp_path):
    module = tmp_path / "reader.py"
    module.write_text(MISSPELT)
    tree = ast.parse(module.read_text())
    _, problems = field_reads(tree, index([tree]))
    said = "\n".join(problems)
    for wrong in (
        "'acu'",
        "'kss'",
        "'violation'",
        "'aproval_rate'",
        "read as a dict",
        "'recall'",
        "'run_kye'",
        "'ksx'",
        "'pased'",
    ):
        assert wrong in said, (wrong, problems)
    assert len(problems) == 9, problems  # and nothing in fine()


def test_the_report_is_ground_floor_it_pulls_in_no_torch_numpy_or_mlflow():
    code = "import sys, training.report; print(sorted({'torch', 'numpy', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- the file: written and read back unchanged -----------------------------------------------


def pipeline_report() -> dict:
    """A full report in the order and shape the pipeline writes it: every optional part, a time
    split, a sweep's top-k ensemble, a version pending in the tracking store."""
    m = {
        "auc": 0.8,
        "gini": 0.6,
        "ks": 0.5,
        "brier": 0.1,
        "log_loss": 0.3,
        "ece": 0.01,
        "n": 300,
        "default_rate": 0.2,
        "mean_pd": 0.21,
    }
    return {
        "test": m,
        "test_ci": {
            "auc": [0.7, 0.9],
            "ks": [0.4, 0.6],
            "brier": [0.09, 0.11],
            "ece": [0.0, 0.02],
            "level": 0.95,
            "resamples": 200,
            "rows": 300,
        },
        "valid": m | {"auc": 0.79},
        "psi_train_test": 0.01,
        "bayes_auc_test": 0.83,
        "monotonicity": {"x": {"direction": 1, "rows": 300, "violations": 0, "share": 0.0}},
        "explain": {
            "method": "ig",
            "reference_rows": 16,
            "reasons": 4,
            "steps": 16,
            "tolerance": 0.02,
            "rows_checked": 100,
            "max_abs_error": 0.001,
            "mean_abs_error": 0.0005,
            "passed": True,
        },
        "fairness": {
            "cutoff_pd": 0.3,
            "approve_rate": 0.8,
            "min_rows": 30,
            "attributes": {
                "age": {
                    "groups": [
                        {
                            "group": "18-25",
                            "rows": 40,
                            "approval_rate": 0.7,
                            "default_rate": 0.3,
                            "mean_pd": 0.28,
                            "auc": None,
                            "ece": 0.05,
                        }
                    ],
                    "approval_ratio": None,
                }
            },
        },
        "training": {"best_epoch": 0, "best_valid_auc": -1.0, "epochs_run": 3, "world_size": 1},
        "ensemble": [
            {"trial": "t1", "run_id": "r1", "valid_auc": 0.79},
            {"trial": "t2", "run_id": "r2", "valid_auc": 0.78},
        ],
        "benchmark": {
            "model": "lightgbm",
            "params": {"num_leaves": 31},
            "rounds": 40,
            "valid_auc": 0.78,
            "monotone": False,
            "train_rows": 700,
            "valid_rows": 150,
            "seconds": 1.5,
            "test": m | {"auc": 0.79},
        },
        "lift": {"auc": 0.01, "ks": 0.0},
        "split": {
            "method": "time",
            "seed": 0,
            "period_column": "year",
            "valid_from": 2015,
            "test_from": 2016,
            "train": {"rows": 700, "default_rate": 0.2},
            "valid": {"rows": 150, "default_rate": 0.2},
            "test": {"rows": 300, "default_rate": 0.2},
        },
        "data": {
            "source": "synthetic(n_rows=1150, seed=0)",
            "rows": 1150,
            "unused_columns": [],
            "protected": ["age"],
        },
        "data_fingerprint": "0123456789abcdef",
        "run_key": "20260101-abc",
        "run_id": None,
        "model_uri": None,
        "registered": {"name": "credit-risk", "version": None, "alias": "challenger"},
    }


@pytest.mark.parametrize("raw", [pipeline_report(), sample_report() | {"run_key": None}])
def test_the_file_reads_back_unchanged(raw):
    report = Report.from_dict(json.loads(json.dumps(raw)))
    assert report.to_dict() == raw
    if list(raw) == list(pipeline_report()):  # and in the same order
        assert json.dumps(report.to_dict()) == json.dumps(raw)


def test_an_unpublished_report_says_so_with_nulls():
    """What publishing adds is written even before it (null): readers of the file find the keys."""
    assert Report().to_dict() == {"run_key": None, "run_id": None, "model_uri": None}


def test_the_parts_are_typed():
    report = Report.from_dict(pipeline_report())
    assert report.test.auc == 0.8 and report.test_ci.auc == (0.7, 0.9)
    assert report.fairness.attributes["age"].groups[0].group == "18-25"
    assert report.ensemble[0] == TrialMember(
        trial="t1", run_id="r1", metric="valid_auc", objective=0.79
    )
    assert report.split.parts()["test"].rows == 300
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.test.auc = 1.0  # type: ignore[misc]


def test_a_part_the_job_did_not_produce_is_left_out_of_the_file():
    raw = pipeline_report()
    for key in (
        "bayes_auc_test",
        "explain",
        "fairness",
        "ensemble",
        "benchmark",
        "lift",
        "registered",
    ):
        del raw[key]
    raw["split"] = {k: v for k, v in raw["split"].items() if not k.endswith(("_from", "_column"))}
    raw["split"]["method"] = "stratified"
    assert Report.from_dict(raw).to_dict() == raw


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda r: r.update(tset=r["test"]), "report: unknown key 'tset'"),
        (lambda r: r["test"].update(acu=0.8), "report.test: unknown key 'acu'"),
        (lambda r: r["test"].pop("ks"), "report.test: missing ['ks']"),
        (
            lambda r: r["fairness"]["attributes"]["age"]["groups"][0].pop("rows"),
            "report.fairness.attributes.age.groups[0]: missing ['rows']",
        ),
        (lambda r: r["split"].update(test=[1, 2]), "report.split.test: expected an object"),
        (lambda r: r["registered"].update(name=None), "report.registered.name: is null"),
        (lambda r: r["ensemble"].append({"trial": "t3"}), "report.ensemble[2]: fits none"),
    ],
)
def test_a_key_no_part_declares_or_a_missing_one_is_named(change, said):
    raw = pipeline_report()
    change(raw)
    with pytest.raises(ReportError, match=said.replace("[", r"\[").replace("]", r"\]")):
        Report.from_dict(raw)


# ---- the producers' dicts fit the parts --------------------------------------------------------


def test_the_producers_dicts_fit_their_parts():
    from training.core.state import FitResult
    from training.data import split
    from training.governance.fairness import fairness_table

    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.2).astype(np.int64)
    p = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.1, len(y)), 0.01, 0.99)
    report_module.Metrics.from_dict(metrics.evaluate(y, p))
    report_module.Intervals.from_dict(metrics.bootstrap_ci(y, p, resamples=20))
    groups = {"sex": rng.choice(["1", "2"], len(y))}
    report_module.Fairness.from_dict(fairness_table(y, p, groups))
    import pandas as pd

    frame = pd.DataFrame({"target": y})
    cfg = split.SplitConfig()  # where the split reads it from, wherever the config lives
    report_module.SplitSummary.from_dict(
        split.summary(y, split.make_split(frame, "target", cfg), cfg)
    )
    report_module.Training.from_dict(FitResult(epochs_run=2).summary() | {"world_size": 1})


# ---- the readers, from a full report ---------------------------------------------------------


def test_the_readers_render_a_full_report(tmp_path):
    from training.governance.card import METRICS, write_card

    report = Report.from_dict(pipeline_report())
    md, _ = write_card(
        report, tmp_path / "plots", tmp_path, config_text=CONFIG, command="c", title="t"
    )
    text = md.read_text()
    assert "Bayes-optimal test AUC (the true PDs are known): 0.8300; gap 0.0300." in text
    assert "Ensemble of the best 2 sweep trials" in text and "| t2 | r2 | 0.7800 |" in text
    assert "by year: validation from 2015, test from 2016" in text
    assert {k for k, _ in METRICS} <= {f.name for f in dataclasses.fields(report_module.Metrics)}


def test_the_mlflow_metrics_and_version_tags():
    report = Report.from_dict(pipeline_report())
    flat = report.flat_metrics()
    assert flat["test_auc"] == 0.8 and flat["test_n"] == 300
    assert flat["psi_train_test"] == 0.01 and flat["bayes_auc_test"] == 0.83
    assert flat["monotone_violations"] == 0.0 and flat["reasons_completeness_max_error"] == 0.001
    assert flat["benchmark_test_auc"] == 0.79 and flat["lift_auc"] == 0.01
    assert report.version_tags() == {
        "test_auc": "0.8000",
        "test_ks": "0.5000",
        "monotone_violations": "0.0000",
        "reasons_completeness_max_error": "0.0010",
        "benchmark_test_auc": "0.7900",
        "lift_auc": "0.0100",
    }
    assert Report().flat_metrics() == {}


def test_the_sweep_reads_every_objective_from_the_report():
    from training.launch.sweep import EVALUATED, SweepConfig, trial_result

    objectives = type(SweepConfig().metric)  # the enum of what a sweep may optimise
    report = Report.from_dict(pipeline_report() | {"run_id": "r", "model_uri": "models:/m"})
    for metric in objectives:
        out = trial_result(report, metric)
        value = getattr(report.valid, metric.removeprefix("valid_"))
        assert out == {metric: value, EVALUATED: 1, "run_id": "r", "model_uri": "models:/m"}


def test_the_run_folder_keeps_the_report(tmp_path):
    from training.core.run_dir import RunDir

    run_dir, report = RunDir(tmp_path), Report.from_dict(pipeline_report())
    path = run_dir.write_report(report)
    assert json.loads(path.read_text()) == pipeline_report()
    assert run_dir.finished_report() is None  # no DONE yet
    run_dir.mark_done("r")
    assert run_dir.finished_report() == report
    path.write_text(json.dumps(copy.deepcopy(pipeline_report()) | {"tset": 1}))
    with pytest.raises(ReportError, match=r"evaluation.json: unknown key 'tset'"):
        run_dir.finished_report()
