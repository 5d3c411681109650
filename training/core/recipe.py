"""``recipe=auto``: a recipe chosen for the lender's file, on its validation rows only.

Each candidate is the composed config with a few changes (``CHANGES``). The job trains each on the
training rows with the real loop (early stopping on validation AUC, as any job), in the order
listed, until ``recipe.budget_minutes`` have passed; keeps the one with the best validation AUC;
and then trains that one as the job's model, through the usual path (checkpoints, MLflow,
evaluation, registry). Test rows are never read here. Under MPI or Ray the ranks train each
candidate together (data parallel), or each its own member (ensemble parallelism: the candidate
is then measured as the ensemble, the members' mean PD); rank 0's choice is everyone's. The choice is written to ``recipe.json`` in the run folder: a resumed job reads it
and does not search again.

Why these candidates (``benchmarks/recipe_search.py``, mean validation AUC over seeds 0-2, in
docs/benchmarks.md): piecewise-linear embeddings won on Polish and SBA (+0.017 and +0.005) and
lost on Taiwan; label smoothing added to them on SBA; TabM won nowhere and trains about 30x
slower on these 2-core machines, so it is a candidate only when listed (``recipe.candidates``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import numpy as np
from omegaconf import OmegaConf

from training import metrics
from training.config import TrainConfig, to_config
from training.core.loop import fit
from training.core.parallel import Role, build
from training.core.run_dir import RunDir
from training.data.prepare import Prepared
from training.models.build import predict_pd
from training.models.config import TabMConfig
from training.report import RecipeCandidate, RecipeSummary

log = logging.getLogger("riskbrain")

# What each candidate changes in the composed config (``base``: nothing).
CHANGES: dict[str, dict[str, object]] = {
    "base": {},
    "embeddings": {"model.num_embeddings": "piecewise", "model.d_embedding": 8},
    "embeddings_ls": {
        "model.num_embeddings": "piecewise",
        "model.d_embedding": 8,
        "optim.label_smoothing": 0.1,
    },
    "tabm": {"model": "tabm"},  # TabM's defaults (configs/model/tabm.yaml), same monotone setting
}
FILE = "recipe.json"


def candidate(cfg: TrainConfig, name: str) -> TrainConfig:
    """``cfg`` with candidate ``name``'s changes, validated like any job's config."""
    if name == "tabm":
        return dataclasses.replace(cfg, model=TabMConfig(monotone=cfg.model.monotone))
    node = OmegaConf.structured(cfg)
    for key, value in CHANGES[name].items():
        OmegaConf.update(node, key, value, merge=False)
    return to_config(node)


def choose(
    cfg: TrainConfig, data: Prepared, role: Role, run_dir: RunDir
) -> tuple[TrainConfig, RecipeSummary | None]:
    """The config the job trains, and how it was chosen (None for ``recipe.name=fixed``)."""
    if cfg.recipe.name == "fixed":
        return cfg, None
    saved = run_dir.path / FILE
    if saved.is_file():  # a resumed job: the search is done
        summary = RecipeSummary.from_dict(json.loads(saved.read_text()), str(saved))
        return candidate(cfg, summary.chosen), summary
    tried = search(cfg, data, role)
    best = max((c for c in tried if c.valid_auc is not None), key=lambda c: c.valid_auc)
    tried = [dataclasses.replace(c, chosen=c.name == best.name) for c in tried]
    summary = RecipeSummary(
        chosen=best.name,
        chosen_by="best validation AUC"
        + (" of the ensemble (the members' mean PD)" if role.member is not None else ""),
        budget_minutes=cfg.recipe.budget_minutes,
        candidates=tried,
    )
    summary = RecipeSummary.from_dict(role.world.broadcast(summary.to_dict()), "recipe")
    chosen = candidate(cfg, summary.chosen)
    if role.world.is_main:
        run_dir.write_json(FILE, summary.to_dict())
        run_dir.write_config(chosen)  # config.yaml: what the model is trained with
        log.info("recipe=auto chose %s (validation AUC %.4f)", best.name, best.valid_auc)
    return chosen, summary


def search(cfg: TrainConfig, data: Prepared, role: Role) -> list[RecipeCandidate]:
    """Each candidate trained on the training rows and measured on the validation rows, in the
    listed order, until the budget is spent (rank 0's clock decides, so every rank agrees)."""
    train, valid = (data.tensors(part).to(role.ctx.device) for part in ("train", "valid"))
    y = role.ctx.allgather_array(valid.y.numpy().astype(int))
    start, out = time.perf_counter(), []
    for i, name in enumerate(cfg.recipe.candidates):
        elapsed = role.world.broadcast(time.perf_counter() - start)
        if i > 0 and elapsed > 60 * cfg.recipe.budget_minutes:
            out.append(RecipeCandidate(name=name, changes=_said(name), skipped="budget spent"))
            continue
        t0, trial = time.perf_counter(), candidate(cfg, name)
        state, _ = build(trial, data.training, role, resume=None)
        result = fit(state, train, valid, trial.optim, trial.trainer, ctx=role.ctx)
        batch = cfg.trainer.eval_batch_size
        p = role.ctx.allgather_array(predict_pd(state.model, valid.x_num, valid.x_cat, batch))
        if role.member is not None:  # ensemble parallelism: the ensemble's PD, the members' mean
            p = np.mean(role.world.allgather(p), axis=0)
        out.append(
            RecipeCandidate(
                name=name,
                changes=_said(name),
                valid_auc=metrics.auc(y, p),
                valid_ece=metrics.ece(y, p),
                epochs_run=result.epochs_run,
                seconds=time.perf_counter() - t0,
            )
        )
        if role.world.is_main:
            log.info(
                "recipe=auto: %s validation AUC %.4f, ECE %.4f (uncalibrated), %d epochs, %.0f s",
                name, out[-1].valid_auc, out[-1].valid_ece, result.epochs_run, out[-1].seconds,
            )  # fmt: skip
    return out


def _said(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in CHANGES[name].items()}
