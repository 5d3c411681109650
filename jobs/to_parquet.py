"""Convert a lender's CSV book to Parquet part files: ``python -m jobs.to_parquet input=... output=...``.

A CSV is read whole by every rank; a Parquet book is read by each rank for its own row groups
only. Convert once, then point the data config at the folder (``format: parquet``,
``path: <output>``); the config's parsing (percent strings, sentinels, labels) reads it the same.

Options (``key=value``): input, output, rows_per_file, row_group_size, sort_by.

A book's event table is best converted with ``sort_by=<its key column>``: a borrower's events
then lie in few row groups, and each rank reads only the row groups of its own borrowers (the
loan table in key order too, as ``jobs.make_portfolio`` writes it: a rank's loans are a range
of rows, so a range of keys).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from training.config import asks_for_help, from_options
from training.constants import EXIT_OK, EXIT_USER_ERROR
from training.data.parquet import csv_to_parquet
from training.errors import DataError, RiskbrainError


@dataclass(kw_only=True)
class ConvertConfig:
    input: str = MISSING
    output: str = MISSING
    rows_per_file: int = 1_000_000
    row_group_size: int = 131_072
    sort_by: str | None = None  # a column to order the rows by: an event table's key


def main(argv: list[str]) -> int:
    if asks_for_help(argv, __doc__):
        return EXIT_OK
    try:
        cfg: ConvertConfig = from_options(ConvertConfig, argv)
        source, output = Path(cfg.input), Path(cfg.output)
        if not source.is_file():
            raise DataError(f"input={source}: no such file")
        if any(output.glob("*.parquet")):
            raise DataError(f"output={output} already holds Parquet files: choose an empty folder")
        out = csv_to_parquet(source, output, rows_per_file=cfg.rows_per_file,
                             row_group_size=cfg.row_group_size, sort_by=cfg.sort_by)  # fmt: skip
    except RiskbrainError as e:
        print(f"to_parquet: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    kept = f"; kept as text: {out['text_columns']}" if out["text_columns"] else ""
    kept += f"; sorted by {out['sorted_by']}" if out.get("sorted_by") else ""
    print(
        f"wrote {out['rows']:,} rows in {out['files']} files to {out['output']} in {out['seconds']:.1f} s{kept}"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
