"""What every connector returns: the normalized rows and the rows it refused."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from connectors.schemas import QUARANTINE, conform, empty


class SourceFormatError(ValueError):
    """A whole file cannot be read (a required column missing, not the format it claims).

    The message names the file, what is wrong and what to do; such a file fails the
    ingestion loudly instead of being skipped.
    """


@dataclass
class ParseResult:
    """Normalized rows plus quarantined ones; `rows_read == rows_written + rows_quarantined`."""

    rows: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    files: list[str] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return self.rows.height

    @property
    def rows_quarantined(self) -> int:
        return self.quarantine.height

    def check_balance(self) -> None:
        if self.rows_read != self.rows_written + self.rows_quarantined:
            raise AssertionError(
                f"rows_read {self.rows_read} != rows_written {self.rows_written}"
                f" + rows_quarantined {self.rows_quarantined} for {self.files}"
            )

    @staticmethod
    def concat(parts: Iterable[ParseResult], schema: dict[str, pl.DataType]) -> ParseResult:
        parts = list(parts)
        rows = [p.rows for p in parts if p.rows.height]
        quarantined = [p.quarantine for p in parts if p.quarantine.height]
        return ParseResult(
            rows=pl.concat(rows, how="vertical") if rows else empty(schema),
            quarantine=pl.concat(quarantined, how="vertical") if quarantined else empty(QUARANTINE),
            rows_read=sum(p.rows_read for p in parts),
            files=[f for p in parts for f in p.files],
        )


def quarantine_frame(
    source: str, source_file: str, row_numbers: list[int], reasons: list[str], raws: list[Any]
) -> pl.DataFrame:
    """Build quarantine rows; `raws` are dicts or strings, stored as JSON text."""
    return conform(
        pl.DataFrame(
            {
                "source": [source] * len(row_numbers),
                "source_file": [source_file] * len(row_numbers),
                "row_number": row_numbers,
                "reason": reasons,
                "raw": [r if isinstance(r, str) else json.dumps(r, default=str) for r in raws],
            },
            schema_overrides={"row_number": pl.Int64},
        ),
        QUARANTINE,
    )


def split_valid(
    df: pl.DataFrame,
    reason: pl.Expr,
    *,
    source: str,
    source_file: str,
    row_number_col: str = "_row_number",
    keep_raw: list[str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a frame by a reason expression: rows where `reason` is null are valid.

    `reason` is a String expression (null when the row is fine). Quarantined rows keep
    their raw columns (all, or `keep_raw`) as JSON text. Both outputs drop the reason.
    """
    tagged = df.with_columns(reason.alias("_reason"))
    bad = tagged.filter(pl.col("_reason").is_not_null())
    good = tagged.filter(pl.col("_reason").is_null()).drop("_reason")
    raw_cols = keep_raw or [c for c in df.columns if c != row_number_col]
    quarantined = conform(
        bad.select(
            pl.lit(source).alias("source"),
            pl.lit(source_file).alias("source_file"),
            pl.col(row_number_col).cast(pl.Int64).alias("row_number"),
            pl.col("_reason").alias("reason"),
            pl.struct([pl.col(c).cast(pl.String) for c in raw_cols])
            .struct.json_encode()
            .alias("raw"),
        ),
        QUARANTINE,
    )
    return good, quarantined
