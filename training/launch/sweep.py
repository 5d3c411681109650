"""Hyperparameter sweeps: Ray Tune with Optuna TPE (or random search) and ASHA early stopping.

Every trial is the same ``pipeline.run`` as a plain job, logged as a child of one MLflow parent
run; trials report each epoch's validation metrics to Tune, and ASHA stops the weak ones (their
runs end KILLED with the tag ``pruned=true``). Trials log over HTTP to one tracking server (a
local ``mlflow server`` is started when the store is a SQLite file: concurrent SQLite writers hit
"database is locked"). At the end the best trial's model is registered with the alias, a table
of trials is printed and logged, and a plot of the objective over trials is logged.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from training.config import TrainConfig, to_config, to_dict
from training.launch.config import ParamType, RayLauncherConfig, Scheduler, Search, SweepConfig
from training.report import Report
from training.runtime.preemption import Preempted
from training.runtime.process import scoped_env
from training.tracking.tracker import Tracker, ensure_experiment, open_job_run, open_run

log = logging.getLogger("riskbrain")

# Marks the result a trial returns once its run is evaluated, apart from its epochs' reports
# (not "done": Tune sets that on every trial's last result).
EVALUATED = "evaluated"


class SweepInterrupted(Preempted):
    """The sweep stopped before every trial ended; its state is saved for a resume."""


def search_space(sweep: SweepConfig) -> dict[str, Any]:
    from ray import tune

    space = {}
    for name, p in sweep.params.items():
        if p.type == ParamType.choice:
            space[name] = tune.choice(list(p.choices))
        elif p.type == ParamType.int:
            space[name] = (tune.lograndint if p.log else tune.randint)(int(p.low), int(p.high) + 1)
        else:
            space[name] = (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
    return space


def trial_config(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """The base config with a trial's values, validated like any job's; trials never register."""
    node = OmegaConf.structured(base)
    for key, value in params.items():
        OmegaConf.update(node, key, value, merge=False)
    cfg = to_config(node)
    # Tune restarts a lost trial from scratch, so trials keep no checkpoints.
    return dataclasses.replace(
        cfg,
        registry=dataclasses.replace(cfg.registry, register=False),
        checkpoint=dataclasses.replace(cfg.checkpoint, every_epochs=0, every_steps=0, resume=False),
    )


def _trial(
    params: dict[str, Any], *, base: TrainConfig, sweep_dir: str, parent_run_id: str
) -> dict[str, Any]:
    """One Tune trial: the ordinary training run, reporting each epoch to the scheduler.

    Returns its final result (Tune reports it as one more row, marked ``evaluated``): the objective of
    the final model, its run and model URI.
    """
    from ray import tune

    from training.core.pipeline import run
    from training.core.run_dir import RunDir
    from training.runtime.process import setup_process

    setup_process(max(1, int(base.sweep.cpus_per_trial)))
    cfg = trial_config(base, params)
    out_dir = Path(sweep_dir) / "trials" / tune.get_context().get_trial_id()
    if (report := RunDir(out_dir).finished_report()) is not None:
        # It finished before the sweep was interrupted, but after Tune last saved its state:
        # its result again (one row for the scheduler: its final model's), not a second run.
        result = trial_result(report, base.sweep.metric)
        tune.report({base.sweep.metric: result[base.sweep.metric],
                     "epoch": report.training.epochs_run if report.training else 0})  # fmt: skip
        return result
    if out_dir.exists():
        # An attempt cut short (the sweep interrupted, then resumed): Tune runs the trial again
        # from scratch, so it starts in a fresh folder, with a journal of its own (the earlier
        # one is synced to the earlier sweep's server); the earlier folder stays beside it.
        out_dir.rename(out_dir.with_name(f"{out_dir.name}.interrupted-{time.time_ns()}"))
    report = run(
        cfg,
        out_dir,
        parent_run_id=parent_run_id,
        on_epoch=lambda epoch, row: tune.report({**row, "epoch": epoch}),
    )
    return trial_result(report, base.sweep.metric)


def trial_result(report: Report, metric: str) -> dict[str, Any]:
    """What a trial returns to Tune once its run is evaluated: the objective (``metric``, a
    validation metric of the final model: valid_auc is ``report.valid.auc``), its run and model."""
    return {
        metric: getattr(report.valid, str(metric).removeprefix("valid_")),
        EVALUATED: 1,
        "run_id": report.run_id,
        "model_uri": report.model_uri,
    }


@contextlib.contextmanager
def tracking_server(uri: str, root: Path) -> Iterator[str]:
    """An HTTP tracking URI for concurrent trials: ``uri`` itself, or a local server over its SQLite file."""
    if not uri.startswith("sqlite:"):
        yield uri
        return
    from training.tracking.server import serve

    with serve(uri, root) as http_uri:
        yield http_uri


def run_sweep(cfg: TrainConfig, sweep_dir: Path) -> dict:
    """Run (or resume) the sweep in ``sweep_dir`` under one MLflow parent run; returns its report."""
    sweep = cfg.sweep
    sweep_dir = sweep_dir.resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # The experiment is created against the store itself, so artifacts go to a folder on disk
    # (not through the temporary server) and stay readable after the sweep.
    store = ensure_experiment(cfg.tracking)
    with tracking_server(store, sweep_dir) as uri, scoped_env({"MLFLOW_TRACKING_URI": uri}):
        # Ray workers inherit the environment; it is restored when the sweep ends. Trials share
        # one split, so they share one fitted LightGBM benchmark (the first fits it).
        cache = cfg.benchmark.cache or str(sweep_dir / "benchmark")
        base = dataclasses.replace(
            cfg,
            tracking=dataclasses.replace(cfg.tracking, uri=uri),
            benchmark=dataclasses.replace(cfg.benchmark, cache=cache),
        )
        parent_file = sweep_dir / "parent_run_id"
        parent_id = parent_file.read_text().strip() if parent_file.is_file() else None
        with open_run(base.tracking, name=f"sweep-{sweep.name}", resume_id=parent_id) as parent:
            parent_file.write_text(parent.run_id)
            if parent_id is None:
                parent.set_tags(
                    {"sweep": sweep.name, "sweep.metric": sweep.metric, "dataset": cfg.data.name}
                )
                parent.log_dict(to_dict(sweep), "sweep.json")
            log.info("sweep %s: parent run %s at %s", sweep.name, parent.run_id, uri)
            grid = tune_trials(base, sweep_dir, parent.run_id)
            if interrupted(grid, sweep):  # the parent run ends KILLED; nothing is registered
                raise SweepInterrupted(
                    f"sweep {sweep.name} interrupted after {grid.num_terminated} of {sweep.num_samples} trials; "
                    f"run the same command again to resume it ({sweep_dir})"
                )
            trials = summarise(grid, sweep, parent)
            return finish(base, trials, sweep_dir, parent)


def tune_trials(base: TrainConfig, sweep_dir: Path, parent_run_id: str):
    """Run the trials with Ray Tune (resuming a saved Tune state); returns Tune's ResultGrid."""
    import ray
    from ray import tune

    sweep = base.sweep
    address = base.launcher.address if isinstance(base.launcher, RayLauncherConfig) else None
    ray.init(
        address=address or os.environ.get("RAY_ADDRESS"),
        include_dashboard=True,  # a local cluster's state API, as launcher=ray starts it
        ignore_reinit_error=True,
    )
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial, base=base, sweep_dir=str(sweep_dir), parent_run_id=parent_run_id
        ),
        {"cpu": sweep.cpus_per_trial},
    )
    tune_dir = sweep_dir / "tune" / sweep.name
    if tune.Tuner.can_restore(str(tune_dir)):
        log.info("resuming the sweep from %s (finished trials are not run again)", tune_dir)
        tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(sweep),
            tune_config=tune_config(sweep, base.trainer.max_epochs),
            run_config=tune.RunConfig(name=sweep.name, storage_path=str(tune_dir.parent)),
        )
    grid = tuner.fit()
    ray.shutdown()
    log.info(
        "tune: %d trials, %d terminated, %d errors", len(grid), grid.num_terminated, grid.num_errors
    )
    return grid


def tune_config(sweep: SweepConfig, max_epochs: int):
    """The search (Optuna TPE, capped concurrency; or random), the scheduler and the budget."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = None
    if sweep.search == Search.tpe:
        searcher = ConcurrencyLimiter(
            OptunaSearch(seed=sweep.seed), max_concurrent=sweep.max_concurrent
        )
    # max_t one past the last epoch: ASHA stops a trial once it reaches max_t, and a trial that
    # trains every epoch must still get to evaluate and log its model.
    scheduler = FIFOScheduler()
    if sweep.scheduler == Scheduler.asha:
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_epochs + 1,
            grace_period=sweep.grace_period,
            reduction_factor=sweep.reduction_factor,
        )
    return tune.TuneConfig(
        metric=sweep.metric,
        mode=sweep.mode,
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=sweep.num_samples,
        max_concurrent_trials=sweep.max_concurrent,
        time_budget_s=sweep.time_budget_s,
        # A finished trial's process runs the next: torch, MLflow and the rest are imported once
        # per process, not once per trial (most of a short trial's time).
        reuse_actors=True,
    )


def interrupted(grid, sweep: SweepConfig) -> bool:
    """Ctrl-C makes Tune save its state and return early: trials unfinished, or fewer than asked
    for (unless a time budget ended the sweep)."""
    unfinished = len(grid) - grid.num_terminated - grid.num_errors
    return unfinished > 0 or (sweep.time_budget_s is None and len(grid) < sweep.num_samples)


def summarise(grid, sweep: SweepConfig, parent: Tracker) -> list[dict]:
    """One row per trial, best first: params, best objective over its epochs, epochs, status,
    and for a completed trial the run and model it returned; pruned runs are marked."""
    better = max if sweep.mode == "max" else min
    rows = []
    for result in grid:
        final = result.metrics or {}
        history = result.metrics_dataframe
        if history is not None and EVALUATED in history:
            history = history[history[EVALUATED] != 1]  # the epochs, without the returned result
        values = (
            history[sweep.metric].tolist()
            if history is not None and sweep.metric in history
            else []
        )
        completed = final.get(EVALUATED) == 1
        rows.append(
            {
                "trial": str(final.get("trial_id", "?")),
                "status": "error" if result.error else ("completed" if completed else "pruned"),
                "epochs": len(values),
                "objective": better(values) if values else float("nan"),
                # unix time of its last report
                "finished_at": float(history["timestamp"].iloc[-1]) if values else None,
                "run_id": final.get("run_id") if completed else None,
                "model_uri": final.get("model_uri") if completed else None,
                **{f"param.{k}": v for k, v in (result.config or {}).items()},
            }
        )
    # A trial ASHA stopped was interrupted inside its run (which then ended FAILED or stayed
    # RUNNING): mark its run as pruned and KILLED, so only real errors read as FAILED.
    pruned = {row["trial"] for row in rows if row["status"] == "pruned"}
    for run_id, tags in parent.children():
        if Path(tags.get("output_dir", "")).name in pruned:
            parent.end_child(run_id, "KILLED", {"pruned": "true"})
    sign = -1 if sweep.mode == "max" else 1
    return sorted(rows, key=lambda r: (r["objective"] != r["objective"], sign * r["objective"]))


def finish(cfg: TrainConfig, trials: list[dict], sweep_dir: Path, parent: Tracker) -> dict:
    """The trials table and plot (printed, saved, logged); the best completed trial registered."""
    sweep = cfg.sweep
    table = sweep_dir / "trials.csv"
    keys = sorted({k for row in trials for k in row}, key=lambda k: (k.startswith("param."), k))
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(trials)
    parent.log_artifact(table)
    parent.log_artifact(plot_objective(trials, sweep, sweep_dir / "objective.png"))
    print_table(trials, sweep)

    completed = [t for t in trials if t["status"] == "completed" and t["model_uri"]]
    report: dict[str, Any] = {
        "sweep": sweep.name,
        "parent_run_id": parent.run_id,
        "trials": len(trials),
        "pruned": sum(t["status"] == "pruned" for t in trials),
    }
    if not completed:
        log.warning("no trial completed: nothing to register")
        return report
    best = report["best"] = completed[0]
    parent.log_metrics({f"best_{sweep.metric}": best["objective"]})
    parent.set_tags({"best_trial": best["trial"], "best_run_id": best["run_id"]})
    if sweep.ensemble_top_k > 1 and len(completed) > 1:
        top = completed[: sweep.ensemble_top_k]
        ensemble = register_ensemble(cfg, top, sweep_dir, parent)
        report["ensemble"] = ensemble.to_dict()
        report["registered"] = ensemble.registered.to_dict() if ensemble.registered else None
    elif cfg.registry.register:
        tags = {"sweep": sweep.name, "run_id": best["run_id"], "parent_run_id": parent.run_id}
        tags[sweep.metric] = f"{best['objective']:.4f}"
        alias, why = cfg.registry.alias_after(best["epochs"])
        version = parent.register(best["model_uri"], cfg.registry.name, alias, tags)
        report["registered"] = {"name": cfg.registry.name, "version": version, "alias": alias}
        log.info(
            "registered the best trial %s (%s %.4f) as %s version %s %s",
            best["trial"],
            sweep.metric,
            best["objective"],
            cfg.registry.name,
            version,
            f"@{alias}" if alias else f"(@{cfg.registry.alias} not moved: {why})",
        )
    (sweep_dir / "sweep.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def register_ensemble(
    cfg: TrainConfig, top: list[dict], sweep_dir: Path, parent: Tracker
) -> Report:
    """The mean of the ``top`` trials' networks as one model: evaluated on the sweep's own test
    rows (and against the GBDT benchmark), logged as a child run of the sweep and registered."""
    from training.core.parallel import Trained
    from training.core.pipeline import evaluate, publish, run_tags
    from training.core.run_dir import RunDir
    from training.core.state import FitResult
    from training.data.prepare import prepare
    from training.models.ensemble import Ensemble
    from training.runtime.dist import DistContext
    from training.serving.bundle import Scorer

    scorers = [Scorer(RunDir(sweep_dir / "trials" / t["trial"]).bundle) for t in top]
    model = Ensemble([s.network for s in scorers])  # calibrated as one, in its evaluation
    members = [m for s in scorers for m in s.members]
    listed = [
        {"trial": t["trial"], "run_id": t["run_id"], cfg.sweep.metric: t["objective"]} for t in top
    ]
    # Every trial fits the same preprocessing on the same rows, so one preprocessor serves all.
    data, ctx, run_dir = (
        prepare(cfg.data, benchmark_rows=cfg.benchmark.rows),
        DistContext(),
        RunDir(sweep_dir / "ensemble"),
    )
    run_dir.start(cfg)
    # Its members' training, for the report: the fewest epochs any of them trained.
    result = FitResult(epochs_run=min(t["epochs"] for t in top))
    trained = Trained(model, members, result, world_size=1, ensemble=listed)
    name = f"sweep-{cfg.sweep.name}-top{len(top)}"
    tags = run_tags(cfg, data, ctx) | {"sweep": cfg.sweep.name, "ensemble_of": str(len(top))}
    with open_job_run(
        cfg.tracking, run_dir.path, name=name, tags=tags | {"output_dir": str(run_dir.path)},
        parent_id=parent.run_id,
    ) as tracker:  # fmt: skip
        evaluation = evaluate(trained, data, cfg, ctx)
        report = publish(cfg, run_dir, data, evaluation, tracker, trained, tags)
    run_dir.mark_done(report.run_id or report.run_key)
    log.info(
        "ensemble of the best %d trials: test auc %.4f (best trial alone: see its run %s)",
        len(top),
        report.test.auc,
        top[0]["run_id"],
    )
    return report


def plot_objective(trials: list[dict], sweep: SweepConfig, path: Path) -> Path:
    """The objective of each trial in the order trials finished, with the best so far."""
    from matplotlib.figure import Figure

    done = sorted(
        (t for t in trials if t["finished_at"] is not None and t["objective"] == t["objective"]),
        key=lambda t: t["finished_at"],
    )
    fig = Figure(figsize=(6, 4), dpi=110)
    ax = fig.add_subplot()
    ys = [t["objective"] for t in done]
    best = [max(ys[: i + 1]) if sweep.mode == "max" else min(ys[: i + 1]) for i in range(len(ys))]
    colours = ["tab:blue" if t["status"] == "completed" else "tab:gray" for t in done]
    ax.scatter(range(1, len(ys) + 1), ys, c=colours, label="trial (grey: pruned)")
    ax.step(range(1, len(ys) + 1), best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial (in order of finishing)")
    ax.set_ylabel(sweep.metric)
    ax.set_title(f"sweep {sweep.name}: {sweep.search} + {sweep.scheduler}")
    ax.legend(loc="lower right" if sweep.mode == "max" else "upper right")
    fig.savefig(path)
    return path


def print_table(trials: list[dict], sweep: SweepConfig, top: int = 10) -> None:
    from rich.console import Console
    from rich.table import Table

    params = sorted({k for t in trials for k in t if k.startswith("param.")})
    table = Table(
        title=f"sweep {sweep.name}: best {min(top, len(trials))} of {len(trials)} trials by {sweep.metric}"
    )
    for col in [
        "trial",
        "status",
        "epochs",
        sweep.metric,
        *(p.removeprefix("param.") for p in params),
    ]:
        table.add_column(col)
    for t in trials[:top]:
        table.add_row(
            t["trial"],
            t["status"],
            str(t["epochs"]),
            f"{t['objective']:.4f}",
            *(f"{t[p]:.4g}" if isinstance(t.get(p), float) else str(t.get(p)) for p in params),
        )
    Console(file=sys.stdout).print(table)
