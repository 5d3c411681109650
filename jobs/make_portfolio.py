"""Write the synthetic SME book as Parquet part files: ``python -m jobs.make_portfolio n_rows=... output=...``.

The book is the generator's rows for ``seed`` (the same rows as ``data=synthetic``), so the scale
path (a rank reading only its row groups) is tested on files. Train on it with

    python -m jobs.train data=portfolio data.path=<output>

Options (``key=value``): n_rows, output, seed, rows_per_file, row_group_size, workers.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from training.config import asks_for_help, from_options
from training.constants import EXIT_OK, EXIT_USER_ERROR
from training.data.parquet import write_synthetic_book
from training.errors import RiskbrainError, check


@dataclass(kw_only=True)
class PortfolioConfig:
    n_rows: int = 1_000_000
    output: str = "portfolio"
    seed: int = 0
    rows_per_file: int = 1_000_000
    row_group_size: int = 131_072
    workers: int = os.cpu_count() or 1

    def __post_init__(self) -> None:
        for key in ("n_rows", "rows_per_file", "row_group_size", "workers"):
            check(getattr(self, key) > 0, key, getattr(self, key), "must be > 0")


def main(argv: list[str]) -> int:
    if asks_for_help(argv, __doc__):
        return EXIT_OK
    try:
        cfg: PortfolioConfig = from_options(PortfolioConfig, argv)
        out = write_synthetic_book(
            Path(cfg.output), cfg.n_rows, seed=cfg.seed, rows_per_file=cfg.rows_per_file,
            row_group_size=cfg.row_group_size, workers=cfg.workers,
        )  # fmt: skip
    except RiskbrainError as e:
        print(f"make_portfolio: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(
        f"wrote {out['rows']:,} rows in {out['files']} files ({out['bytes'] / 2**20:.0f} MiB) to "
        f"{out['output']} in {out['seconds']:.1f} s ({out['rows_per_s'] / 1e6:.2f} M rows/s)"
    )
    print(
        f"train on it: python -m jobs.train data=portfolio data.path={Path(out['output']).resolve()}"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
