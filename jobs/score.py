"""Score a portfolio with a registered model: ``python -m jobs.score model=... input=... output=...``.

    python -m jobs.score model=models:/credit-risk-synthetic_sme@challenger input=book.csv output=scores
    mpirun -n 8 python -m jobs.score launcher=mpi model=... input=/scratch/book output=/scratch/scores
    sbatch slurm/score_mpi.sbatch model=... input=... output=...

Each rank scores its own chunks of the input and writes its own part files; rank 0 gathers the
counts, writes ``<output>.summary.json`` and logs the scoring run to MLflow
(``training/scoring/portfolio.py``). This file owns the options, the ranks and the exit codes.

Options (``key=value``): model, input (CSV file, Parquet file or folder), output (a new
folder), rejects (default ``<output>.rejects``), keep=[col,...], reasons (default 4; 0 = none),
chunk_rows, sep, launcher (local | mpi), threads, timeout_s (mpi: a rank silent this long ends
the job; default 300), tracking_uri, experiment (default scoring).

Exit codes (``training/constants.py``): 0 done, 1 a crash (a rank failed or stopped answering),
2 bad input (the line names the option, the column or the file).
"""

from __future__ import annotations

import shutil
import sys

from training.config import asks_for_help, from_options
from training.constants import EXIT_OK, EXIT_USER_ERROR
from training.errors import ConfigError, RiskbrainError
from training.launch import mpi_world
from training.launch.mpi import abort_all, scoring_context, wait_for_all
from training.runtime.dist import Agreed, DistContext
from training.runtime.process import setup_process
from training.scoring.config import ScoreConfig
from training.scoring.portfolio import score


def main(argv: list[str]) -> int:
    if asks_for_help(argv, __doc__):
        return EXIT_OK
    rank, _ = mpi_world()
    ctx = None
    try:
        cfg: ScoreConfig = from_options(ScoreConfig, argv)
        ctx = open_context(cfg)
        score(cfg, ctx)
        close_context(cfg, ctx)
        return EXIT_OK
    except (Agreed, RiskbrainError) as e:  # the same on every rank: each exits, none waits
        if ctx is not None and ctx.world_size > 1 and not isinstance(e, Agreed):
            abort_all(ctx.comm, e)
        if rank == 0:
            print(f"score: {e}", file=sys.stderr)
        return e.code if isinstance(e, Agreed) else EXIT_USER_ERROR
    except BaseException as e:
        if ctx is not None and ctx.world_size > 1:
            abort_all(ctx.comm, e)
        raise


def open_context(cfg: ScoreConfig) -> DistContext:
    """This process's place among the ranks: one process (local), or the MPI world (mpi) with a
    watchdog over its collectives, as training's ranks have."""
    _, size = mpi_world()
    if cfg.launcher == "local":
        if size > 1:
            raise ConfigError(
                f"config launcher=local: started as {size} MPI ranks; add launcher=mpi"
            )
        setup_process(cfg.threads)
        return DistContext()
    return scoring_context(cfg.threads, cfg.timeout_s, *cfg.watch_folder())


def close_context(cfg: ScoreConfig, ctx: DistContext) -> None:
    """Every rank's watchdog stopped, then rank 0 removes their state folder."""
    ctx.close()
    if ctx.world_size > 1:
        wait_for_all(ctx.comm)  # unwatched (the watchdogs are closed), without spinning a core
        if ctx.is_main:
            parent, folder = cfg.watch_folder()
            shutil.rmtree(parent / folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
