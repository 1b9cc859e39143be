"""FOCUS 1.0-1.3 billing exports (any provider) -> billing_line_items.

Reads CSV, CSV.gz and Parquet as providers write them, quirks included:

- nulls written as the literal `NULL` / `null` or as empty strings;
- blank lines between rows (skipped: they are not data rows, and are not counted);
- timestamps with or without `T` and `Z`, with fractional seconds or a UTC offset;
- enum values in the wrong case (Oracle's `Usage-based` becomes `Usage-Based`);
- version renames: 1.3's `HostProviderName` / `ServiceProviderName` replace `ProviderName`
  and `PublisherName` (provider = the host, publisher = the service provider: PROVIDER_COLUMNS);
- extension columns (`x_*`) are ignored, and so is a non-standard `Id` column, except that
  it becomes `source_line_id` when present; column names match case-insensitively
  (the 1.2 spec examples spell `SkuPriceid`).

Tags: the JSON object is kept with its keys exactly as the provider wrote them, only
re-serialized compactly. Keys are not trimmed: the FOCUS sample carries both `org` and
` org`, and trimming would merge them and silently drop one value. A Tags value that is not
a JSON object quarantines the row.

Rows that cannot be trusted (an impossible timestamp, a cost that is not a number, an
unknown currency, a missing required value) go to quarantine with the column and value
named; `rows_read == rows_written + rows_quarantined`. A missing required column fails the
whole file with SourceFormatError.
"""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import polars as pl

from connectors.currency import currency_reason, money_reason, normalized_currency, to_money
from connectors.landing import LandingStore, matching
from connectors.result import ParseResult, SourceFormatError, split_valid
from connectors.schemas import BILLING_LINE_ITEMS, QUANTITY, TS, conform

SOURCE = "focus"
NULL_LITERALS = ["", "NULL", "null"]

REQUIRED = ["ChargeCategory", "ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "EffectiveCost"]

# FOCUS column -> lake column, copied as text.
TEXT_COLUMNS = {
    "InvoiceIssuerName": "invoice_issuer",
    "BillingAccountId": "billing_account_id",
    "SubAccountId": "sub_account_id",
    "ServiceName": "service_name",
    "ServiceCategory": "service_category",
    "RegionId": "region_id",
    "ResourceId": "resource_id",
    "ResourceName": "resource_name",
    "ResourceType": "resource_type",
    "SkuId": "sku_id",
    "ConsumedUnit": "consumed_unit",
    "PricingUnit": "pricing_unit",
    "CommitmentDiscountId": "commitment_discount_id",
}

# Enum columns and their allowed values; matched case-insensitively and written in the
# spec's spelling. A value outside the list is kept as written (FOCUS adds values between
# versions), except for ChargeCategory, which the marts depend on.
ENUMS = {
    "ChargeCategory": ("charge_category", ["Usage", "Purchase", "Tax", "Credit", "Adjustment"]),
    "ChargeClass": ("charge_class", ["Correction"]),
    "ChargeFrequency": ("charge_frequency", ["One-Time", "Recurring", "Usage-Based"]),
    "PricingCategory": ("pricing_category", ["Standard", "Dynamic", "Committed", "Other"]),
    "CommitmentDiscountStatus": ("commitment_discount_status", ["Used", "Unused"]),
}

MONEY_COLUMNS = {
    "BilledCost": "billed_cost",
    "EffectiveCost": "effective_cost",
    "ListCost": "list_cost",
    "ContractedCost": "contracted_cost",
}
QUANTITY_COLUMNS = {"ConsumedQuantity": "consumed_quantity", "PricingQuantity": "pricing_quantity"}
TIME_COLUMNS = {
    "BillingPeriodStart": "billing_period_start",
    "ChargePeriodStart": "charge_period_start",
    "ChargePeriodEnd": "charge_period_end",
}
# `provider` is the host whose capacity the money buys (DESIGN.md). FOCUS 1.3 splits 1.2's
# ProviderName in two: HostProviderName (whose infrastructure runs it) and
# ServiceProviderName (who makes the service available; the marketplace seller, not the
# marketplace). The host comes first; where 1.3 says "Not Applicable" (tax, licences,
# professional services) the service provider stands in, and 1.0-1.2 files have only
# ProviderName, the seller, which for cloud usage is also the host.
PROVIDER_COLUMNS = ["HostProviderName", "ServiceProviderName", "ProviderName"]
# `publisher` is who made what was bought: 1.0-1.2's PublisherName (deprecated in 1.3 but
# still written), else 1.3's ServiceProviderName, which names the producer outside
# white-label resale.
PUBLISHER_COLUMNS = ["PublisherName", "ServiceProviderName", "ProviderName"]
NOT_APPLICABLE = "not applicable"

_TS_FORMATS = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def parse_utc(expr: pl.Expr) -> pl.Expr:
    """Parse billing timestamps from text to UTC; null when the text is not a real instant.

    Accepts `2024-09-01 00:00:00`, `2024-09-01T00:00:00Z`, `...00.000Z`, 7 fractional
    digits, a bare date, BigQuery's `2024-09-01 00:00:00 UTC` and an explicit offset
    (`+02:00`, converted to UTC). Text without a
    zone is taken as UTC, as billing exports mean it. `2023-02-01T30:00:00Z` gives null.
    """
    text = (
        expr.cast(pl.String)
        .str.strip_chars()
        # Only the date/time separator: the `T` of a trailing `UTC` must stay.
        .str.replace(r"^(\d{4}-\d{2}-\d{2})[Tt]", "${1} ")
        .str.replace(r"(?i)(Z|UTC|[+-]00:?00)$", "")
        .str.strip_chars()
    )
    return pl.coalesce(
        [text.str.strptime(TS, fmt, strict=False, exact=True) for fmt in _TS_FORMATS]
        + [text.str.strptime(TS, "%Y-%m-%d %H:%M:%S%.f%:z", strict=False)]
    )


def timestamp_reason(
    raw: pl.Expr, parsed: pl.Expr, source_column: str, *, required: bool
) -> pl.Expr:
    """Reason for a timestamp that is missing (when required) or not a real instant."""
    missing = raw.is_null()
    reason = pl.when(~missing & parsed.is_null()).then(
        pl.format("unparseable timestamp '{}' in {}", raw, pl.lit(source_column))
    )
    if required:
        reason = reason.when(missing).then(pl.lit(f"missing {source_column}"))
    return reason.otherwise(None)


def as_text(df: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, so CSV and Parquet take the same parsing path.

    Datetimes become ISO UTC text, nested values (maps, structs) JSON text, and the null
    spellings of real exports (`NULL`, `null`, empty) become null.
    """
    exprs = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            utc = (
                col.dt.replace_time_zone("UTC")
                if dtype.time_zone is None
                else col.dt.convert_time_zone("UTC")
            )
            text = utc.dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")
        elif dtype.is_nested() or isinstance(dtype, pl.Map):
            # json_encode works on structs only: wrap the value, then unwrap the text.
            text = pl.struct(col.alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")
        else:
            text = col.cast(pl.String)
        exprs.append(
            pl.when(text.str.strip_chars().is_in(NULL_LITERALS))
            .then(None)
            .otherwise(text)
            .alias(name)
        )
    return df.select(exprs)


def content_ids(df: pl.DataFrame, columns: list[str]) -> pl.Series:
    """A stable id per row from its content: md5 of the values, numbered among duplicates.

    md5 (DuckDB's, vectorized) is stable across library versions, unlike polars' hash, so
    a re-export of the same line gets the same id. Identical rows (a provider may bill the
    same SKU twice in an hour) get `-2`, `-3`... in file order.
    """
    key = pl.concat_str(
        [pl.concat_str(pl.lit(f"{c}="), pl.col(c).fill_null("\x00")) for c in sorted(columns)],
        separator="\x1f",
    )
    con = duckdb.connect()
    try:
        con.register("keys", df.select(key.alias("k")))
        digests = con.sql("select md5(k) as h from keys").pl()
    finally:
        con.close()
    return digests.select(
        pl.when(pl.col("h").cum_count().over("h") == 1)
        .then(pl.col("h"))
        .otherwise(pl.format("{}-{}", pl.col("h"), pl.col("h").cum_count().over("h")))
    ).to_series()


def read_table(data: bytes | Path, *, source_file: str) -> pl.DataFrame:
    """Read a CSV, CSV.gz or Parquet file (told apart by content) as text, with `_row_number`.

    `_row_number` is the 1-based data row: the record after the header, blank lines
    counted, so it is the line number minus one for files without multi-line values.
    Blank lines are then dropped.
    """
    # A local file is handed to polars by path (memory-mapped), bytes from S3 as a buffer.
    if isinstance(data, Path):
        with data.open("rb") as fh:
            magic = fh.read(4)
        source: Path | io.BytesIO = data
    else:
        magic, source = data[:4], io.BytesIO(data)
    try:
        if magic == b"PAR1":
            df = as_text(pl.read_parquet(source))
        else:
            # polars decompresses gzip itself; every column stays text.
            df = as_text(pl.read_csv(source, infer_schema=False))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceFormatError(
            f"{source_file}: cannot be read as CSV, CSV.gz or Parquet ({exc}); check the file"
            " is a complete export"
        ) from exc
    df = df.with_row_index("_row_number", offset=1).with_columns(
        pl.col("_row_number").cast(pl.Int64)
    )
    data_cols = [c for c in df.columns if c != "_row_number"]
    return df.filter(~pl.all_horizontal([pl.col(c).is_null() for c in data_cols]))


def _named(expr: pl.Expr) -> pl.Expr:
    """An entity name, null when FOCUS 1.3 says there is none ("Not Applicable")."""
    text = expr.str.strip_chars()
    return pl.when(text.str.to_lowercase() == NOT_APPLICABLE).then(None).otherwise(text)


def _enum(expr: pl.Expr, allowed: list[str]) -> pl.Expr:
    text = expr.str.strip_chars()
    return text.str.to_lowercase().replace_strict(
        {v.lower(): v for v in allowed}, default=text, return_dtype=pl.String
    )


def read_focus_file(
    data: bytes | Path,
    *,
    source_file: str,
    export_version: str,
    default_currency: str | None = None,
) -> ParseResult:
    """Normalize one FOCUS export file.

    `export_version` is the caller's identity of this file set (its key and ETag), so a
    re-delivered export replaces the older one. `default_currency` fills BillingCurrency
    only when the file has no such column at all (the spec's worked examples); a present
    but empty currency is still quarantined.
    """
    df = read_table(data, source_file=source_file)
    by_lower = {c.lower(): c for c in df.columns}

    def col(name: str) -> str | None:
        return by_lower.get(name.lower())

    missing = [c for c in REQUIRED if col(c) is None]
    if col("BillingCurrency") is None and default_currency is None:
        missing.append("BillingCurrency")
    if missing:
        raise SourceFormatError(
            f"{source_file}: required FOCUS column(s) {missing} missing"
            f" (found {sorted(df.columns)});"
            " re-export with the FOCUS columns, or pass default_currency= when the file has"
            " no BillingCurrency and is known to be in one currency"
        )
    raw_columns = [c for c in df.columns if c != "_row_number"]

    def raw(name: str) -> pl.Expr:
        found = col(name)
        return pl.col(found) if found else pl.lit(None, dtype=pl.String)

    currency = raw("BillingCurrency") if col("BillingCurrency") else pl.lit(default_currency)
    parsed: dict[str, pl.Expr] = {
        **{lake: to_money(raw(name)) for name, lake in MONEY_COLUMNS.items()},
        **{
            lake: raw(name).str.strip_chars().str.to_decimal(scale=QUANTITY.scale)
            for name, lake in QUANTITY_COLUMNS.items()
        },
        **{lake: parse_utc(raw(name)) for name, lake in TIME_COLUMNS.items()},
        **{lake: _enum(raw(name), allowed) for name, (lake, allowed) in ENUMS.items()},
        **{lake: raw(name) for name, lake in TEXT_COLUMNS.items()},
        "billing_currency": normalized_currency(currency),
        "tags": raw("Tags").str.json_path_match("$"),
        "provider": pl.coalesce([_named(raw(c)) for c in PROVIDER_COLUMNS]),
        "publisher": pl.coalesce([_named(raw(c)) for c in PUBLISHER_COLUMNS]),
        # FOCUS has no instance-type column; 1.2's SkuPriceDetails may name it.
        "instance_type": raw("SkuPriceDetails").str.json_path_match("$.InstanceType"),
        "source_line_id": raw("Id") if col("Id") else pl.lit(content_ids(df, raw_columns)),
    }
    # Parse once into staged `__<lake column>` columns; the reasons read those.
    staged = df.with_columns([e.alias(f"__{k}") for k, e in parsed.items()])

    def p(lake: str) -> pl.Expr:
        return pl.col(f"__{lake}")

    reasons = [money_reason(raw(name), p(lake), name) for name, lake in MONEY_COLUMNS.items()]
    reasons += [
        pl.when(raw(name).is_null()).then(pl.lit(f"missing {name}"))
        for name in MONEY_COLUMNS
        if name in REQUIRED
    ]
    reasons += [
        pl.when(raw(name).is_not_null() & p(lake).is_null()).then(
            pl.format("non-numeric quantity '{}' in {}", raw(name), pl.lit(name))
        )
        for name, lake in QUANTITY_COLUMNS.items()
    ]
    reasons += [
        timestamp_reason(raw(name), p(lake), name, required=name in REQUIRED)
        for name, lake in TIME_COLUMNS.items()
    ]
    reasons += [
        pl.when(~p("charge_category").is_in(ENUMS["ChargeCategory"][1])).then(
            pl.format("unknown ChargeCategory '{}'", raw("ChargeCategory"))
        ),
        currency_reason(p("billing_currency"), "BillingCurrency"),
        pl.when(raw("Tags").is_not_null() & ~p("tags").str.starts_with("{").fill_null(False)).then(
            pl.format("Tags is not a JSON object: '{}'", raw("Tags"))
        ),
    ]
    reason = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    good, quarantined = split_valid(
        staged,
        pl.when(reason == "").then(None).otherwise(reason),
        source=SOURCE,
        source_file=source_file,
        keep_raw=raw_columns,
    )
    rows = good.select(
        pl.lit(SOURCE).alias("source"),
        pl.lit(source_file).alias("source_file"),
        pl.lit(export_version).alias("export_version"),
        *[p(k).alias(k) for k in parsed],
    )
    result = ParseResult(
        rows=conform(rows, BILLING_LINE_ITEMS),
        quarantine=quarantined,
        rows_read=df.height,
        files=[source_file],
    )
    result.check_balance()
    return result


def read_focus(store: LandingStore, prefix: str = "focus") -> ParseResult:
    """Every FOCUS file under `prefix` (CSV, CSV.gz, Parquet), one ParseResult."""
    parts = []
    for obj in matching(store.list(prefix), "*.csv", "*.csv.gz", "*.parquet"):
        path = store.local_path(obj.key)
        parts.append(
            read_focus_file(
                path if path is not None else store.read_bytes(obj.key),
                source_file=obj.key,
                export_version=f"{obj.key}@{obj.etag}",
            )
        )
    return ParseResult.concat(parts, BILLING_LINE_ITEMS)
