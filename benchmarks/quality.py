"""Quality benchmark: riskbrain's network against LightGBM on the same split, as users run it.

For each data set, the real job (``python -m jobs.train``) runs in a subprocess with a temporary
tracking store, once per seed, for two recipes: the data set's best recipe
(``experiment=<set>_best``) and the default recipe (no experiment file: what another lender's file
gets); ``--recipes auto`` adds ``recipe=auto`` (the default recipe choosing among its candidates
on the file's validation rows). Each run's ``evaluation.json`` carries the network's test AUC and that of the built-in
LightGBM benchmark (trained on the same training rows, stopped on the same validation rows). Stratified
sets vary the split (``data.split.seed=0,1,2``); SBA has one out-of-time split, so it varies the
training seed (``seed=0,1,2``). Models and settings are chosen on validation rows only. A best
recipe may be an ensemble (``launcher=ray launcher.parallelism=ensemble`` in its experiment file):
the job then starts its own Ray cluster, and ``members`` records how many networks it averaged.

    python -m benchmarks.quality                       # every set, both recipes, seeds 0 1 2
    python -m benchmarks.quality --sets taiwan --recipes best
    python -m benchmarks.quality --markdown            # the table of benchmarks/quality_results.json

Writes benchmarks/quality_results.json (every run, then the summary).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "quality_results.json"

SETS = {"synthetic": "synthetic", "taiwan": "taiwan", "polish": "polish", "sba": "sba",
        "taiwan_statements": "taiwan_statements"}  # fmt: skip
LABELS = {"synthetic": "synthetic SME (200k rows)", "taiwan": "Taiwan", "polish": "Polish 1-year",
          "sba": "SBA (out-of-time)",
          "taiwan_statements": "Taiwan, six statements also as a history"}  # fmt: skip
TIME_SPLIT = {"sba"}  # one split: its seeds are training seeds
ON_REQUEST = {"taiwan_statements"}  # run when named: not in the shipped sets' table


def overrides(name: str, recipe: str, seed: int) -> list[str]:
    chosen = [f"experiment={name}_best"] if recipe == "best" else [f"data={SETS[name]}"]
    chosen += ["recipe=auto"] if recipe == "auto" else []
    return chosen + ([f"seed={seed}"] if name in TIME_SPLIT else [f"data.split.seed={seed}"])


def resolved(chosen: list[str]) -> str:
    """The training config those overrides give, as text: two recipes that resolve alike are one."""
    from hydra import compose, initialize_config_dir

    from training.config import register_configs, to_config, training_dict

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = to_config(compose(config_name="train", overrides=chosen))
    return json.dumps(training_dict(cfg), sort_keys=True)


def run_job(name: str, recipe: str, seed: int, threads: int, extra: list[str]) -> dict:
    """One real job in a fresh process and folder; its report and wall time."""
    with tempfile.TemporaryDirectory(prefix="rb-quality-") as tmp:
        cmd = [sys.executable, "-m", "jobs.train", *overrides(name, recipe, seed),
               f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"hydra.run.dir={tmp}/run"]  # fmt: skip
        cmd += [f"launcher.threads={threads}"] if threads else []
        cmd += extra
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
            )
        report = json.loads((Path(tmp) / "run" / "evaluation.json").read_text())
    gbdt = report.get("benchmark") or {"test": {"auc": None}, "valid_auc": None, "seconds": 0.0}
    return {
        "set": name, "recipe": recipe, "seed": seed, "overrides": overrides(name, recipe, seed),
        "net_test_auc": report["test"]["auc"], "net_valid_auc": report["valid"]["auc"],
        "gbdt_test_auc": gbdt["test"]["auc"], "gbdt_valid_auc": gbdt["valid_auc"],
        "lift_auc": report["lift"]["auc"] if "lift" in report else None, "bayes_auc_test": report.get("bayes_auc_test"),
        "best_epoch": report["training"]["best_epoch"], "epochs_run": report["training"]["epochs_run"],
        "members": len(report.get("ensemble", [])) or 1,
        "recipe_chosen": report.get("recipe", {}).get("chosen"),
        "recipe_candidates": report.get("recipe", {}).get("candidates"),
        "net_test_ece": report["test"]["ece"], "gbdt_test_ece": gbdt["test"].get("ece"),
        "net_test_ece_uncalibrated": report.get("calibration", {}).get("test_ece_before"),
        "calibration": report.get("calibration", {}).get("method"),
        "reasons_max_error": report["explain"]["max_abs_error"] if "explain" in report else None,
        "reasons_passed": report["explain"]["passed"] if "explain" in report else None,
        "job_seconds": wall, "gbdt_seconds": gbdt["seconds"], "net_seconds": wall - gbdt["seconds"],
    }  # fmt: skip


def _mean_sd(xs: list[float | None]) -> dict[str, float] | None:
    if None in xs:  # the run had no LightGBM benchmark
        return None
    return {"mean": statistics.mean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0}


def summarise(runs: list[dict]) -> dict:
    """Per set and recipe: mean and sd of test and validation AUC (network, LightGBM), mean lift,
    mean wall times."""
    out: dict = {}
    for r in runs:
        out.setdefault(r["set"], {}).setdefault(r["recipe"], []).append(r)
    summary = {}
    for name, recipes in out.items():
        for recipe, rs in recipes.items():
            row = {
                "n": len(rs),
                "members": rs[0].get("members", 1),
                "net_test_auc": _mean_sd([r["net_test_auc"] for r in rs]),
                "gbdt_test_auc": _mean_sd([r["gbdt_test_auc"] for r in rs]),
                "net_valid_auc": _mean_sd([r["net_valid_auc"] for r in rs]),
                "gbdt_valid_auc": _mean_sd([r["gbdt_valid_auc"] for r in rs]),
                "lift_auc": None
                if None in (x := [r["lift_auc"] for r in rs])
                else statistics.mean(x),
                "net_test_ece": _mean_sd([r.get("net_test_ece") for r in rs]),
                "gbdt_test_ece": _mean_sd([r.get("gbdt_test_ece") for r in rs]),
                "reasons_passed": sum(bool(r.get("reasons_passed")) for r in rs),
                "net_seconds": statistics.mean(r["net_seconds"] for r in rs),
                "gbdt_seconds": statistics.mean(r["gbdt_seconds"] for r in rs),
                "job_seconds": statistics.mean(r["job_seconds"] for r in rs),
            }
            if rs[0]["bayes_auc_test"] is not None:
                row["bayes_auc_test"] = _mean_sd([r["bayes_auc_test"] for r in rs])
            summary.setdefault(name, {})[recipe] = row
    return summary


def _fmt(x: dict | float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x['mean']:.4f} ± {x['sd']:.4f}" if isinstance(x, dict) else f"{x:+.4f}"


def markdown(summary: dict) -> str:
    lines = [
        "| data set | recipe | network test AUC | LightGBM test AUC | lift | Bayes-optimal "
        "| network test ECE | LightGBM test ECE | reasons pass | job s | LightGBM s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SETS:
        for recipe in ("best", "auto", "default"):
            if recipe not in summary.get(name, {}):
                continue
            s = summary[name][recipe]
            net, gbdt = s["net_test_auc"], s["gbdt_test_auc"]
            bayes = f"{s['bayes_auc_test']['mean']:.4f}" if "bayes_auc_test" in s else "-"
            label = {"best": f"`experiment={name}_best`", "auto": "`recipe=auto`"}.get(
                recipe, "default"
            )
            label += f" ({s['members']} networks)" if s.get("members", 1) > 1 else ""
            lines.append(
                f"| {LABELS[name]} | {label} | {_fmt(net)} | "
                f"{_fmt(gbdt)} | {_fmt(s['lift_auc'])} | {bayes} | "
                f"{_fmt(s.get('net_test_ece'))} | {_fmt(s.get('gbdt_test_ece'))} | "
                f"{s.get('reasons_passed', 'n/a')}/{s['n']} | "
                f"{s['net_seconds']:.0f} | {s['gbdt_seconds']:.0f} |"
            )
    return "\n".join(lines)


def machine() -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "date": date.today().isoformat(), "commit": commit}  # fmt: skip


def write(out: Path, runs: list[dict]) -> None:
    result = {"machine": machine(), "summary": summarise(runs), "runs": runs}
    out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets", nargs="+", default=[s for s in SETS if s not in ON_REQUEST], choices=list(SETS)
    )
    parser.add_argument(
        "--recipes", nargs="+", default=["best", "default"], choices=["best", "auto", "default"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--threads", type=int, default=0, help="launcher.threads (0: the job's rule)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every job")
    parser.add_argument("--markdown", action="store_true", help="only print the table of --out")
    args = parser.parse_args()
    if not args.markdown:
        old = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
        keep = [r for r in old if (r["set"], r["recipe"]) not in
                {(s, r) for s in args.sets for r in args.recipes}]  # fmt: skip
        runs, by_config = [], {}
        for name in args.sets:
            for recipe in args.recipes:
                for seed in args.seeds:
                    key = resolved(overrides(name, recipe, seed) + args.extra)
                    if key not in by_config:  # a best recipe equal to the default runs once
                        by_config[key] = run_job(name, recipe, seed, args.threads, args.extra)
                    runs.append(by_config[key] | {"recipe": recipe})
                    print(json.dumps(runs[-1]), flush=True)
                    write(args.out, keep + runs)  # after each run: a failure keeps the rest
    print(markdown(json.loads(args.out.read_text())["summary"]))


if __name__ == "__main__":
    main()
