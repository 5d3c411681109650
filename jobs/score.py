"""Score a portfolio with a registered model: ``python -m jobs.score model=... input=... output=...``.

    python -m jobs.score model=models:/credit-risk-synthetic_sme@challenger input=book.csv output=scores
    mpirun -n 8 python -m jobs.score launcher=mpi model=... input=/scratch/book output=/scratch/scores
    sbatch slurm/score_mpi.sbatch model=... input=... output=...

Each rank scores its own chunks of the input and writes its own part files
(``training/scoring/portfolio.py``); rank 0 gathers the counts, writes ``<output>.summary.json`` and logs
the scoring run to MLflow. This file owns the options, the ranks, and MLflow's model loading.

Options (``key=value``): model, input (CSV file, Parquet file or folder), output (a new
folder), rejects (default ``<output>.rejects``), keep=[col,...], reasons (default 4; 0 = none),
chunk_rows, sep, launcher (local | mpi), threads, tracking_uri, experiment (default scoring).
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import MISSING

from training.config import TrackingConfig, from_options
from training.constants import EXIT_FAILED, EXIT_USER_ERROR
from training.runtime.dist import DistContext
from training.errors import ConfigError, RiskbrainError, check
from training.launch import mpi_world
from training.runtime.process import setup_process
from training.scoring.portfolio import (
    Agreed,
    ModelRef,
    ParquetInput,
    ScoringModel,
    ScoringProgress,
    agree,
    check_columns,
    check_fresh,
    describe,
    gather_summary,
    log_scoring_run,
    open_input,
    score_shard,
    write_summary,
)
from training.tracking.tracker import tracking_uri


@dataclass(kw_only=True)
class ScoreConfig:
    model: str = MISSING
    input: str = MISSING
    output: str = MISSING
    rejects: str | None = None
    keep: list[str] = field(default_factory=list)
    reasons: int = 4
    chunk_rows: int = 65_536
    sep: str = ","
    launcher: str = "local"
    threads: int = 0
    tracking_uri: str | None = None
    experiment: str = "scoring"

    def __post_init__(self) -> None:
        check(self.reasons >= 0, "reasons", self.reasons, "must be >= 0 (0: no reasons)")
        check(self.chunk_rows > 0, "chunk_rows", self.chunk_rows, "must be > 0")
        check(self.launcher in ("local", "mpi"), "launcher", self.launcher, "must be local or mpi")
        check(self.threads >= 0, "threads", self.threads, "must be >= 0 (0: automatic)")

    def paths(self) -> dict[str, Path]:
        output = Path(self.output).resolve()
        rejects = Path(self.rejects).resolve() if self.rejects else Path(f"{output}.rejects")
        return {
            "input": Path(self.input).resolve(),
            "output": output,
            "rejects": rejects,
            "summary": Path(f"{output}.summary.json"),
        }


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    rank, _ = mpi_world()
    ctx = None
    try:
        cfg: ScoreConfig = from_options(ScoreConfig, argv)
        ctx = open_context(cfg)
        return run(cfg, ctx)
    except (Agreed, RiskbrainError) as e:  # the same on every rank: each exits, none waits
        if ctx is not None and ctx.world_size > 1 and not isinstance(e, Agreed):
            abort(ctx, e)
        if rank == 0:
            print(f"score: {e}", file=sys.stderr)
        return e.code if isinstance(e, Agreed) else EXIT_USER_ERROR
    except BaseException as e:
        if ctx is not None and ctx.world_size > 1:
            abort(ctx, e)
        raise


def run(cfg: ScoreConfig, ctx: DistContext) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    store = tracking_uri(TrackingConfig(uri=cfg.tracking_uri, experiment=cfg.experiment))
    paths = cfg.paths()
    # Rank 0 resolves the alias once: every rank loads the same version even if it moves now.
    ref = ctx.broadcast(agree(ctx, lambda: plan(cfg, paths, store) if ctx.is_main else None))
    model, source = agree(ctx, lambda: prepare(cfg, paths, ref, store))
    if ctx.is_main:
        paths["output"].mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    total = source.rows_of(ctx.rank, ctx.world_size) if isinstance(source, ParquetInput) else None
    progress = ScoringProgress(ctx, total)
    tally = score_shard(source, model, output=paths["output"], rejects=paths["rejects"],
                        keep=cfg.keep, ctx=ctx, progress=progress)  # fmt: skip
    progress.close(tally)
    summary = gather_summary(ctx, tally, model)
    if ctx.is_main:
        publish(summary, cfg, paths, store)
    ctx.barrier()  # no rank exits before rank 0 has logged the run
    return 0


def plan(cfg: ScoreConfig, paths: dict[str, Path], store: str) -> ModelRef:
    """Rank 0, before anything is written: fresh output places, the model version pinned."""
    check_fresh(paths["output"], paths["rejects"], paths["summary"])
    return resolve(cfg.model, store)


def prepare(cfg: ScoreConfig, paths: dict[str, Path], ref: ModelRef, store: str):
    """Every rank: the pinned model, and the input, checked against the model's columns."""
    model = load_model(ref, store, cfg.reasons)
    source = open_input(paths["input"], cfg.chunk_rows, cfg.sep)
    check_columns(source.columns, model, cfg.keep)
    return model, source


def publish(summary: dict, cfg: ScoreConfig, paths: dict[str, Path], store: str) -> None:
    """Rank 0: the scoring run in MLflow, the summary beside the output, and where it all went."""
    summary["paths"] = {k: str(v) for k, v in paths.items()}
    summary["settings"] = {"reasons": cfg.reasons, "chunk_rows": cfg.chunk_rows,
                           "keep": ",".join(cfg.keep), "launcher": cfg.launcher}  # fmt: skip
    summary["experiment"] = cfg.experiment
    summary["mlflow_run_id"] = log_scoring_run(
        summary, tracking_uri=store, experiment=cfg.experiment
    )
    write_summary(summary, paths["summary"])
    print(describe(summary), flush=True)


def open_context(cfg: ScoreConfig) -> DistContext:
    """This process's place among the ranks: one process (local) or the MPI world (mpi)."""
    _, size = mpi_world()
    if cfg.launcher == "local":
        if size > 1:
            raise ConfigError(
                f"config launcher=local: started as {size} MPI ranks; add launcher=mpi"
            )
        setup_process(cfg.threads)
        return DistContext()
    import torch
    from mpi4py import MPI

    from training.launch.mpi import MPIContext, _local_rank_and_size

    local_rank, local_size = _local_rank_and_size()
    setup_process(cfg.threads, local_size)
    return MPIContext(MPI.COMM_WORLD, "mpi", torch.device("cpu"), local_rank)


def abort(ctx: DistContext, e: BaseException) -> None:
    """A failure on one rank while the others score: end every rank now (MPI_Abort)."""
    detail = "" if isinstance(e, RiskbrainError) else "\n" + traceback.format_exc()
    print(
        f"riskbrain: rank {ctx.rank} of {ctx.world_size} failed: {type(e).__name__}: {e}{detail}",
        file=sys.stderr,
        flush=True,
    )
    ctx.comm.Abort(EXIT_USER_ERROR if isinstance(e, RiskbrainError) else EXIT_FAILED)


# ---------------------------------------------------------------------------------------------
# MLflow: the registry entry behind a models:/ URI, and the loaded model as a ScoringModel


def resolve(uri: str, store: str) -> ModelRef:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` pinned to its version, with the
    run that logged it; any other URI is loaded as given, without a registry link."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    path = uri.removeprefix("models:/")
    name, alias = path.split("@", 1) if "@" in path else (path, None)
    version = None if alias else path.rpartition("/")[2]
    if path == uri or not (alias or version.isdigit()):
        return ModelRef(uri=uri, pinned=uri)
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    try:
        if alias:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(path.rpartition("/")[0], version)
    except MlflowException as e:
        raise ConfigError(f"config model={uri}: {e.message} (store {store})") from None
    return ModelRef(
        uri=uri,
        pinned=f"models:/{mv.name}/{mv.version}",
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
    )


def load_model(ref: ModelRef, store: str, reasons: int) -> ScoringModel:
    """The pyfunc at ``ref.pinned``: its signature's columns, ``predict`` with ``reasons`` when
    the model declares that param, and its training-score reference when it carries one."""
    import mlflow

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    model = mlflow.pyfunc.load_model(ref.pinned)
    meta = model.metadata
    if meta.get_input_schema() is None:
        raise ConfigError(
            f"config model={ref.uri}: the model has no signature to read columns from"
        )
    inputs = {c.name: c.type.name for c in meta.get_input_schema().inputs}
    outputs = meta.get_output_schema().input_names() if meta.get_output_schema() else ["pd"]
    declared = meta.get_params_schema()
    takes_reasons = declared is not None and "reasons" in [p.name for p in declared.params]
    params = {"reasons": reasons} if takes_reasons else None
    notes = []
    if reasons and not takes_reasons:
        notes.append(
            f"the model declares no `reasons` param: scored without reasons ({reasons} asked)"
        )
    try:
        scorer = model.unwrap_python_model().scorer
    except Exception:  # not a Python model, or one without a scorer: no references
        scorer = None

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(model.predict(frame, params=params))

    return ScoringModel(
        predict=predict,
        inputs=inputs,
        outputs=outputs,
        ref=ref,
        score_reference=getattr(scorer, "score_reference", None),
        feature_reference=getattr(scorer, "feature_reference", None),
        notes=notes,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
