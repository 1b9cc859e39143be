"""The Parquet lake: hive-partitioned by day, each partition replaced atomically.

lake/<table>/date=YYYY-MM-DD/part-0.parquet
lake/_quarantine/<table>/date=YYYY-MM-DD/part-0.parquet
lake/_manifests/<table>/date=YYYY-MM-DD/part-0.parquet

A partition is written to a temporary folder beside it and swapped in with renames, so a
reader sees either the old partition or the new one, and a rerun replaces it whole.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import date
from pathlib import Path

import polars as pl

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
        df.write_parquet(tmp / "part-0.parquet", compression="zstd", statistics=True)
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex}"
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_table(lake_root: Path | str, table: str, day: date, df: pl.DataFrame) -> Path:
    """Conform to the table's schema and replace its partition for `day`."""
    return replace_partition(lake_root, table, day, conform(df, LAKE_TABLES[table]))


def write_quarantine(lake_root: Path | str, table: str, day: date, df: pl.DataFrame) -> Path:
    return replace_partition(lake_root, f"_quarantine/{table}", day, conform(df, QUARANTINE))


def write_manifest(lake_root: Path | str, table: str, day: date, row: dict) -> Path:
    return replace_partition(
        lake_root, f"_manifests/{table}", day, pl.DataFrame([row], schema=MANIFEST)
    )


def read_partition(lake_root: Path | str, table: str, day: date) -> pl.DataFrame:
    path = partition_dir(lake_root, table, day) / "part-0.parquet"
    return pl.read_parquet(path)


def ensure_table(lake_root: Path | str, table: str) -> None:
    """Make sure a table has at least one (empty) partition, so readers of the glob work."""
    root = Path(lake_root) / table
    if not any(root.glob("date=*/part-0.parquet")):
        replace_partition(lake_root, table, date(1970, 1, 1), pl.DataFrame(schema=LAKE_TABLES[table]))
