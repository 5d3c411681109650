"""Parquet books: a rank reads only the row groups of its shard; big books are written fast.

A book is one Parquet file or a folder of part files (hive-style ``key=value/`` folders allowed),
taken as one table in a fixed row order: files sorted by path, row groups in file order. That
order is what makes a sharded read the same rows for any number of ranks.

    python -m jobs.make_portfolio n_rows=10000000 output=/scratch/book   # the synthetic SME book
    python -m jobs.to_parquet input=loans.csv output=/scratch/loans       # a lender's CSV
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from training.errors import DataError


class ParquetBook:
    """A Parquet data set, one file or a folder of part files (hive-style partitions allowed),
    as one table in a fixed row order: files sorted by path, row groups in file order.

    Only the footers are read to count rows, so a rank can read just the row groups that hold
    its rows. Partition values (``year=2019/``) become columns.
    """

    def __init__(self, path: Path) -> None:
        import pyarrow.dataset as pads

        try:
            self.dataset = pads.dataset(str(path), format="parquet", partitioning="hive")
            fragments = sorted(self.dataset.get_fragments(), key=lambda f: f.path)
            # (fragment, row group id, rows) in the book's order
            self.groups = [(f, rg.id, rg.num_rows) for f in fragments for rg in f.row_groups]
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{path}: cannot read as Parquet ({e})") from None
        self.path, self.n_files = path, len(fragments)
        self.columns = list(self.dataset.schema.names)
        self.n_rows = sum(n for _, _, n in self.groups)

    def _groups_in(self, lo: int, hi: int) -> Iterator[tuple[int, object, int, int]]:
        """(first row, fragment, row group id, rows) of each row group holding rows of [lo, hi)."""
        start = 0
        for fragment, group, n in self.groups:
            if start < hi and start + n > lo:
                yield start, fragment, group, n
            start += n

    def describe(self, lo: int, hi: int) -> str:
        groups = list(self._groups_in(lo, hi))
        files = {fragment.path for _, fragment, _, _ in groups}
        return (
            f"rows {lo}-{hi - 1} of {self.n_rows}: {len(groups)} of {len(self.groups)} row "
            f"groups in {len(files)} of {self.n_files} files"
        )

    def chunks(
        self, lo: int, hi: int, names: list[str], batch_rows: int
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """Rows [lo, hi) as (global first row, frame) pieces of at most ``batch_rows`` rows,
        reading only the row groups that hold them (and only the columns ``names``)."""
        import pyarrow as pa

        for start, fragment, group, _ in self._groups_in(lo, hi):
            pa.default_memory_pool().release_unused()  # else Arrow's pool keeps the last group's pages
            part = fragment.subset(row_group_ids=[group])
            batches = part.to_batches(
                columns=names, schema=self.dataset.schema, batch_size=batch_rows
            )
            for batch in batches:
                a, b = max(lo - start, 0), min(hi - start, batch.num_rows)
                if a < b:
                    yield start + a, batch.slice(a, b - a).to_pandas()
                start += batch.num_rows


def write_synthetic_book(
    output: Path,
    n_rows: int,
    *,
    seed: int = 0,
    rows_per_file: int = 1_000_000,
    row_group_size: int = 131_072,
    workers: int = 2,
) -> dict:
    """The synthetic SME book (``training/data/synthetic.py``) as ``part-NNNNN.parquet`` files.

    File ``i`` holds rows ``i * rows_per_file ...`` of the generator's stream for ``seed``, so the
    book is the same rows as ``data=synthetic data.n_rows=<n_rows> data.seed=<seed>``. Files are
    generated and written in parallel, one per worker process; written to a temporary name and
    renamed, so a stopped run leaves no half-written part.
    """
    output.mkdir(parents=True, exist_ok=True)
    if any(output.glob("*.parquet")):
        raise DataError(f"{output} already holds Parquet files: choose an empty output folder")
    starts = range(0, n_rows, rows_per_file)
    jobs = [(output, i, lo, min(rows_per_file, n_rows - lo), seed, row_group_size)
            for i, lo in enumerate(starts)]  # fmt: skip
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        written = list(pool.map(_write_part, *zip(*jobs, strict=True)))
    seconds = time.perf_counter() - t0
    return {"output": str(output), "rows": n_rows, "files": len(written),
            "bytes": sum(written), "seconds": seconds, "rows_per_s": n_rows / seconds}  # fmt: skip


def _write_part(output: Path, i: int, start: int, n: int, seed: int, row_group_size: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.data import synthetic

    frame = synthetic.generate(n, seed=seed, start=start).frame
    for name, labels in synthetic.CATEGORIES.items():  # dictionary-encoded: 3x faster to write
        frame[name] = pd.Categorical(frame[name], categories=labels)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    path, tmp = output / f"part-{i:05d}.parquet", output / f".part-{i:05d}.parquet.tmp"
    pq.write_table(
        table, tmp, row_group_size=row_group_size, use_dictionary=list(synthetic.CATEGORIES)
    )
    tmp.rename(path)
    return path.stat().st_size


def csv_to_parquet(
    source: Path,
    output: Path,
    *,
    rows_per_file: int = 1_000_000,
    row_group_size: int = 131_072,
    block_size: int = 64 << 20,
    sort_by: str | None = None,
) -> dict:
    """A CSV book as Parquet part files, streamed (memory: one block, not the file).

    Column types are inferred from the first block; a column whose later rows do not fit its
    inferred type (a number column with ``n/a`` further down) is kept as text, and the data
    config's parsing reads it as for the CSV. With ``sort_by``, the rows are ordered by that
    column (ties in the file's order): an event table sorted by its key puts each borrower's
    events in few row groups, so a rank reads only the row groups of its own borrowers.
    """
    import pyarrow as pa

    text: set[str] = set()
    if sort_by and sort_by not in (header := list(_header(source))):
        raise DataError(f"sort_by={sort_by}: {source} has no such column (columns: {header})")
    parts = output / ".unsorted" if sort_by else output
    while True:  # restart with one more text column each time a later block breaks a type
        try:
            out = _stream_csv(source, parts, text, rows_per_file, row_group_size, block_size)
            break
        except pa.ArrowInvalid as e:
            column = _broken_column(str(e), source)
            if column is None or column in text:
                raise DataError(f"{source}: cannot convert to Parquet ({e})") from None
            text.add(column)
            for part in parts.glob("*.parquet"):
                part.unlink()
    if sort_by:
        t0 = time.perf_counter()
        out["files"] = _sorted(parts, output, sort_by, rows_per_file, row_group_size)
        out |= {"output": str(output), "sorted_by": sort_by}
        out["seconds"] += time.perf_counter() - t0
    return out


def _stream_csv(
    source: Path, output: Path, text: set[str], rows_per_file: int, group: int, block_size: int
) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    t0 = time.perf_counter()
    options = pacsv.ConvertOptions(column_types={c: pa.string() for c in text})
    reader = pacsv.open_csv(source, read_options=pacsv.ReadOptions(block_size=block_size),
                            convert_options=options)  # fmt: skip
    rows, files = _write_parts(reader, output, rows_per_file, group)
    seconds = time.perf_counter() - t0
    return {"output": str(output), "rows": rows, "files": files, "seconds": seconds,
            "text_columns": sorted(text)}  # fmt: skip


def _sorted(parts: Path, output: Path, column: str, rows_per_file: int, group: int) -> int:
    """``parts`` rewritten into ``output`` ordered by ``column``, ties in file order (DuckDB
    sorts, out of core where the book is larger than memory; the batches stream out); returns
    the number of files."""
    import duckdb

    files = sorted(str(p) for p in parts.glob("*.parquet"))
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    quoted = '"' + column.replace('"', '""') + '"'
    relation = con.sql(
        "SELECT * EXCLUDE (filename, file_row_number) FROM read_parquet($files, filename = true, "
        f"file_row_number = true) ORDER BY {quoted}, filename, file_row_number",
        params={"files": files},
    )
    n = _write_parts(relation.to_arrow_reader(group), output, rows_per_file, group)[1]
    con.close()
    for path in files:
        Path(path).unlink()
    parts.rmdir()
    return n


def _write_parts(batches, output: Path, rows_per_file: int, group: int) -> tuple[int, int]:
    """Record batches into ``part-00000.parquet``, ... of about ``rows_per_file`` rows each."""
    import pyarrow.parquet as pq

    output.mkdir(parents=True, exist_ok=True)
    rows, files, writer = 0, 0, None
    try:
        for batch in batches:
            if writer is None or rows >= rows_per_file * files:
                if writer is not None:
                    writer.close()
                writer = pq.ParquetWriter(output / f"part-{files:05d}.parquet", batch.schema)
                files += 1
            writer.write_batch(batch, row_group_size=group)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows, files


def _broken_column(message: str, source: Path) -> str | None:
    """The column named in pyarrow's "In CSV column #3: ..." conversion error."""
    import re

    m = re.search(r"In CSV column #(\d+)", message)
    if not m:
        return None
    return str(_header(source)[int(m.group(1))])


def _header(source: Path) -> pd.Index:
    """A CSV's column names."""
    return pd.read_csv(source, nrows=0, encoding="utf-8-sig").columns
