"""Write the synthetic SME book as Parquet part files: ``python -m jobs.make_portfolio n_rows=... output=...``.

The book is the generator's rows for ``seed`` (the same rows as ``data=synthetic``), so the scale
path (a rank reading only its row groups) is tested on files. Train on it with

    python -m jobs.train data=portfolio data.path=<output>

With ``histories=true`` it writes the synthetic SME book of histories instead (a loan table and
tax, court, IP and penalty events per firm, ``training/data/synthetic_book.py``); train on it with

    python -m jobs.train data=sme_histories data.root=<output> data.n_rows=<n_rows>

Options (``key=value``): n_rows, output, seed, rows_per_file, row_group_size, workers, histories.
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
    histories: bool = False  # the book of several tables with dated events

    def __post_init__(self) -> None:
        for key in ("n_rows", "rows_per_file", "row_group_size", "workers"):
            check(getattr(self, key) > 0, key, getattr(self, key), "must be > 0")


def main(argv: list[str]) -> int:
    if asks_for_help(argv, __doc__):
        return EXIT_OK
    try:
        cfg: PortfolioConfig = from_options(PortfolioConfig, argv)
        if cfg.histories:
            return _histories(cfg)
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


def _histories(cfg: PortfolioConfig) -> int:
    from training.data.synthetic_book import write_book

    out = write_book(Path(cfg.output), cfg.n_rows, seed=cfg.seed, workers=cfg.workers)
    print(
        f"wrote {out['loans']:,} loans and {out['events']:,} events to {out['output']} in "
        f"{out['seconds']:.1f} s ({out['events'] / out['seconds'] / 1e6:.2f} M events/s)"
    )
    print(
        f"train on it: python -m jobs.train data=sme_histories "
        f"data.root={Path(out['output']).resolve()} data.n_rows={cfg.n_rows}"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
