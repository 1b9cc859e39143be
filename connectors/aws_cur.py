"""AWS Cost and Usage Reports -> billing_line_items.

Two generations are read:

- **CUR 2.0** (AWS Data Exports): Parquet or CSV.gz with snake_case columns; tags in the
  `resource_tags` map (keys `user_<tag>`), product attributes partly in the `product` map.
  Landing layout `<export>/data/BILLING_PERIOD=YYYY-MM/...` and
  `<export>/metadata/BILLING_PERIOD=YYYY-MM/<export>-Manifest.json`.
- **Legacy CUR 1.0**: CSV with `lineItem/UnblendedCost`-style names (renamed here to the
  CUR 2.0 names, the same rule AWS's Athena integration uses) and one column per tag
  (`resourceTags/user:<tag>`); manifest `<report>-Manifest.json` with `reportKeys`.

Files are always chosen from a manifest, never by listing data/: a half-written or
superseded delivery may sit beside the current one, and only the manifest says which files
make up the current version of a month.

Effective cost follows AWS's CUDOS views (amortized, unused commitment kept visible):

| line_item_line_item_type | effective_cost |
| --- | --- |
| SavingsPlanCoveredUsage | savings_plan_savings_plan_effective_cost |
| DiscountedUsage | reservation_effective_cost |
| SavingsPlanNegation, SavingsPlanUpfrontFee | 0 (already spread over covered usage) |
| SavingsPlanRecurringFee | total_commitment_to_date - used_commitment (the unused part) |
| RIFee | unused amortized upfront fee + unused recurring fee |
| Fee of a reservation (reservation ARN set) | 0 (the upfront payment, amortized by AWS) |
| anything else | line_item_unblended_cost |

The `net_*` variants (after EDP and other discounts) are used where present and not null.
billed_cost is always line_item_unblended_cost, so billed_cost sums to the invoice.

Split cost allocation (EKS pods / ECS tasks on EC2): AWS keeps the full instance cost on the
instance's own line and adds one line per pod/task (`split_line_item_*` columns, usage types
with `EKSPod-EC2` / `ECSTask-EC2`). The instance line carries the cost; each split line is
kept with effective_cost 0 (its billed_cost is its own unblended cost, 0 in AWS's data) and
its split figures in tags (`split:parent_resource_id`, `split:cost`, `split:unused_cost`),
so a day's total equals the bill exactly once and the pod split stays queryable.

Bedrock token lines (product `AmazonBedrock`, usage types with `InputToken` /
`OutputToken`) keep usage_type and consumed_unit for dbt to turn into token usage.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import polars as pl

from connectors.currency import currency_reason, money_reason, normalized_currency, to_money
from connectors.focus import content_ids, parse_utc, read_table, timestamp_reason
from connectors.landing import LandingObject, LandingStore
from connectors.result import ParseResult, SourceFormatError
from connectors.schemas import BILLING_LINE_ITEMS, QUANTITY, QUARANTINE, TS, conform, empty

SOURCES = {"cur2": "aws_cur", "cur1": "aws_cur_legacy"}
PROVIDER = "AWS"
PUBLISHER = "Amazon Web Services"

REQUIRED = [
    "line_item_line_item_type",
    "line_item_usage_start_date",
    "line_item_usage_end_date",
    "line_item_unblended_cost",
    "line_item_currency_code",
]

MONEY_COLUMNS = [
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "pricing_public_on_demand_cost",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_net_savings_plan_effective_cost",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
    "reservation_effective_cost",
    "reservation_net_effective_cost",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_recurring_fee",
    "reservation_net_unused_amortized_upfront_fee_for_billing_period",
    "reservation_net_unused_recurring_fee",
    "split_line_item_split_cost",
    "split_line_item_unused_cost",
]

TEXT_COLUMNS = [
    "identity_line_item_id",
    "identity_time_interval",
    "bill_payer_account_id",
    "bill_invoicing_entity",
    "line_item_usage_account_id",
    "line_item_product_code",
    "line_item_usage_type",
    "line_item_resource_id",
    "line_item_availability_zone",
    "product_product_name",
    "product_servicecode",
    "product_region_code",
    "product_instance_type",
    "product_sku",
    "product",
    "pricing_unit",
    "pricing_term",
    "resource_tags",
    "savings_plan_savings_plan_a_r_n",
    "reservation_reservation_a_r_n",
    "split_line_item_parent_resource_id",
]

# The CUR 2.0 names the mapping reads. An export has many more (CUR 2.0 ~125 columns);
# they are read only for a quarantined row's raw record.
USED_COLUMNS = frozenset(
    [
        *REQUIRED,
        *MONEY_COLUMNS,
        *TEXT_COLUMNS,
        "line_item_usage_amount",
        "bill_billing_period_start_date",
        "product_product_name",
    ]
)

USAGE_TYPES = ["Usage", "DiscountedUsage", "SavingsPlanCoveredUsage"]
CHARGE_CATEGORY = {
    "Usage": "Usage",
    "DiscountedUsage": "Usage",
    "SavingsPlanCoveredUsage": "Usage",
    "SavingsPlanNegation": "Usage",
    "Tax": "Tax",
    "Credit": "Credit",
    "Refund": "Credit",
    "Fee": "Purchase",
    "RIFee": "Purchase",
    "SavingsPlanRecurringFee": "Purchase",
    "SavingsPlanUpfrontFee": "Purchase",
}
CHARGE_FREQUENCY = {
    **{t: "Usage-Based" for t in [*USAGE_TYPES, "SavingsPlanNegation"]},
    "RIFee": "Recurring",
    "SavingsPlanRecurringFee": "Recurring",
}
SP_TYPES = [
    "SavingsPlanCoveredUsage",
    "SavingsPlanNegation",
    "SavingsPlanRecurringFee",
    "SavingsPlanUpfrontFee",
]
RI_TYPES = ["DiscountedUsage", "RIFee"]

# FOCUS ServiceCategory for the services the demo and typical inference stacks use.
SERVICE_CATEGORY = {
    "AmazonEC2": "Compute",
    "AmazonEKS": "Compute",
    "AmazonECS": "Compute",
    "AWSLambda": "Compute",
    "AmazonSageMaker": "AI and Machine Learning",
    "AmazonBedrock": "AI and Machine Learning",
    "AmazonS3": "Storage",
    "AmazonEFS": "Storage",
    "AmazonFSx": "Storage",
    "AWSDataTransfer": "Networking",
    "AmazonVPC": "Networking",
    "AmazonCloudFront": "Networking",
    "AmazonCloudWatch": "Management and Governance",
    "AWSCloudTrail": "Management and Governance",
    "awskms": "Security",
    "AWSSecretsManager": "Security",
}

# Lines normalized at a time: big enough for vectorized work, small beside a month.
BATCH_ROWS = 100_000

# Reads a staged (already parsed) column by its lake-side name.
Staged = Callable[[str], pl.Expr]

_PERIOD_DIR = re.compile(r"BILLING_PERIOD=(\d{4}-\d{2})|/(\d{4})(\d{2})01-\d{8}/")


@dataclass(frozen=True)
class CurExport:
    """One export-name x billing period, in its newest delivered version."""

    name: str
    billing_period: str  # YYYY-MM
    version: str  # executionId (CUR 2.0), assemblyId (legacy), else manifest key@etag
    manifest_key: str
    data_keys: tuple[str, ...]
    format: Literal["cur2", "cur1"]


def legacy_column_name(name: str) -> str:
    """`lineItem/UnblendedCost` -> `line_item_unblended_cost` (AWS's Athena rule).

    Every capital letter starts a word, so `savingsPlan/SavingsPlanARN` becomes
    `savings_plan_savings_plan_a_r_n`, exactly the CUR 2.0 name.
    """
    parts = [re.sub(r"([A-Z])", r"_\1", p).lower().strip("_") for p in name.split("/")]
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts))


def _canonical_names(columns: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Rename map to CUR 2.0 names, and the tag columns (column -> tag key) of legacy files."""
    renames: dict[str, str] = {}
    tag_columns: dict[str, str] = {}
    for c in columns:
        if c.startswith("resourceTags/"):
            tag_columns[c] = c.removeprefix("resourceTags/").removeprefix("user:")
        elif c.startswith("resource_tags_"):  # legacy CUR as Parquet (Athena names)
            tag_columns[c] = c.removeprefix("resource_tags_").removeprefix("user_")
        elif "/" in c:
            renames[c] = legacy_column_name(c)
        elif c.endswith("_arn"):  # accept the plain spelling of AWS's `_a_r_n`
            renames[c] = c.removesuffix("_arn") + "_a_r_n"
    return renames, tag_columns


def _json_text(expr: pl.Expr) -> pl.Expr:
    """A value as JSON (a quoted, escaped string; an object for a map).

    json_encode serializes structs only: wrap the value, encode, unwrap the text.
    """
    return pl.struct(expr.alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")


def _tags_expr(schema: pl.Schema, tag_columns: dict[str, str]) -> pl.Expr:
    """Tags as JSON object text: `user_` / `user:` prefixes stripped, empty values dropped,
    plus the split-cost figures of split lines. Null when a line has no tags.

    `resource_tags` is a map in CUR 2.0 Parquet and JSON text in CSV exports. The object
    is built as text, member by member: a list of key/value structs per line is several
    times slower on millions of lines.
    """
    as_map = pl.Map(pl.String, pl.String)
    members: list[pl.Expr] = []  # each `"key":"value",...` without braces, or null
    if "resource_tags" in schema:
        tags = pl.col("resource_tags")
        if schema["resource_tags"] != as_map:
            tags = tags.cast(pl.String).str.json_decode(as_map)
        entries = (
            tags.map.entries()
            .list.eval(
                pl.struct(
                    pl.element().struct.field("key").str.strip_prefix("user_").alias("key"),
                    pl.element().struct.field("value"),
                )
            )
            .list.filter(pl.element().struct.field("value").fill_null("") != "")
            .fill_null(pl.lit([], dtype=pl.List(pl.Struct({"key": pl.String, "value": pl.String}))))
        )
        # An empty map encodes as `{}`: its empty body becomes null, not a member.
        # (`replace`, not when/then: a branch would evaluate the whole chain twice.)
        body = _json_text(entries.list.to_map()).str.slice(1).str.strip_suffix("}")
        members.append(body.replace("", None))
    extra = dict(tag_columns)
    for col, label in [
        ("split_line_item_parent_resource_id", "split:parent_resource_id"),
        ("split_line_item_split_cost", "split:cost"),
        ("split_line_item_unused_cost", "split:unused_cost"),
    ]:
        if col in schema:
            extra[col] = label
    for col, key in extra.items():
        value = pl.col(col).cast(pl.String)
        members.append(
            pl.when(value.fill_null("") != "").then(
                pl.concat_str(pl.lit(json.dumps(key) + ":"), _json_text(value))
            )
        )
    if not members:
        return pl.lit(None, dtype=pl.String)
    body = pl.concat_str(members, separator=",", ignore_nulls=True).replace("", None)
    return pl.concat_str(pl.lit("{"), body, pl.lit("}"))  # null when there is no member


def _scan(data: Path | bytes) -> tuple[pl.LazyFrame, list[str]]:
    """A lazy scan of the columns of a CUR file the mapping uses, as the file types
    them, with `_row_number`; and the file's full column list.

    CUR 2.0 writes ~125 columns and the mapping reads about 40: the rest stay on disk
    (a quarantined row is re-read whole for its raw record). Blank CSV lines keep their
    row number and are dropped.
    """
    if isinstance(data, Path):
        with data.open("rb") as fh:
            magic = fh.read(4)
    else:
        magic = data[:4]
    if magic == b"PAR1":
        scan = pl.scan_parquet(data if isinstance(data, Path) else io.BytesIO(data))
    else:
        # polars decompresses gzip itself; every column stays text, NULL spellings null.
        scan = pl.scan_csv(
            data, infer_schema=False, null_values=["NULL", "null"], raise_if_empty=False
        )
    columns = scan.collect_schema().names()
    wanted = _used_columns(columns)
    scan = scan.select(wanted).with_row_index("_row_number", offset=1)
    if wanted:
        scan = scan.filter(~pl.all_horizontal([pl.col(c).is_null() for c in wanted]))
    return scan.with_columns(pl.col("_row_number").cast(pl.Int64)), columns


def _used_columns(columns: list[str]) -> list[str]:
    renames, tag_columns = _canonical_names(columns)
    return [c for c in columns if renames.get(c, c) in USED_COLUMNS or c in tag_columns]


def _utc_times(series: pl.Series) -> pl.Series:
    """A timestamp column as UTC: typed ones converted, text parsed.

    Text is parsed once per distinct value: a month of CUR has a few hundred distinct
    hours over millions of lines.
    """
    if isinstance(series.dtype, pl.Datetime):
        if series.dtype.time_zone is None:
            return series.dt.replace_time_zone("UTC").cast(TS)
        return series.dt.convert_time_zone("UTC").cast(TS)
    text = series.cast(pl.String)
    distinct = text.unique()
    parsed = pl.select(parse_utc(pl.lit(distinct))).to_series()
    return text.replace_strict(distinct, parsed, default=None, return_dtype=TS)


def _raw_records(data: Path | bytes, source_file: str, row_numbers: pl.Series) -> pl.DataFrame:
    """Whole records (every column, as text) of the rows being quarantined."""
    full = read_table(data, source_file=source_file)
    wanted = full.filter(pl.col("_row_number").is_in(row_numbers.implode()))
    columns = [c for c in full.columns if c != "_row_number"]
    return wanted.select(
        pl.col("_row_number"), pl.struct(columns).struct.json_encode().alias("raw")
    )


def read_cur_file(
    path_or_bytes: Path | bytes,
    *,
    source_file: str,
    export_version: str,
    fmt: str,
) -> ParseResult:
    """Normalize one CUR data file (Parquet, CSV or CSV.gz; CUR 2.0 or legacy names).

    `fmt` is the export's generation, "cur2" or "cur1"; it sets the lake's `source`.
    Rows with an unparseable timestamp, a non-numeric cost, a missing or unknown currency,
    or no defined effective cost go to quarantine; a missing required column raises
    SourceFormatError.

    The file is scanned lazily (only the columns the mapping uses) and normalized in
    batches of BATCH_ROWS lines, so a month of CUR is never held whole beside its result.
    """
    if fmt not in SOURCES:
        raise ValueError(f"fmt must be 'cur2' or 'cur1', not {fmt!r}")
    try:
        scan, all_columns = _scan(path_or_bytes)
        renames, tag_columns = _canonical_names(all_columns)
        used = set(_used_columns(all_columns))
        scan = scan.rename({k: v for k, v in renames.items() if k in used})
        schema = scan.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceFormatError(
            f"{source_file}: cannot be read as CSV, CSV.gz or Parquet ({exc}); check the file"
            " is a complete export"
        ) from exc
    original = {renames.get(c, c): c for c in all_columns}
    missing = [c for c in REQUIRED if c not in schema]
    if missing:
        raise SourceFormatError(
            f"{source_file}: required CUR column(s) {missing} missing; this is not a complete"
            " Cost and Usage Report: include them in the Data Export's query (CUR 2.0 names)"
            " or re-create the legacy report with the default columns"
        )

    def raw(name: str) -> pl.Expr:
        """A source column as text (Parquet numbers become their shortest round-trip text)."""
        if name not in schema:
            return pl.lit(None, dtype=pl.String)
        return pl.col(name).cast(pl.String) if schema[name] != pl.String else pl.col(name)

    times = {
        "charge_period_start": "line_item_usage_start_date",
        "charge_period_end": "line_item_usage_end_date",
        "billing_period_start_raw": "bill_billing_period_start_date",
    }
    parsed: dict[str, pl.Expr] = {
        **{c: to_money(raw(c)) for c in MONEY_COLUMNS},
        "usage_amount": raw("line_item_usage_amount")
        .str.strip_chars()
        .str.to_decimal(scale=QUANTITY.scale),
        **{k: pl.lit(None, dtype=TS) for k, c in times.items() if c not in schema},
        "billing_currency": normalized_currency(raw("line_item_currency_code")),
        "tags": _tags_expr(schema, tag_columns),
    }

    def p(name: str) -> pl.Expr:
        return pl.col(f"__{name}")

    line_type = raw("line_item_line_item_type").str.strip_chars()
    is_split = raw("split_line_item_parent_resource_id").is_not_null() | raw(
        "line_item_usage_type"
    ).str.contains("EKSPod-EC2|ECSTask-EC2").fill_null(False)
    ri_arn = raw("reservation_reservation_a_r_n")
    effective, needs = _effective_cost(line_type, is_split, ri_arn, p)

    def time_reason(key: str, *, required: bool) -> pl.Expr:
        column = times[key]
        return timestamp_reason(
            raw(column), p(key), original.get(column, column), required=required
        )

    reasons = [money_reason(raw(c), p(c), original.get(c, c)) for c in MONEY_COLUMNS if c in schema]
    reasons += [
        pl.when(raw("line_item_line_item_type").is_null()).then(
            pl.lit("missing line_item_line_item_type")
        ),
        pl.when(raw("line_item_unblended_cost").is_null()).then(
            pl.lit(f"missing {original['line_item_unblended_cost']}")
        ),
        pl.when(raw("line_item_usage_amount").is_not_null() & p("usage_amount").is_null()).then(
            pl.format(
                "non-numeric quantity '{}' in {}",
                raw("line_item_usage_amount"),
                pl.lit(original.get("line_item_usage_amount", "line_item_usage_amount")),
            )
        ),
        time_reason("charge_period_start", required=True),
        time_reason("charge_period_end", required=True),
        time_reason("billing_period_start_raw", required=False),
        currency_reason(p("billing_currency"), original["line_item_currency_code"]),
    ]
    reason = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    # A line with no effective cost is reported only when nothing above explains it
    # (a non-numeric input already says why).
    reason = (
        pl.when(reason != "")
        .then(reason)
        .when(pl.col("__effective_cost").is_null())
        .then(pl.format("no effective cost for a {} line: {} is empty", line_type, needs))
    )
    source = SOURCES[fmt]
    has_identity = {"identity_line_item_id", "identity_time_interval"} <= set(schema)
    stages = [
        [e.alias(f"__{k}") for k, e in parsed.items()],
        [effective.alias("__effective_cost")],
        [
            pl.col("_row_number"),
            reason.alias("__reason"),
            *_line_items(schema, line_type, ri_arn, p, source, source_file, export_version),
            _line_key(schema, has_identity).alias("__line_key"),
        ],
    ]

    def normalize(batch: pl.DataFrame) -> pl.DataFrame:
        batch = batch.with_columns(
            _utc_times(batch.get_column(c)).alias(f"__{k}")
            for k, c in times.items()
            if c in schema
        )
        return batch.with_columns(stages[0]).with_columns(stages[1]).select(stages[2])

    try:
        parts = [normalize(b) for b in scan.collect_batches(chunk_size=BATCH_ROWS)]
        out = pl.concat(parts) if parts else normalize(scan.limit(0).collect())
    except pl.exceptions.ComputeError as exc:
        first_line = str(exc).splitlines()[0]
        # The one value that fails a whole file rather than a row: tags that are not JSON.
        hint = (
            "resource_tags holds text that is not a JSON object"
            if "json" in first_line.lower() and "resource_tags" in schema
            else "the file does not hold what its CUR columns promise"
        )
        raise SourceFormatError(
            f"{source_file}: cannot be normalized ({first_line}); {hint}: re-deliver the export"
        ) from exc
    bad = out.filter(pl.col("__reason").is_not_null())
    quarantined = empty(QUARANTINE)
    if bad.height:
        # Quarantine keeps the whole record under the file's own column names.
        records = _raw_records(path_or_bytes, source_file, bad.get_column("_row_number"))
        quarantined = conform(
            bad.join(records, on="_row_number", how="left").select(
                pl.lit(source).alias("source"),
                pl.lit(source_file).alias("source_file"),
                pl.col("_row_number").alias("row_number"),
                pl.col("__reason").alias("reason"),
                pl.col("raw"),
            ),
            QUARANTINE,
        )
        out = out.filter(pl.col("__reason").is_null())
    rows_read = out.height + bad.height
    line_ids = _line_ids(out.get_column("__line_key"), has_identity)
    result = ParseResult(
        rows=conform(
            out.drop("_row_number", "__reason", "__line_key").with_columns(line_ids),
            BILLING_LINE_ITEMS,
        ),
        quarantine=quarantined,
        rows_read=rows_read,
        files=[source_file],
    )
    result.check_balance()
    return result


def _line_key(schema: pl.Schema, has_identity: bool) -> pl.Expr:
    """`identity_line_item_id|identity_time_interval`, or without them the whole line's
    text (hashed into a content id afterwards)."""
    if has_identity:
        return pl.concat_str("identity_line_item_id", "identity_time_interval", separator="|")
    data = sorted(c for c in schema if not c.startswith("_"))
    return pl.concat_str(
        [
            pl.concat_str(
                pl.lit(f"{c}="),
                # Maps (decoded tags) as their JSON text: json_encode takes structs only.
                (
                    _json_text(pl.col(c))
                    if isinstance(schema[c], pl.Map)
                    else pl.col(c).cast(pl.String)
                ).fill_null("\x00"),
            )
            for c in data
        ],
        separator="\x1f",
    )


def _line_ids(keys: pl.Series, has_identity: bool) -> pl.Series:
    """Line ids from line keys: the CUR identity, numbered where it repeats; or an md5.

    An identity repeats only for the split lines of one parent: the repeats are numbered
    (`#2`, `#3`), and only when there are any, because numbering is a window over every
    line of the file.
    """
    if not has_identity:
        return content_ids(keys.to_frame("k"), ["k"]).alias("source_line_id")
    if not keys.is_duplicated().any():
        return keys.alias("source_line_id")
    key = pl.col("source_line_id")
    n = key.cum_count().over(key)
    return (
        keys.alias("source_line_id")
        .to_frame()
        .select(pl.when(n == 1).then(key).otherwise(pl.format("{}#{}", key, n)))
        .to_series()
    )


def _effective_cost(
    line_type: pl.Expr, is_split: pl.Expr, ri_arn: pl.Expr, p: Staged
) -> tuple[pl.Expr, pl.Expr]:
    """The CUDOS effective cost, and the name of the column it needs (for the reason)."""
    sp_effective = pl.coalesce(
        p("savings_plan_net_savings_plan_effective_cost"),
        p("savings_plan_savings_plan_effective_cost"),
    )
    ri_effective = pl.coalesce(p("reservation_net_effective_cost"), p("reservation_effective_cost"))
    ri_unused = pl.coalesce(
        p("reservation_net_unused_amortized_upfront_fee_for_billing_period")
        + p("reservation_net_unused_recurring_fee"),
        p("reservation_unused_amortized_upfront_fee_for_billing_period")
        + p("reservation_unused_recurring_fee"),
    )
    sp_unused = p("savings_plan_total_commitment_to_date") - p("savings_plan_used_commitment")
    unblended = pl.coalesce(p("line_item_net_unblended_cost"), p("line_item_unblended_cost"))
    zero = pl.lit(0).cast(BILLING_LINE_ITEMS["effective_cost"])
    effective = (
        pl.when(is_split)
        .then(zero)
        .when(line_type == "SavingsPlanCoveredUsage")
        .then(sp_effective)
        .when(line_type == "DiscountedUsage")
        .then(ri_effective)
        .when(line_type.is_in(["SavingsPlanNegation", "SavingsPlanUpfrontFee"]))
        .then(zero)
        .when(line_type == "SavingsPlanRecurringFee")
        .then(sp_unused)
        .when(line_type == "RIFee")
        .then(ri_unused)
        .when((line_type == "Fee") & ri_arn.is_not_null())
        .then(zero)
        .otherwise(unblended)
    )
    needs = (
        pl.when(line_type == "SavingsPlanCoveredUsage")
        .then(pl.lit("savings_plan_savings_plan_effective_cost"))
        .when(line_type == "DiscountedUsage")
        .then(pl.lit("reservation_effective_cost"))
        .when(line_type == "SavingsPlanRecurringFee")
        .then(pl.lit("savings_plan_total_commitment_to_date or savings_plan_used_commitment"))
        .when(line_type == "RIFee")
        .then(
            pl.lit(
                "reservation_unused_amortized_upfront_fee_for_billing_period or"
                " reservation_unused_recurring_fee"
            )
        )
        .otherwise(pl.lit("line_item_unblended_cost"))
    )
    return effective, needs


def _line_items(
    schema: pl.Schema,
    line_type: pl.Expr,
    ri_arn: pl.Expr,
    p: Staged,
    source: str,
    source_file: str,
    export_version: str,
) -> list[pl.Expr]:
    def raw(name: str) -> pl.Expr:
        if name not in schema:
            return pl.lit(None, dtype=pl.String)
        return pl.col(name).cast(pl.String) if schema[name] != pl.String else pl.col(name)

    def product(key: str) -> pl.Expr:
        """An attribute of the CUR 2.0 `product` map (a Parquet map, or JSON text in CSV)."""
        if "product" not in schema:
            return pl.lit(None, dtype=pl.String)
        if isinstance(schema["product"], pl.Map):
            return pl.col("product").map.get(key)
        return pl.col("product").cast(pl.String).str.json_path_match(f"$.{key}")

    product_code = raw("line_item_product_code")
    return [
        pl.lit(source).alias("source"),
        pl.lit(source_file).alias("source_file"),
        pl.lit(PROVIDER).alias("provider"),
        pl.lit(PUBLISHER).alias("publisher"),
        raw("bill_invoicing_entity").alias("invoice_issuer"),
        raw("bill_payer_account_id").alias("billing_account_id"),
        raw("line_item_usage_account_id").alias("sub_account_id"),
        # The legacy sample and CUR 2.0 both carry the period start; derive it when not.
        pl.coalesce(
            p("billing_period_start_raw"), p("charge_period_start").dt.truncate("1mo")
        ).alias("billing_period_start"),
        p("charge_period_start").alias("charge_period_start"),
        p("charge_period_end").alias("charge_period_end"),
        line_type.replace_strict(
            CHARGE_CATEGORY, default="Adjustment", return_dtype=pl.String
        ).alias("charge_category"),
        line_type.replace_strict(
            CHARGE_FREQUENCY, default="One-Time", return_dtype=pl.String
        ).alias("charge_frequency"),
        line_type.alias("charge_type"),
        pl.when(line_type.is_in(["SavingsPlanCoveredUsage", "DiscountedUsage"]))
        .then(pl.lit("Committed"))
        .when((line_type == "Usage") & (raw("pricing_term") == "Spot"))
        .then(pl.lit("Dynamic"))
        .when(line_type == "Usage")
        .then(pl.lit("Standard"))
        .alias("pricing_category"),
        pl.coalesce(
            raw("product_product_name"),
            product("product_name"),
            raw("product_servicecode"),
            product_code,
        ).alias("service_name"),
        product_code.replace_strict(
            SERVICE_CATEGORY, default="Other", return_dtype=pl.String
        ).alias("service_category"),
        pl.coalesce(
            raw("product_region_code"), product("region_code")
        ).alias("region_id"),
        raw("line_item_resource_id").alias("resource_id"),
        pl.coalesce(
            raw("product_instance_type"), product("instance_type")
        ).alias("instance_type"),
        raw("product_sku").alias("sku_id"),
        raw("line_item_usage_type").alias("usage_type"),
        # Consumption only on lines that are usage; a negation line would count it twice.
        pl.when(line_type.is_in(USAGE_TYPES)).then(p("usage_amount")).alias("consumed_quantity"),
        pl.when(line_type.is_in(USAGE_TYPES)).then(raw("pricing_unit")).alias("consumed_unit"),
        p("usage_amount").alias("pricing_quantity"),
        raw("pricing_unit").alias("pricing_unit"),
        pl.when(line_type.is_in(SP_TYPES))
        .then(raw("savings_plan_savings_plan_a_r_n"))
        .when(line_type.is_in(RI_TYPES) | ((line_type == "Fee") & ri_arn.is_not_null()))
        .then(ri_arn)
        .alias("commitment_discount_id"),
        pl.when(line_type.is_in(["SavingsPlanCoveredUsage", "DiscountedUsage"]))
        .then(pl.lit("Used"))
        .when(line_type.is_in(["SavingsPlanRecurringFee", "RIFee"]))
        .then(pl.lit("Unused"))
        .alias("commitment_discount_status"),
        p("line_item_unblended_cost").alias("billed_cost"),
        pl.col("__effective_cost").alias("effective_cost"),
        p("pricing_public_on_demand_cost").alias("list_cost"),
        p("billing_currency").alias("billing_currency"),
        p("tags").alias("tags"),
        pl.lit(export_version).alias("export_version"),
    ]


# --- manifests ---------------------------------------------------------------------------


def _billing_period(manifest: dict, key: str) -> str:
    period = manifest.get("billingPeriod")
    start = period.get("start") if isinstance(period, dict) else period
    if isinstance(start, str):
        digits = re.sub(r"[^0-9]", "", start)
        if len(digits) >= 6:
            return f"{digits[:4]}-{digits[4:6]}"
    match = _PERIOD_DIR.search(key)
    if match:
        return match.group(1) or f"{match.group(2)}-{match.group(3)}"
    raise SourceFormatError(
        f"{key}: no billing period in the manifest (billingPeriod) or its path"
        " (BILLING_PERIOD=YYYY-MM); is this an AWS CUR manifest?"
    )


def _resolve(ref: str, name: str, manifest_key: str) -> str:
    """A manifest's S3 URI or key -> the landing store key, from `<name>/...` on.

    The bucket and prefix AWS wrote into the manifest are not the landing store's, so a
    local copy of the bucket (or a different prefix) still works.
    """
    export_dir = rf"(?:^|/)({re.escape(name)}/(?:data/|metadata/|\d{{8}}-\d{{8}}/).+)$"
    in_store = re.search(export_dir, manifest_key)
    root = manifest_key[: in_store.start(1)] if in_store else ""
    path = ref.removeprefix("s3://").split("/", 1)[-1] if ref.startswith("s3://") else ref
    match = re.search(export_dir, path)
    if not match:
        raise SourceFormatError(
            f"{manifest_key}: data file {ref!r} is not under {name}/data/ or {name}/<period>/;"
            " keep the export's folder layout when copying it to the landing store"
        )
    return root + match.group(1)


def _export_from_manifest(store: LandingStore, obj: LandingObject) -> tuple[CurExport, datetime]:
    try:
        manifest = json.loads(store.read_bytes(obj.key))
    except json.JSONDecodeError as exc:
        raise SourceFormatError(
            f"{obj.key}: manifest is not valid JSON ({exc}); re-deliver it"
        ) from exc
    if "dataFiles" in manifest:
        fmt, refs, version_field = "cur2", manifest["dataFiles"], "executionId"
        # The export's folder is its name; the manifest's exportName is the fallback.
        name = (
            obj.key.split("/metadata/")[0].rsplit("/", 1)[-1]
            if "/metadata/" in obj.key
            else manifest.get("exportName", "")
        )
    elif "reportKeys" in manifest:
        fmt, refs, version_field = "cur1", manifest["reportKeys"], "assemblyId"
        name = manifest.get("reportName") or obj.key.rsplit("/", 1)[-1].removesuffix(
            "-Manifest.json"
        )
    else:
        raise SourceFormatError(
            f"{obj.key}: a manifest without dataFiles (CUR 2.0) or reportKeys (legacy CUR);"
            " only AWS CUR manifests belong under the aws_cur prefix"
        )
    export = CurExport(
        name=name,
        billing_period=_billing_period(manifest, obj.key),
        version=manifest.get(version_field) or f"{obj.key}@{obj.etag}",
        manifest_key=obj.key,
        data_keys=tuple(_resolve(ref, name, obj.key) for ref in refs),
        format=fmt,
    )
    return export, obj.last_modified


def find_exports(store: LandingStore, prefix: str = "aws_cur") -> list[CurExport]:
    """The current version of every export-name x billing period under `prefix`.

    An export set to "create new export versions" (and legacy CUR's per-assembly folders)
    leaves several manifests per month; the one delivered last (its object's
    LastModified, then its executionId / assemblyId) is the current bill.
    """
    newest: dict[tuple[str, str], tuple[datetime, str, CurExport]] = {}
    for obj in store.list(prefix):
        if not obj.key.endswith("Manifest.json"):
            continue
        export, delivered = _export_from_manifest(store, obj)
        slot = (export.name, export.billing_period)
        candidate = (delivered, export.version, export)
        if slot not in newest or candidate[:2] > newest[slot][:2]:
            newest[slot] = candidate
    return [newest[slot][2] for slot in sorted(newest)]


def read_export(store: LandingStore, export: CurExport) -> ParseResult:
    """All line items of one export's month, from the files its manifest lists."""
    parts = []
    for key in export.data_keys:
        path = store.local_path(key)
        try:
            if path is not None and not path.exists():
                raise FileNotFoundError(path)
            data = path if path is not None else store.read_bytes(key)
        except FileNotFoundError as exc:
            raise SourceFormatError(
                f"{export.manifest_key} lists {key}, which is not in the landing store;"
                " the delivery may still be uploading: rerun once it is complete"
            ) from exc
        parts.append(
            read_cur_file(data, source_file=key, export_version=export.version, fmt=export.format)
        )
    return ParseResult.concat(parts, BILLING_LINE_ITEMS)
