"""One job, end to end: prepare -> build -> fit -> evaluate -> publish.

Runs the same on one process or on every rank of a data-parallel job (``ctx``): each rank holds a
shard; the split, the preprocessing and the metrics equal the single-process values; rank 0
alone writes the run folder and talks to MLflow (other ranks get the null tracker). Data are
loaded and validated before MLflow is touched, so bad input leaves no run behind; the model is
registered last, so a failed or interrupted run registers nothing.
"""

from __future__ import annotations

import json
import logging
import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from training import metrics
from training.governance.benchmark import gbdt_benchmark
from training.governance.card import write_card
from training.core.checkpoint import Checkpointer, load_latest
from training.governance.checks import completeness, monotonicity
from training.config import TrainConfig, training_dict
from training.data.prepare import Prepared, prepare
from training.data.split import summary
from training.runtime.dist import DistContext
from training.errors import ConfigError
from training.governance.fairness import fairness_table
from training.core.loop import Hooks, fit
from training.models import predict_pd
from training.models.embeddings import fit_bins
from training.core.parallel import Role, Trained, gather, network
from training.governance.plots import save_evaluation_plots
from training.runtime.preemption import StopFlag
from training.runtime.progress import EpochProgress
from training.core.run_dir import RunDir
from training.serving import make_decision, save_bundle
from training.serving.explain import Explainer
from training.core.state import TrainState
from training.tracking.tracker import Tracker, flatten, git_commit, open_job_run

log = logging.getLogger("riskbrain")


def run(
    cfg: TrainConfig, out_dir: Path, ctx: DistContext | None = None, *, parent_run_id: str | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict:  # fmt: skip
    """Train, evaluate, log and register; returns the evaluation report (on every rank that evaluates)."""
    ctx, run_dir = ctx or DistContext(), RunDir(out_dir)
    if cfg.checkpoint.resume and (report := run_dir.finished_report()) is not None:
        log.info("%s already finished (DONE); nothing to do", out_dir)
        return report
    role = Role.of(cfg, ctx, run_dir)  # data parallel: one network; ensemble: one per rank
    resume = find_resume(cfg, role)
    if ctx.is_main:
        run_dir.start(cfg)
    stop = StopFlag(run_dir.stop_file)
    stop.install(cfg.checkpoint.signal)
    data = prepare(cfg, role.ctx)

    name, tags = f"{cfg.data.name}-{cfg.model.name}", run_tags(cfg, data, ctx)
    with open_job_run(
        cfg.tracking, run_dir.path, name=name, tags=tags | {"output_dir": str(run_dir.path.resolve())},
        resume=resume, parent_id=parent_run_id, enabled=ctx.is_main,
    ) as tracker:  # fmt: skip
        if resume is None:
            tracker.log_params(flatten(training_dict(cfg)))
        ctx.abort_hooks.append(tracker.fail)  # a watchdog about to end the job: the run says why
        state, bins = build(cfg, data, role, resume)
        hooks = make_hooks(cfg, role, tracker, stop, on_epoch)
        train, valid = data.train.to(role.ctx.device), data.valid.to(role.ctx.device)
        result = fit(state, train, valid, cfg.optim, cfg.trainer, ctx=role.ctx, hooks=hooks)
        ours = Trained(state.model.cpu(), [(cfg.model, bins)], result, ctx.world_size)
        trained = gather(role, ours, rebuild=lambda: network(cfg, data, bins))
        evaluation = evaluate(trained, data, cfg, role.ctx) if role.evaluates else None
        if ctx.is_main:
            evaluation.report.update(
                publish(cfg, run_dir, data, evaluation, tracker, trained, tags)
            )
    if ctx.is_main:  # the MLflow run has ended FINISHED
        run_dir.mark_done(evaluation.report["run_id"] or evaluation.report["run_key"])
    ctx.barrier()
    return evaluation.report if evaluation else {}


def find_resume(cfg: TrainConfig, role: Role) -> dict | None:
    """The latest valid checkpoint of this rank's network (read once, shared by the ranks that
    train it), if resuming."""
    if not cfg.checkpoint.resume:
        return None
    ctx = role.ctx
    found = load_latest(role.checkpoints) if ctx.is_main else None
    state = ctx.broadcast(found[0] if found else None)
    if state is None:
        return None
    now, then = flatten(training_dict(cfg)), flatten(state["config"])
    ignored = ("launcher.", "checkpoint.", "tracking.", "registry.", "trainer.eval_batch_size")
    differ = sorted(
        k
        for k in now.keys() | then.keys()
        if now.get(k) != then.get(k) and not k.startswith(ignored)
    )
    if differ:
        raise ConfigError(
            f"config differs from the checkpoint in {role.checkpoints} at {differ[:5]}: "
            "use a new output folder (hydra.run.dir) or checkpoint.resume=false"
        )
    if ctx.is_main:
        log.info(
            "resuming from %s: epoch %d, step %d, mlflow run %s",
            found[1].name,
            state["epoch"],
            state["step"],
            state.get("run_key") or state["run_id"],
        )
    return state


def run_tags(cfg: TrainConfig, data: Prepared, ctx: DistContext) -> dict[str, str]:
    """What the MLflow run and the registered version are found by (a collective: every rank
    calls it; ``nodes`` lists the hosts the ranks ran on)."""
    return {
        "git_commit": git_commit(),
        "dataset": cfg.data.name,
        "data_fingerprint": data.fingerprint,
        "data_source": data.dataset.source,
        "model_name": str(cfg.model.name),
        "launcher": str(cfg.launcher.name),
        "world_size": str(ctx.world_size),
        "nodes": ",".join(dict.fromkeys(ctx.allgather(socket.gethostname()))),  # in rank order
    }


def build(
    cfg: TrainConfig, data: Prepared, role: Role, resume: dict | None
) -> tuple[TrainState, list[torch.Tensor] | None]:
    """This rank's network and its training state, loaded from ``resume`` when there is one;
    also the embedding bins the network was built with."""
    torch.manual_seed(role.seed)
    bins = fit_bins(cfg.model, data.sample_x[0])
    state = TrainState.create(network(cfg, data, bins).to(role.ctx.device), cfg.optim, role.seed)
    if resume is not None:
        state.load_state_dict(resume, role.ctx.rank)
    return state, bins


def make_hooks(cfg: TrainConfig, role: Role, tracker: Tracker, stop, on_epoch) -> Hooks:
    """What fit reports to: MLflow (rank 0), the progress display (rank 0), checkpoints."""
    meta = {"run_key": tracker.key, "run_id": tracker.run_id or "", "config": training_dict(cfg)}
    checkpointer = Checkpointer(role.checkpoints, cfg.checkpoint, role.ctx, meta)
    progress = EpochProgress(cfg.trainer.max_epochs) if role.job.is_main else None
    return Hooks(tracker, progress, checkpointer, stop, on_epoch)


@dataclass(frozen=True)
class Evaluation:
    report: dict  # evaluation.json
    test_y: np.ndarray  # every test row's label and PD, in global order (for the plots)
    test_p: np.ndarray
    decision: dict  # what the bundle stores to turn a PD into a score and reasons


def evaluate(trained: Trained, data: Prepared, cfg: TrainConfig, ctx: DistContext) -> Evaluation:
    """Whole-split metrics from gathered predictions; the Bayes-optimal AUC when the true PDs are
    known; how training went; the split and the data fingerprint."""
    p, y, model, batch = {}, {}, trained.model, cfg.trainer.eval_batch_size
    for part in ("valid", "test"):
        t = data.tensors[part]
        p[part] = ctx.allgather_array(predict_pd(model, t.x_num, t.x_cat, batch))
        y[part] = ctx.allgather_array(t.y.numpy().astype(int))
    p_train = predict_pd(model, *data.sample_x, batch)
    report: dict = {
        "test": metrics.evaluate(y["test"], p["test"]),
        "test_ci": metrics.bootstrap_ci(y["test"], p["test"], seed=cfg.seed) if ctx.is_main else {},
        "valid": metrics.evaluate(y["valid"], p["valid"]),
        "psi_train_test": metrics.psi(p_train, p["test"]),
    }
    if data.dataset.pd_true is not None:
        pd_true = ctx.allgather_array(data.dataset.pd_true[data.rows["test"]])
        report["bayes_auc_test"] = metrics.auc(y["test"], pd_true)
    decision, checks = decision_parts(cfg, data, model, p_train, ctx)
    report |= checks
    if data.groups:  # every rank's test rows' groups, in global order as the PDs are
        groups = {c: ctx.allgather_array(g) for c, g in data.groups.items()}
        fair = cfg.fairness
        report["fairness"] = fairness_table(
            y["test"], p["test"], groups, fair.approve_rate, fair.min_rows
        )
    report["training"] = trained.result.summary() | {"world_size": trained.world_size}
    if trained.ensemble:  # one line per member: its seed and how its training went
        report["ensemble"] = trained.ensemble
    if (gbdt := gbdt_benchmark(cfg.benchmark, data, ctx)) is not None:
        report["benchmark"] = gbdt
        report["lift"] = {k: report["test"][k] - gbdt["test"][k] for k in ("auc", "ks")}
    report["split"] = summary(data.labels, data.split, cfg.data.split)
    report["data"] = {
        "source": data.dataset.source,
        "rows": len(data.labels),
        "unused_columns": list(data.dataset.unused),
        "protected": list(data.dataset.schema.protected),
    }
    report["data_fingerprint"] = data.fingerprint
    if ctx.is_main:
        bayes, gbdt = report.get("bayes_auc_test"), report.get("benchmark")
        log.info(
            "test auc %.4f%s%s",
            report["test"]["auc"],
            f"  (Bayes-optimal {bayes:.4f})" if bayes is not None else "",
            f"  (LightGBM {gbdt['test']['auc']:.4f}, lift {report['lift']['auc']:+.4f})"
            if gbdt
            else "",
        )
    return Evaluation(report, y["test"], p["test"], decision)


def decision_parts(
    cfg: TrainConfig, data: Prepared, model: torch.nn.Module, p_train: np.ndarray, ctx: DistContext
) -> tuple[dict, dict]:
    """What the bundle stores to turn a PD into a decision (the score scale, the reasons'
    settings and reference rows, the training scores' deciles), and the report's checks of it:
    monotone directions on test rows, and the reasons' completeness (rank 0)."""
    schema, test = data.dataset.schema, data.tensors["test"]
    decision = make_decision(
        cfg.score, cfg.explain, *data.sample_x, p_train, data.train_sample, schema, cfg.seed
    )
    checks: dict = {"monotonicity": monotonicity(model, test, data.pre, schema, ctx)}
    if ctx.is_main:
        explainer = Explainer(model, data.pre, schema, decision["reference"], cfg.explain)
        checks["explain"] = completeness(explainer, test)
        wrong = sum(m["violations"] for m in checks["monotonicity"].values())
        log.info(
            "monotone features: %d, rows moved the wrong way: %d; reasons' completeness error "
            "max %.2g logits (tolerance %g)",
            len(checks["monotonicity"]), wrong, checks["explain"]["max_abs_error"],
            cfg.explain.tolerance,
        )  # fmt: skip
    return decision, checks


# What a registered version is tagged with (and so can be compared by) besides the run's tags.
VERSION_METRICS = (
    "test_auc", "test_ks", "benchmark_test_auc", "lift_auc", "monotone_violations",
    "reasons_completeness_max_error",
)  # fmt: skip


def final_metrics(report: dict) -> dict[str, float]:
    """The report's numbers as flat MLflow metrics: test_*, benchmark_test_*, lift_*, PSI, Bayes."""
    out = {f"test_{k}": v for k, v in report["test"].items()}
    out |= {k: v for k, v in report.items() if isinstance(v, float)}
    if "monotonicity" in report:
        out["monotone_violations"] = float(
            sum(m["violations"] for m in report["monotonicity"].values())
        )
    if "explain" in report:
        out["reasons_completeness_max_error"] = report["explain"]["max_abs_error"]
    if "benchmark" in report:
        out |= {f"benchmark_test_{k}": v for k, v in report["benchmark"]["test"].items()}
        out |= {f"lift_{k}": v for k, v in report["lift"].items()}
    return out


def publish(
    cfg: TrainConfig,
    run_dir: RunDir,
    data: Prepared,
    evaluation: Evaluation,
    tracker: Tracker,
    trained: Trained,
    tags: dict[str, str],
) -> dict:
    """Rank 0: plots, the model bundle and example predictions in the run folder; all of it, the
    model and the report in MLflow; then the registered version. Returns what it adds to the report."""
    report, schema = evaluation.report, data.dataset.schema
    tracker.log_metrics(final_metrics(report), step=report["training"]["epochs_run"])
    title = f"{cfg.data.name} / {cfg.model.name}"
    save_evaluation_plots(evaluation.test_y, evaluation.test_p, run_dir.plots, title=title)
    model, extra = trained.model, {"metrics": report["test"], **tags}
    bundle = {"model": model, "members": trained.members, "pre": data.pre, "schema": schema,
              "decision": evaluation.decision}  # fmt: skip
    run_dir.write_folder(run_dir.bundle, lambda tmp: save_bundle(tmp, **bundle, extra=extra))
    example = data.frames["test"][schema.names()].head(5)
    x_num, x_cat = (torch.from_numpy(x) for x in data.pre.transform(example))
    examples = {
        "columns": list(example.columns),
        "data": json.loads(example.to_json(orient="values")),
        "pd": predict_pd(model, x_num, x_cat).tolist(),
    }
    tracker.log_artifact(run_dir.write_json("example_predictions.json", examples))
    tracker.log_artifact(run_dir.path / "config.yaml")
    tracker.log_artifact(run_dir.plots, "plots")

    model_uri = tracker.log_model(run_dir.bundle, schema, example)
    out = {"run_key": tracker.key, "run_id": tracker.run_id, "model_uri": model_uri}
    if cfg.registry.register:
        version_tags = tags | {
            k: f"{v:.4f}" for k, v in final_metrics(report).items() if k in VERSION_METRICS
        }  # the store's run id is added when the version is made
        name = cfg.registry.name
        alias, why = cfg.registry.alias_after(report["training"]["epochs_run"])
        version = tracker.register(model_uri, name, alias, version_tags)
        out["registered"] = {"name": name, "version": version, "alias": alias}
        log.info(
            "registered %s version %s %s",
            name,
            version or "(pending: sent when the tracking store answers)",
            f"as @{alias}" if alias else f"(@{cfg.registry.alias} not moved: {why})",
        )
    tracker.log_artifact(run_dir.write_report(report | out))
    for path in model_card(report | out, run_dir, title, tags["git_commit"]):
        tracker.log_artifact(path)
    return out


def model_card(report: dict, run_dir: RunDir, title: str, commit: str) -> tuple[Path, Path]:
    """The run's model card, Markdown and self-contained HTML (``training/governance/card.py``), in the run
    folder; MLflow gets them beside ``plots/``, so a registered version's run carries its card."""
    return write_card(
        report, run_dir.plots, run_dir.path,
        config_text=(run_dir.path / "config.yaml").read_text(),
        command=shlex.join(["python", "-m", "jobs.train", *sys.argv[1:]]),
        title=title, commit=commit, date=datetime.now().strftime("%Y-%m-%d %H:%M"),
    )  # fmt: skip
