"""The Parquet lake: hive-partitioned by day, each partition replaced atomically.

lake/<table>/date=YYYY-MM-DD/part-0.parquet         (or part-00000 ... when streamed)
lake/_quarantine/<table>/date=YYYY-MM-DD/part-0.parquet
lake/_manifests/<table>/date=YYYY-MM-DD/part-0.parquet

A partition is written to a temporary folder beside it and swapped in with renames, so a
reader sees either the old partition or the new one, and a rerun replaces it whole. A day
too large to hold in memory is written part by part (PartitionWriter) into that folder
and swapped in the same way once every part is there. Readers take `*.parquet`.

A lake on S3 is a local copy whose commits are published to S3 (connectors.lake_remote):
the functions here work on the copy, and each swap publishes its partition.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import nullcontext
from datetime import date
from pathlib import Path

import polars as pl

from connectors import lake_remote
from connectors.schemas import LAKE_TABLES, QUARANTINE, TS, conform

MANIFEST: dict[str, pl.DataType] = {
    "table_name": pl.String,
    "partition_date": pl.Date,
    "written_at": TS,
    "source_files": pl.String,  # JSON list of {path, size, etag}
    "rows_read": pl.Int64,
    "rows_written": pl.Int64,
    "rows_quarantined": pl.Int64,
}


def partition_dir(lake_root: Path | str, table: str, day: date) -> Path:
    return Path(lake_root) / table / f"date={day.isoformat()}"


# zstd at level 1: against polars' default level, a day of gateway logs writes in two thirds
# of the CPU time (the lake's largest cost after parsing) for files about 12% larger, which
# read as fast.
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "statistics": True}


def replace_partition(lake_root: Path | str, table: str, day: date, df: pl.DataFrame) -> Path:
    """Write `df` as the whole partition `table/date=day`, replacing what was there.

    An empty frame still writes an empty file, so "no rows that day" is recorded and a
    stale partition from an earlier run cannot survive.
    """
    final = partition_dir(lake_root, table, day)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        df.write_parquet(tmp / "part-0.parquet", **PARQUET_OPTIONS)
        _swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _swap_in(tmp: Path, final: Path) -> None:
    """Make the folder `tmp` the partition `final`; on an S3 lake, publish it (under the
    copy's lock, so no pull on this machine sees the folder before S3 has it)."""
    remote = lake_remote.remote_for(final)
    with remote.locked() if remote else nullcontext():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex}"
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        if remote:
            remote.publish(final)


def drop_partition(lake_root: Path | str, table: str, day: date) -> None:
    """Remove a partition from the lake (and from S3, when the lake is there)."""
    final = partition_dir(lake_root, table, day)
    remote = lake_remote.remote_for(final)
    with remote.locked() if remote else nullcontext():
        shutil.rmtree(final, ignore_errors=True)
        if remote:
            remote.drop(final)


class PartitionWriter:
    """One partition written as parts, each conformed to the table, swapped in on commit.

    Nothing is visible to readers until `commit()`; a writer that is never committed (an
    error mid-day) leaves the previous partition in place and its staging folder removed.
    """

    def __init__(self, lake_root: Path | str, table: str, day: date,
                 schema: dict[str, pl.DataType] | None = None) -> None:
        self.final = partition_dir(lake_root, table, day)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.schema = schema if schema is not None else LAKE_TABLES[table]
        self.tmp = self.final.parent / f".tmp-{self.final.name}-{uuid.uuid4().hex}"
        self.tmp.mkdir()
        self.parts = 0
        self.rows = 0

    def write(self, df: pl.DataFrame) -> pl.DataFrame:
        """Write `df` as the next part; returns it as written (conformed to the table)."""
        df = conform(df, self.schema)
        if df.height == 0:
            return df
        df.write_parquet(self.tmp / f"part-{self.parts:05d}.parquet", **PARQUET_OPTIONS)
        self.parts += 1
        self.rows += df.height
        return df

    def commit(self) -> Path:
        if self.parts == 0:  # "no rows that day" is recorded, as replace_partition does
            pl.DataFrame(schema=self.schema).write_parquet(self.tmp / "part-0.parquet")
        _swap_in(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def partition_files(lake_root: Path | str, table: str, day: date) -> list[Path]:
    """The Parquet files of one partition (one, or the parts of a streamed day)."""
    return sorted(partition_dir(lake_root, table, day).glob("*.parquet"))


def write_table(lake_root: Path | str, table: str, day: date, df: pl.DataFrame) -> Path:
    """Conform to the table's schema and replace its partition for `day`."""
    return replace_partition(lake_root, table, day, conform(df, LAKE_TABLES[table]))


def write_quarantine(lake_root: Path | str, table: str, day: date, df: pl.DataFrame) -> Path:
    return replace_partition(lake_root, f"_quarantine/{table}", day, conform(df, QUARANTINE))


def write_manifest(lake_root: Path | str, table: str, day: date, row: dict) -> Path:
    return replace_partition(
        lake_root, f"_manifests/{table}", day, pl.DataFrame([row], schema=MANIFEST)
    )


def written_partition_files(lake_root: Path | str, table: str, day: date) -> list[Path]:
    """partition_files, or FileNotFoundError naming the partition when none was written."""
    files = partition_files(lake_root, table, day)
    if not files:
        raise FileNotFoundError(f"{partition_dir(lake_root, table, day)}: no partition written")
    return files


def read_partition(lake_root: Path | str, table: str, day: date) -> pl.DataFrame:
    return pl.read_parquet(written_partition_files(lake_root, table, day))


def ensure_table(lake_root: Path | str, table: str) -> None:
    """Make sure a table has at least one (empty) partition, so readers of the glob work."""
    root = Path(lake_root) / table
    if not any(root.glob("date=*/*.parquet")):
        replace_partition(lake_root, table, date(1970, 1, 1), pl.DataFrame(schema=LAKE_TABLES[table]))
