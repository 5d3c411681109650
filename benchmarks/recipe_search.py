"""Recipe search: many training recipes on the same prepared data, chosen by validation AUC only.

Each data set (and split seed) is prepared once in this process (``training.data.prepare``); each
recipe is a list of Hydra overrides composed over the real configs, built like the job builds
(``training.core.parallel.build``) and trained with the real loop (``training.core.loop.fit``). The table
gives the mean validation AUC per data set over the seeds; test AUC is kept in the results file
for the record only and never used to choose.

    python -m benchmarks.recipe_search                                # every recipe, every set
    python -m benchmarks.recipe_search --sets taiwan polish --recipes base cosine --seeds 0 1 2
    python -m benchmarks.recipe_search --out /tmp/recipes.jsonl --table   # the table of a results file
    python -m benchmarks.recipe_search --sets polish --recipes long_ple --members 1 4 8

``--members`` trains each recipe's networks as ``launcher.parallelism=ensemble`` would (member r
seeded ``seed + r``, every training row), one after another in this process, and records each
ensemble of the first k members as recipe ``<recipe>_x<k>`` (PD: the mean of the members' PDs).

Results are appended to ``--out`` (one JSON line per run) and runs already there are skipped, so a
search can be stopped and continued, or split over processes (``--threads 1`` each).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from training import metrics
from training.config import TrainConfig, register_configs, to_config
from training.core.loop import fit
from training.core.parallel import network
from training.core.state import TrainState
from training.data.prepare import Prepared, TrainingData, prepare
from training.models.build import predict_pd
from training.models.embeddings import fit_bins

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# Data set -> its overrides; ``time`` sets have one split, so their seeds are training seeds.
SETS = {
    "synthetic": ["data=synthetic"],
    "taiwan": ["data=taiwan"],
    "polish": ["data=polish"],
    "sba": ["data=sba"],
}
TIME_SPLIT = {"sba"}

LONG = ["trainer.max_epochs=100", "trainer.patience=16"]
COSINE = ["optim.schedule=cosine", "optim.warmup_epochs=1", "trainer.max_epochs=40",
          "trainer.patience=40"]  # fmt: skip
PLE = ["model.num_embeddings=piecewise", "model.d_embedding=8"]
PLATEAU = ["optim.schedule=plateau", "optim.plateau_patience=4", *LONG]
# Recipe -> overrides of configs/train.yaml. "base" is the default before the search (AdamW lr
# 1e-3, weight decay 1e-4, batch 512, constant rate, MLP 3x256, 20 epochs, patience 4); "long",
# its winner, is the default since (100 epochs, patience 16).
RECIPES: dict[str, list[str]] = {
    "base": ["trainer.max_epochs=20", "trainer.patience=4"],
    "long": LONG,
    "long_ls0.1": [*LONG, "optim.label_smoothing=0.1"],
    "cosine": COSINE,
    "plateau": PLATEAU,
    "plateau_wd1e-2": [*PLATEAU, "optim.weight_decay=1e-2"],
    "plateau_clip1": [*PLATEAU, "optim.grad_clip=1.0"],
    "plateau_ls0.1": [*PLATEAU, "optim.label_smoothing=0.1"],
    "plateau_lr3e-4": [*PLATEAU, "optim.lr=3e-4"],
    "plateau_bs256": [*PLATEAU, "optim.batch_size=256"],
    "plateau_drop0.3": [*PLATEAU, "model.dropout=0.3"],
    "plateau_ple": [*PLATEAU, *PLE],
    "plateau_tabm": [*PLATEAU, "model=tabm", "optim.lr=2e-3", "optim.weight_decay=3e-4"],
    "long_ple": [*LONG, *PLE],
    "long_ple_wd1e-2": [*LONG, *PLE, "optim.weight_decay=1e-2"],
    "long_ple_ls0.1": [*LONG, *PLE, "optim.label_smoothing=0.1"],
}


def compose_cfg(overrides: list[str]) -> TrainConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return to_config(
            compose(config_name="train", overrides=["benchmark.enabled=false", *overrides])
        )


def seed_overrides(name: str, seed: int) -> list[str]:
    return [f"seed={seed}"] if name in TIME_SPLIT else [f"data.split.seed={seed}"]


def build(cfg: TrainConfig, data: TrainingData) -> TrainState:
    """The network and its training state, as the job builds them (``training.core.parallel.build``:
    the same bins, output bias and monotone directions)."""
    torch.manual_seed(cfg.seed)
    model = network(cfg, data, fit_bins(cfg.model, data.sample_x[0]))
    return TrainState.create(model, cfg.optim, cfg.seed)


def fit_recipe(cfg: TrainConfig, data: Prepared) -> dict:
    """Build and train one recipe on prepared data; validation and test AUC of the best epoch."""
    t0 = time.perf_counter()
    state = build(cfg, data.training)
    result = fit(state, data.training.train, data.training.valid, cfg.optim, cfg.trainer)
    test = data.tensors("test")
    p = predict_pd(state.model, test.x_num, test.x_cat, cfg.trainer.eval_batch_size)
    return {
        "valid_auc": result.best_valid_auc,
        "test_auc": metrics.auc(test.y.numpy().astype(int), p),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "seconds": time.perf_counter() - t0,
    }


def fit_ensembles(cfg: TrainConfig, data: Prepared, sizes: list[int]) -> dict[int, dict]:
    """Members seeded ``cfg.seed + r`` (as ``launcher.parallelism=ensemble`` seeds its ranks),
    trained in turn; per size k, validation and test AUC of the mean PD of the first k members."""
    parts = {part: data.tensors(part) for part in ("valid", "test")}
    y = {part: t.y.numpy().astype(int) for part, t in parts.items()}
    pds: dict[str, list] = {part: [] for part in parts}
    fits, out, t0 = [], {}, time.perf_counter()
    for r in range(max(sizes)):
        member = dataclasses.replace(cfg, seed=cfg.seed + r)
        state = build(member, data.training)
        train, valid = data.training.train, data.training.valid
        fits.append(fit(state, train, valid, member.optim, member.trainer))
        for part, t in parts.items():
            pds[part].append(predict_pd(state.model, t.x_num, t.x_cat, cfg.trainer.eval_batch_size))
        if (k := r + 1) in sizes:
            out[k] = {
                **{f"{part}_auc": metrics.auc(y[part], sum(pds[part]) / k) for part in parts},
                "member_valid_auc": [f.best_valid_auc for f in fits],
                "best_epoch": statistics.mean(f.best_epoch for f in fits),
                "epochs_run": sum(f.epochs_run for f in fits),
                "seconds": time.perf_counter() - t0,
            }
    return out


def load(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def search(
    sets: list[str], recipes: list[str], seeds: list[int], out: Path, members: list[int] | None
) -> None:
    done = {(r["set"], r["seed"], r["recipe"]) for r in load(out)}
    names = {r: [f"{r}_x{k}" for k in members] if members else [r] for r in recipes}
    for name in sets:
        for seed in seeds:
            todo = [r for r in recipes if any((name, seed, n) not in done for n in names[r])]
            if not todo:
                continue
            cfg = compose_cfg(SETS[name] + seed_overrides(name, seed))
            data = prepare(cfg.data, benchmark_rows=cfg.benchmark.rows)
            for recipe in todo:
                cfg = compose_cfg(SETS[name] + seed_overrides(name, seed) + RECIPES[recipe])
                if members:
                    results = {
                        f"{recipe}_x{k}": r for k, r in fit_ensembles(cfg, data, members).items()
                    }
                else:
                    results = {recipe: fit_recipe(cfg, data)}
                for label, result in results.items():
                    row = {"set": name, "seed": seed, "recipe": label, **result}
                    print(json.dumps(row), flush=True)
                    with out.open("a") as f:
                        f.write(json.dumps(row) + "\n")


def table(rows: list[dict], key: str = "valid_auc") -> str:
    """Mean ``key`` per recipe and data set over seeds, the mean over sets and its change from base."""
    sets = [s for s in SETS if any(r["set"] == s for r in rows)]
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    cell = {}
    for r in rows:
        cell.setdefault((r["recipe"], r["set"]), []).append(r)
    lines = [f"{key} (mean over seeds; n = seeds)", f"{'recipe':22s}" + "".join(f"{s:>16s}" for s in sets)
             + f"{'mean':>9s}{'vs base':>9s}{'min d':>8s}{'s/run':>7s}"]  # fmt: skip
    base = {
        s: statistics.mean(x[key] for x in cell[("base", s)]) for s in sets if ("base", s) in cell
    }
    for rec in recipes:
        means = {
            s: statistics.mean(x[key] for x in cell[(rec, s)]) for s in sets if (rec, s) in cell
        }
        line = f"{rec:22s}"
        for s in sets:
            runs = cell.get((rec, s), [])
            line += f"{means[s]:11.4f} n={len(runs)}" if runs else f"{'-':>16s}"
        if len(means) == len(sets):
            avg = statistics.mean(means.values())
            line += f"{avg:9.4f}"
            if len(base) == len(sets):
                line += f"{avg - statistics.mean(base.values()):+9.4f}"
                line += f"{min(means[s] - base[s] for s in sets):+8.4f}"
        secs = [x["seconds"] for s in sets for x in cell.get((rec, s), [])]
        line += f"{statistics.mean(secs):7.1f}" if secs else ""
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("recipe_search.jsonl"))
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    parser.add_argument(
        "--members", nargs="+", type=int, help="ensembles of the first k members (recipe_xk)"
    )
    args = parser.parse_args()
    register_configs()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.table:
        search(args.sets, args.recipes, args.seeds, args.out, args.members)
    chosen = {f"{r}_x{k}" for r in args.recipes for k in args.members} if args.members else set()
    chosen |= set(args.recipes)
    rows = [r for r in load(args.out) if r["recipe"] in chosen and r["set"] in args.sets]
    print(table(rows))
    print(
        table(rows, "test_auc"), "\n(test AUC for the record only: recipes are chosen on valid AUC)"
    )


if __name__ == "__main__":
    main()
