"""Fleet inventory CSVs (`inventory/*.csv`) -> fleet_inventory.

Columns: hostname, provider, resource_id, deployment, valid_from, valid_to. Validity is
half-open [valid_from, valid_to); an empty valid_to means "still valid"; a date alone means
midnight UTC. A host serves one deployment at a time: rows of one hostname whose validity
overlaps are all quarantined, since keeping one would silently charge GPU hours to a
deployment nobody confirmed. Overlaps are checked across all the files read together.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from connectors.dcgm import parse_iso_utc
from connectors.landing import LandingStore, matching
from connectors.result import ParseResult, SourceFormatError
from connectors.schemas import FLEET_INVENTORY, QUARANTINE, conform, empty

SOURCE = "inventory"
COLUMNS = ["hostname", "provider", "resource_id", "deployment", "valid_from", "valid_to"]
# Stands in for an open end when comparing intervals.
_OPEN_END = datetime(9999, 1, 1, tzinfo=UTC)


def read_inventory(store: LandingStore, prefix: str = "inventory") -> ParseResult:
    """Read every `*.csv` under `prefix` into fleet_inventory rows."""
    frames, files = [], []
    for obj in matching(store.list(prefix), "*.csv"):
        path = store.local_path(obj.key)
        raw = path.read_bytes() if path is not None else store.read_bytes(obj.key)
        frames.append(_read_file(raw, obj.key))
        files.append(obj.key)
    if not frames:
        return ParseResult(empty(FLEET_INVENTORY), empty(QUARANTINE), 0, files)
    df = pl.concat(frames, how="vertical").with_columns(_row_problem().alias("_reason"))
    # Only rows that are valid on their own take part in the overlap check.
    df = pl.concat([df.filter(pl.col("_reason").is_not_null()),
                    _with_overlaps(df.filter(pl.col("_reason").is_null()))])
    bad = df.filter(pl.col("_reason").is_not_null())
    quarantined = conform(
        bad.select(
            pl.lit(SOURCE).alias("source"),
            pl.col("_source_file").alias("source_file"),
            pl.col("_row_number").cast(pl.Int64).alias("row_number"),
            pl.col("_reason").alias("reason"),
            pl.struct(COLUMNS).struct.json_encode().alias("raw"),
        ),
        QUARANTINE,
    )
    good = df.filter(pl.col("_reason").is_null()).sort("hostname", "_from")
    rows = conform(
        good.select(*COLUMNS[:4], pl.col("_from").alias("valid_from"),
                    pl.col("_to").alias("valid_to")),
        FLEET_INVENTORY,
    )
    result = ParseResult(rows=rows, quarantine=quarantined, rows_read=df.height, files=files)
    result.check_balance()
    return result


def _read_file(raw: bytes, source_file: str) -> pl.DataFrame:
    df = pl.read_csv(raw, infer_schema=False) if raw.strip() else pl.DataFrame(
        schema={c: pl.String for c in COLUMNS})
    df = df.rename({c: c.strip().lower() for c in df.columns})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise SourceFormatError(
            f"{source_file}: inventory CSV lacks column(s) {missing}; the header must be "
            f"{','.join(COLUMNS)} (valid_to may be left empty on a row, not dropped as a column)"
        )
    text = [pl.col(c).str.strip_chars().replace("", None).alias(c) for c in COLUMNS]
    return (
        df.select(text)
        .with_row_index("_row_number", offset=1)
        .with_columns(
            pl.lit(source_file).alias("_source_file"),
            parse_iso_utc(pl.col("valid_from")).alias("_from"),
            parse_iso_utc(pl.col("valid_to")).alias("_to"),
        )
    )


def _row_problem() -> pl.Expr:
    return pl.coalesce(
        pl.when(pl.col("hostname").is_null()).then(pl.lit("missing hostname")),
        pl.when(pl.col("valid_from").is_null()).then(pl.lit("missing valid_from")),
        pl.when(pl.col("_from").is_null()).then(
            pl.format("unparseable valid_from '{}' (expected an ISO date or timestamp)",
                      pl.col("valid_from"))),
        pl.when(pl.col("valid_to").is_not_null() & pl.col("_to").is_null()).then(
            pl.format("unparseable valid_to '{}' (expected an ISO date or timestamp, or empty)",
                      pl.col("valid_to"))),
        pl.when(pl.col("_to") <= pl.col("_from")).then(
            pl.format("valid_to {} is not after valid_from {}",
                      pl.col("valid_to"), pl.col("valid_from"))),
    )


def _with_overlaps(df: pl.DataFrame) -> pl.DataFrame:
    """Mark rows whose validity overlaps another row of the same host.

    Sorted per host by start, a row overlaps when the latest end among earlier rows is after
    its start, or when the next row starts before its own end.
    """
    end = pl.col("_to").fill_null(_OPEN_END)
    overlaps = (end.cum_max().shift(1).over("hostname") > pl.col("_from")) | (
        pl.col("_from").shift(-1).over("hostname") < end
    )
    return df.sort("hostname", "_from").with_columns(
        pl.when(overlaps).then(pl.format(
            "validity [{}, {}) overlaps another inventory row for hostname '{}'",
            pl.col("valid_from"), pl.col("valid_to").fill_null("open"), pl.col("hostname")))
        .alias("_reason")
    )
