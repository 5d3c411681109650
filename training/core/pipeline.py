"""One job, end to end: prepare -> build -> fit -> evaluate -> publish.

Runs the same on one process or on every rank of a data-parallel job (``ctx``): each rank holds a
shard; the split, the preprocessing and the metrics equal the single-process values; rank 0
alone writes the run folder and talks to MLflow (other ranks get the null tracker). Data are
loaded and validated before MLflow is touched, so bad input leaves no run behind; the model is
registered last, so a failed or interrupted run registers nothing.
"""

from __future__ import annotations

import dataclasses
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
from training.config import TrainConfig, training_dict
from training.core.calibrate import fit_calibration
from training.core.checkpoint import Checkpointer, load_latest
from training.core.loop import Hooks, fit
from training.core.parallel import Role, Trained, build, gather, network
from training.core.recipe import choose as choose_recipe
from training.core.run_dir import RunDir
from training.data.prepare import EvaluationData, Prepared, prepare
from training.data.split import summary
from training.errors import ConfigError
from training.governance.benchmark import gbdt_benchmark
from training.governance.card import write_card
from training.governance.checks import completeness, monotonicity
from training.governance.fairness import fairness_table
from training.governance.plots import save_evaluation_plots
from training.models.build import predict_pd
from training.models.calibration import calibrated
from training.report import (
    Benchmark,
    CalibrationSummary,
    Completeness,
    DataSummary,
    Fairness,
    Intervals,
    Lift,
    Metrics,
    MonotoneCheck,
    RecipeSummary,
    Registered,
    Report,
    SourceCoverage,
    SplitSummary,
    Training,
    ensemble_member,
)
from training.runtime.dist import DistContext
from training.runtime.preemption import StopFlag
from training.runtime.progress import EpochProgress
from training.serving.bundle import make_decision, save_bundle
from training.serving.explain import Explainer
from training.tracking.tracker import Tracker, flatten, git_commit, open_job_run

log = logging.getLogger("riskbrain")


def run(
    cfg: TrainConfig, out_dir: Path, ctx: DistContext | None = None, *, parent_run_id: str | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Report | None:  # fmt: skip
    """Train, evaluate, log and register; returns the evaluation report (on every rank that
    evaluates; rank 0's is the published one, ``evaluation.json``)."""
    run_dir = RunDir(out_dir)
    if cfg.checkpoint.resume and (report := run_dir.finished_report()) is not None:
        log.info("%s already finished (DONE); nothing to do", out_dir)
        return report
    role = Role.of(cfg, ctx or DistContext(), run_dir)
    if role.world.is_main:
        run_dir.start(cfg)
    stop = StopFlag(run_dir.stop_file).install(cfg.checkpoint.signal)
    data = prepare(cfg.data, role.ctx, benchmark_rows=cfg.benchmark.rows)
    cfg, recipe = choose_recipe(cfg, data, role, run_dir)  # recipe=auto: the best candidate's
    world, params = role.world, flatten(training_dict(cfg))
    resume = find_resume(params, role)
    name, tags = f"{cfg.data.name}-{cfg.model.name}", run_tags(cfg, data, world)
    with open_job_run(
        cfg.tracking, run_dir.path, name=name, tags=tags | {"output_dir": str(run_dir.path.resolve())},
        resume=resume, parent_id=parent_run_id, enabled=world.is_main,
    ) as tracker:  # fmt: skip
        if resume is None:
            tracker.log_params(params)
        world.abort_hooks.append(tracker.fail)  # a watchdog about to end the job: the run says why
        state, bins = build(cfg, data.training, role, resume)
        hooks = make_hooks(cfg, role, tracker, stop, on_epoch)
        train, valid = (data.tensors(part).to(role.ctx.device) for part in ("train", "valid"))
        result = fit(state, train, valid, cfg.optim, cfg.trainer, ctx=role.ctx, hooks=hooks)
        ours = Trained(state.model.cpu(), [(cfg.model, bins)], result, world.world_size)
        trained = gather(role, ours, rebuild=lambda: network(cfg, data.training, bins))
        evaluation = evaluate(trained, data, cfg, role.ctx, recipe) if role.evaluates else None
        report = evaluation.report if evaluation else None
        if world.is_main:
            report = publish(cfg, run_dir, data, evaluation, tracker, trained, tags)
    if world.is_main:  # the MLflow run has ended FINISHED
        run_dir.mark_done(report.run_id or report.run_key)
    world.barrier()
    return report


def find_resume(params: dict, role: Role) -> dict | None:
    """The latest valid checkpoint of this rank's network (read once, shared by the ranks that
    train it), if resuming; its config must equal the job's (``params``, flattened)."""
    if not params["checkpoint.resume"]:
        return None
    ctx = role.ctx
    found = load_latest(role.checkpoints) if ctx.is_main else None
    state = ctx.broadcast(found[0] if found else None)
    if state is None:
        return None
    now, then = params, flatten(state["config"])
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
        "data_fingerprint": data.training.fingerprint,
        "data_source": data.evaluation.source,
        "model_name": str(cfg.model.name),
        "launcher": str(cfg.launcher.name),
        "world_size": str(ctx.world_size),
        "nodes": ",".join(dict.fromkeys(ctx.allgather(socket.gethostname()))),  # in rank order
    }


def make_hooks(cfg: TrainConfig, role: Role, tracker: Tracker, stop, on_epoch) -> Hooks:
    """What fit reports to: MLflow (rank 0), the progress display (rank 0), checkpoints."""
    meta = {"run_key": tracker.key, "run_id": tracker.run_id or "", "config": training_dict(cfg)}
    checkpointer = Checkpointer(role.checkpoints, cfg.checkpoint, role.ctx, meta)
    progress = EpochProgress(cfg.trainer.max_epochs) if role.world.is_main else None
    return Hooks(tracker, progress, checkpointer, stop, on_epoch)


@dataclass(frozen=True)
class Evaluation:
    report: Report  # evaluation.json, but for what publishing adds (the run, model and version)
    model: torch.nn.Module  # the trained network, calibrated: what is published
    test_y: np.ndarray  # every test row's label and PD, in global order (for the plots)
    test_p: np.ndarray
    test_p_uncalibrated: np.ndarray
    decision: dict  # what the bundle stores to turn a PD into a score and reasons


def gathered_pds(
    model: torch.nn.Module, data: Prepared, batch: int, ctx: DistContext
) -> dict[str, np.ndarray]:
    """Every validation and test row's PD, gathered in global order."""
    out = {}
    for part in ("valid", "test"):
        t = data.tensors(part)
        out[part] = ctx.allgather_array(predict_pd(model, t.x_num, t.x_cat, batch))
    return out


def calibrate(
    network: torch.nn.Module, data: Prepared, y: dict[str, np.ndarray], cfg: TrainConfig,
    ctx: DistContext,
) -> tuple[torch.nn.Module, dict[str, np.ndarray], np.ndarray, CalibrationSummary]:  # fmt: skip
    """The network with its PD calibration fitted on the validation rows (``y``: every rank's
    labels in global order, so every rank fits the same one); its validation and test PDs, the
    test PDs before calibration, and what the calibration did."""
    batch = cfg.trainer.eval_batch_size
    before = gathered_pds(network, data, batch, ctx)
    calibration = fit_calibration(cfg.calibration, y["valid"], before["valid"])
    model = calibrated(network, calibration)
    after = gathered_pds(model, data, batch, ctx) if model is not network else before
    summary = CalibrationSummary(
        method=calibration.method,
        chosen_by=calibration.chosen_by,
        scale=calibration.scale,
        shift=calibration.shift,
        valid_log_loss_before=metrics.log_loss(y["valid"], before["valid"]),
        valid_log_loss_after=metrics.log_loss(y["valid"], after["valid"]),
        test_ece_before=metrics.ece(y["test"], before["test"]),
        test_ece_after=metrics.ece(y["test"], after["test"]),
    )
    if ctx.is_main:
        log.info(
            "calibration %s (%s): valid log loss %.5f -> %.5f, test ECE %.4f -> %.4f",
            summary.method, summary.chosen_by, summary.valid_log_loss_before,
            summary.valid_log_loss_after, summary.test_ece_before, summary.test_ece_after,
        )  # fmt: skip
    return model, after, before["test"], summary


def evaluate(
    trained: Trained,
    data: Prepared,
    cfg: TrainConfig,
    ctx: DistContext,
    recipe: RecipeSummary | None = None,
) -> Evaluation:
    """Whole-split metrics from gathered predictions; the Bayes-optimal AUC when the true PDs are
    known; how training went (and how ``recipe=auto`` chose the recipe); the split and the data
    fingerprint."""
    held, batch = data.evaluation, cfg.trainer.eval_batch_size
    y = {p: ctx.allgather_array(data.tensors(p).y.numpy().astype(int)) for p in ("valid", "test")}
    model, p, p_test_before, calibration = calibrate(trained.model, data, y, cfg, ctx)
    p_train = predict_pd(model, *data.training.sample_x, batch)
    test = Metrics.from_dict(metrics.evaluate(y["test"], p["test"]), "report.test")
    ci = metrics.bootstrap_ci(y["test"], p["test"], seed=cfg.seed) if ctx.is_main else None
    bayes = None
    if held.pd_true is not None:
        bayes = metrics.auc(y["test"], ctx.allgather_array(held.pd_true))
    decision, monotone, explain = decision_parts(cfg, data, model, p_train, ctx)
    fairness = fairness_on_test_rows(cfg, held, y["test"], p["test"], ctx)
    gbdt = gbdt_benchmark(cfg.benchmark, data, ctx)
    gbdt = Benchmark.from_dict(gbdt, "report.benchmark") if gbdt is not None else None
    report = Report(
        test=test,
        test_ci=Intervals.from_dict(ci, "report.test_ci") if ci is not None else None,
        valid=Metrics.from_dict(metrics.evaluate(y["valid"], p["valid"]), "report.valid"),
        psi_train_test=metrics.psi(p_train, p["test"]),
        bayes_auc_test=bayes,
        monotonicity=monotone,
        explain=explain,
        calibration=calibration,
        fairness=fairness,
        training=Training.from_dict(trained.result.summary() | {"world_size": trained.world_size}),
        recipe=recipe,
        # one line per member of an ensemble: its seed and how its training went
        ensemble=[ensemble_member(m) for m in trained.ensemble] or None,
        benchmark=gbdt,
        lift=Lift(auc=test.auc - gbdt.test.auc, ks=test.ks - gbdt.test.ks) if gbdt else None,
        split=SplitSummary.from_dict(
            summary(held.labels, held.split, cfg.data.split), "report.split"
        ),
        data=data_summary(data),
        data_fingerprint=data.training.fingerprint,
    )
    if ctx.is_main:
        log.info(
            "test auc %.4f%s%s",
            test.auc,
            f"  (Bayes-optimal {bayes:.4f})" if bayes is not None else "",
            f"  (LightGBM {gbdt.test.auc:.4f}, lift {report.lift.auc:+.4f})" if gbdt else "",
        )
    return Evaluation(report, model, y["test"], p["test"], p_test_before, decision)


def data_summary(data: Prepared) -> DataSummary:
    """What was read: the file, its rows, the columns left out, and a book's event sources."""
    held = data.evaluation
    sources = held.sources or {}
    return DataSummary(
        source=held.source,
        rows=len(held.labels),
        unused_columns=held.unused,
        protected=list(data.training.schema.protected),
        sources={name: SourceCoverage(**counts) for name, counts in sources.items()} or None,
    )


def fairness_on_test_rows(
    cfg: TrainConfig, data: EvaluationData, y: np.ndarray, p: np.ndarray, ctx: DistContext
) -> Fairness | None:
    """The fairness table of the test rows (``y``, ``p``: every rank's, in global order), when
    the data declare protected columns."""
    if not data.groups:
        return None
    # every rank's test rows' groups, in global order as the PDs are
    groups = {c: ctx.allgather_array(g) for c, g in data.groups.items()}
    fair = cfg.fairness
    table = fairness_table(y, p, groups, fair.approve_rate, fair.min_rows)
    return Fairness.from_dict(table, "report.fairness")


def decision_parts(
    cfg: TrainConfig, data: Prepared, model: torch.nn.Module, p_train: np.ndarray, ctx: DistContext
) -> tuple[dict, dict[str, MonotoneCheck], Completeness | None]:
    """What the bundle stores to turn a PD into a decision (the score scale, the reasons'
    settings and reference rows, the training scores' deciles), and the report's checks of it:
    monotone directions on test rows, and the reasons' completeness (rank 0; None elsewhere)."""
    fitted, test = data.training, data.tensors("test")
    schema, pre = fitted.schema, fitted.pre
    decision = make_decision(
        cfg.score, cfg.explain, *fitted.sample_x, p_train, fitted.feature_reference, cfg.seed
    )
    monotone = {
        name: MonotoneCheck.from_dict(m, f"report.monotonicity.{name}")
        for name, m in monotonicity(model, test, pre, schema, ctx).items()
    }
    explain = None
    if ctx.is_main:
        explainer = Explainer(model, pre, schema, decision["reference"], cfg.explain)
        explain = Completeness.from_dict(completeness(explainer, test), "report.explain")
        wrong = sum(m.violations for m in monotone.values())
        log.info(
            "monotone features: %d, rows moved the wrong way: %d; reasons' completeness error "
            "max %.2g logits (tolerance %g)",
            len(monotone), wrong, explain.max_abs_error, cfg.explain.tolerance,
        )  # fmt: skip
        if not explain.passed:
            log.warning(
                "the reasons do not add up within explain.tolerance=%g: the card says FAILED and "
                "jobs.promote refuses this version (promotion.check_reasons)",
                cfg.explain.tolerance,
            )
    return decision, monotone, explain


def publish(
    cfg: TrainConfig,
    run_dir: RunDir,
    data: Prepared,
    evaluation: Evaluation,
    tracker: Tracker,
    trained: Trained,
    tags: dict[str, str],
) -> Report:
    """Rank 0: plots, the model bundle and example predictions in the run folder; all of it, the
    model and the report in MLflow; then the registered version. Returns the finished report, as
    ``evaluation.json`` holds it."""
    report, fitted = evaluation.report, data.training
    schema, pre = fitted.schema, fitted.pre
    tracker.log_metrics(report.flat_metrics(), step=report.training.epochs_run)
    title = f"{cfg.data.name} / {cfg.model.name}"
    save_evaluation_plots(evaluation.test_y, evaluation.test_p, run_dir.plots, title=title,
                          p_before=evaluation.test_p_uncalibrated)  # fmt: skip
    model, extra = evaluation.model, {"metrics": report.test.to_dict(), **tags}
    bundle = {"model": model, "members": trained.members, "pre": pre, "schema": schema,
              "decision": evaluation.decision}  # fmt: skip
    run_dir.write_folder(run_dir.bundle, lambda tmp: save_bundle(tmp, **bundle, extra=extra))
    flat = data.evaluation.frames["test"][schema.names()].head(5)
    x_num, x_cat = (torch.from_numpy(x) for x in pre.transform(flat))
    examples = {
        "columns": list(flat.columns),
        "data": json.loads(flat.to_json(orient="values")),
        "pd": predict_pd(model, x_num, x_cat).tolist(),
    }
    tracker.log_artifact(run_dir.write_json("example_predictions.json", examples))
    tracker.log_artifact(run_dir.path / "config.yaml")
    tracker.log_artifact(run_dir.plots, "plots")

    model_uri = tracker.log_model(run_dir.bundle, schema, data.evaluation.example)
    registered = register(cfg, tracker, model_uri, tags | report.version_tags(), report)
    report = dataclasses.replace(
        report,
        run_key=tracker.key,
        run_id=tracker.run_id,
        model_uri=model_uri,
        registered=registered,
    )
    tracker.log_artifact(run_dir.write_report(report))
    for path in model_card(report, run_dir, title, tags["git_commit"]):
        tracker.log_artifact(path)
    return report


def register(
    cfg: TrainConfig, tracker: Tracker, model_uri: str | None, tags: dict[str, str], report: Report
) -> Registered | None:
    """A new version of ``cfg.registry.name`` tagged with the run's tags and ``VERSION_METRICS``
    (the store's run id is added when the version is made); None when registry.register=false."""
    if not cfg.registry.register:
        return None
    name = cfg.registry.name
    alias, why = cfg.registry.alias_after(report.training.epochs_run)
    version = tracker.register(model_uri, name, alias, tags)
    log.info(
        "registered %s version %s %s",
        name,
        version or "(pending: sent when the tracking store answers)",
        f"as @{alias}" if alias else f"(@{cfg.registry.alias} not moved: {why})",
    )
    return Registered(name=name, version=version, alias=alias)


def model_card(report: Report, run_dir: RunDir, title: str, commit: str) -> tuple[Path, Path]:
    """The run's model card, Markdown and self-contained HTML (``training/governance/card.py``), in the run
    folder; MLflow gets them beside ``plots/``, so a registered version's run carries its card."""
    return write_card(
        report, run_dir.plots, run_dir.path,
        config_text=(run_dir.path / "config.yaml").read_text(),
        command=shlex.join(["python", "-m", "jobs.train", *sys.argv[1:]]),
        title=title, commit=commit, date=datetime.now().strftime("%Y-%m-%d %H:%M"),
    )  # fmt: skip
