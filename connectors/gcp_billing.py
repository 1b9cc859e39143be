"""Google Cloud Billing detailed export (`gcp_billing_export_resource_v1_*`) -> billing_line_items.

The same rows are read from two places:

- **BigQuery**, with google-cloud-bigquery: `read_bigquery` pulls the rows exported after a
  cursor (`export_time`), `changed_invoice_months` says which invoice months (and usage
  days) received rows after it. Google appends late rows and corrections to a month for
  days after it closes, so the caller re-reads a changed month whole
  (`read_bigquery(..., invoice_months=[...])`) and replaces it.
- **Files** under `gcp_billing/` (JSONL, JSONL.gz, Parquet), as `bq extract` or a scheduled
  query writes the table.

Mapping (FOCUS-aligned, as in Google's own FOCUS view of this export):

| billing_line_items | export |
| --- | --- |
| billed_cost | cost (before credits) |
| effective_cost | cost + sum(credits.amount): the net cost; credits are negative |
| list_cost | cost_at_list |
| charge_category | cost_type: regular -> Usage, tax -> Tax, adjustment and rounding_error -> |
| | Adjustment (CHARGE_CATEGORY) |
| billing_period_start | invoice.month (YYYYMM) |
| sub_account_id | project.id |
| instance_type | system_labels `compute.googleapis.com/machine_spec` |
| tags | labels, as a JSON object |
| export_version | `<invoice.month>@<latest export_time of the month's rows read>` |
| commitment_discount_id | the id of a committed use discount credit on the row |

Money is parsed from its text (a double in BigQuery and Parquet goes through its shortest
round-trip text), never summed as float. A row with a missing or non-numeric cost or
credit, an impossible time, no invoice month, an unknown cost_type or currency goes to
quarantine with the reason; `rows_read == rows_written + rows_quarantined`.
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from connectors.currency import currency_reason, money_reason, normalized_currency, to_money
from connectors.focus import content_ids, parse_utc, timestamp_reason
from connectors.landing import LandingStore, matching
from connectors.result import ParseResult, SourceFormatError
from connectors.schemas import BILLING_LINE_ITEMS, MONEY, QUANTITY, QUARANTINE, TS, conform

SOURCE = "gcp_billing"
PROVIDER = "Google Cloud"
MACHINE_SPEC_LABEL = "compute.googleapis.com/machine_spec"

_KV = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
# The export's columns this connector reads, every leaf as text: JSON numbers, Parquet
# doubles and BigQuery timestamps all become text first, so one parsing path serves all
# three inputs and money never passes through a float sum. Columns not listed (tags,
# subscription, consumption_model, ...) are ignored.
RAW_SCHEMA: dict[str, pl.DataType] = {
    "billing_account_id": pl.String,
    "service": pl.Struct({"id": pl.String, "description": pl.String}),
    "sku": pl.Struct({"id": pl.String, "description": pl.String}),
    "usage_start_time": pl.String,
    "usage_end_time": pl.String,
    "project": pl.Struct({"id": pl.String, "name": pl.String, "labels": _KV}),
    "labels": _KV,
    "system_labels": _KV,
    "location": pl.Struct(
        {"location": pl.String, "country": pl.String, "region": pl.String, "zone": pl.String}
    ),
    "resource": pl.Struct({"name": pl.String, "global_name": pl.String}),
    "export_time": pl.String,
    "cost": pl.String,
    "currency": pl.String,
    "currency_conversion_rate": pl.String,
    "usage": pl.Struct(
        {
            "amount": pl.String,
            "unit": pl.String,
            "amount_in_pricing_units": pl.String,
            "pricing_unit": pl.String,
        }
    ),
    "credits": pl.List(
        pl.Struct(
            {
                "name": pl.String,
                "amount": pl.String,
                "full_name": pl.String,
                "id": pl.String,
                "type": pl.String,
            }
        )
    ),
    "invoice": pl.Struct({"month": pl.String}),
    "cost_type": pl.String,
    "adjustment_info": pl.Struct(
        {"id": pl.String, "description": pl.String, "mode": pl.String, "type": pl.String}
    ),
    "price": pl.Struct(
        {
            "effective_price": pl.String,
            "tier_start_amount": pl.String,
            "unit": pl.String,
            "pricing_unit_quantity": pl.String,
        }
    ),
    "cost_at_list": pl.String,
    "transaction_type": pl.String,
    "seller_name": pl.String,
}
REQUIRED = ["usage_start_time", "usage_end_time", "export_time", "cost", "currency", "invoice"]

CHARGE_CATEGORY = {
    "regular": "Usage",
    "tax": "Tax",
    "adjustment": "Adjustment",
    "rounding_error": "Adjustment",
}
# FOCUS ServiceCategory for the services an inference stack on Google Cloud bills.
SERVICE_CATEGORY = {
    "Compute Engine": "Compute",
    "Kubernetes Engine": "Compute",
    "Cloud Run": "Compute",
    "Vertex AI": "AI and Machine Learning",
    "Gemini API": "AI and Machine Learning",
    "Cloud TPU": "AI and Machine Learning",
    "Cloud Storage": "Storage",
    "Filestore": "Storage",
    "Networking": "Networking",
    "Cloud Load Balancing": "Networking",
    "BigQuery": "Analytics",
    "Cloud Logging": "Management and Governance",
    "Cloud Monitoring": "Management and Governance",
    "Secret Manager": "Security",
}
CUD_CREDIT = "COMMITTED_USAGE_DISCOUNT"  # also matches ..._DOLLAR_BASE (flexible CUDs)
_TABLE_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class ChangedMonth:
    """An invoice month that received rows after the cursor, and where they fell."""

    invoice_month: str  # YYYYMM
    usage_days: tuple[date, ...]  # UTC days of usage_start_time of the new rows
    latest_export_time: datetime


# --- text-leaf canonical form -------------------------------------------------------


def _as_text(expr: pl.Expr, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Rebuild `expr` (of dtype `source`) with the shape of `target`, every leaf as text.

    Struct fields missing in the source become null; extra ones are dropped, so exports
    from older or newer schema versions read alike.
    """
    if isinstance(target, pl.Struct):
        if not isinstance(source, pl.Struct):
            return pl.lit(None, dtype=target)
        have = {f.name: f.dtype for f in source.fields}
        rebuilt = pl.struct(
            [
                _as_text(expr.struct.field(f.name), have[f.name], f.dtype).alias(f.name)
                if f.name in have
                else pl.lit(None, dtype=f.dtype).alias(f.name)
                for f in target.fields
            ]
        )
        return pl.when(expr.is_null()).then(None).otherwise(rebuilt)
    if isinstance(target, pl.List):
        if not isinstance(source, (pl.List, pl.Array)):
            return pl.lit(None, dtype=target)
        inner = source.inner
        return expr.list.eval(_as_text(pl.element(), inner, target.inner))
    if isinstance(source, pl.Datetime):
        utc = (
            expr.dt.replace_time_zone("UTC")
            if source.time_zone is None
            else expr.dt.convert_time_zone("UTC")
        )
        return utc.dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")
    if source.is_nested():
        # A nested value where text belongs: kept as JSON, so the row's reason shows it.
        return pl.struct(expr.alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")
    return expr.cast(pl.String)


def canonical_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Export rows (from JSON, Parquet or BigQuery's Arrow) in RAW_SCHEMA's text form."""
    return df.select(
        [
            (
                _as_text(pl.col(name), df.schema[name], dtype)
                if name in df.columns
                else pl.lit(None, dtype=dtype)
            ).alias(name)
            for name, dtype in RAW_SCHEMA.items()
        ]
    )


# --- normalization ------------------------------------------------------------------


def normalize_export_rows(rows: pl.DataFrame, *, source_file: str) -> ParseResult:
    """Map export rows (any shape `canonical_rows` accepts) to billing_line_items.

    `source_file` names where the rows came from (a landing key, or `bigquery:<table>`);
    row numbers in quarantine are 1-based positions in `rows`.
    """
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise SourceFormatError(
            f"{source_file}: required billing export column(s) {missing} missing"
            f" (found {sorted(rows.columns)}); read the detailed (resource-level) export"
            " gcp_billing_export_resource_v1_* whole (SELECT *)"
        )
    raw = canonical_rows(rows).with_row_index("_row_number", offset=1)
    raw = raw.with_columns(pl.col("_row_number").cast(pl.Int64))
    raw_columns = list(RAW_SCHEMA)

    credit_amounts = pl.col("credits").list.eval(
        pl.element().struct.field("amount").str.strip_chars().str.to_decimal(scale=MONEY.scale)
    )
    month = pl.col("invoice").struct.field("month").str.strip_chars()
    parsed: dict[str, pl.Expr] = {
        "billed_cost": to_money(pl.col("cost")),
        "list_cost": to_money(pl.col("cost_at_list")),
        "credits_total": credit_amounts.list.sum().fill_null(0),
        "credits_unparsed": (
            credit_amounts.list.eval(pl.element().is_null().sum()).list.first().fill_null(0)
        ),
        "consumed_quantity": _quantity(pl.col("usage").struct.field("amount")),
        "pricing_quantity": _quantity(pl.col("usage").struct.field("amount_in_pricing_units")),
        "charge_period_start": parse_utc(pl.col("usage_start_time")),
        "charge_period_end": parse_utc(pl.col("usage_end_time")),
        "export_time": parse_utc(pl.col("export_time")),
        "billing_period_start": month.str.strptime(TS, "%Y%m", strict=False, exact=True),
        "billing_currency": normalized_currency(pl.col("currency")),
        "cost_type": pl.col("cost_type").str.strip_chars().str.to_lowercase(),
    }
    staged = raw.with_columns([e.alias(f"__{k}") for k, e in parsed.items()])

    def p(name: str) -> pl.Expr:
        return pl.col(f"__{name}")

    usage = pl.col("usage")
    reasons = [
        pl.when(pl.col("cost").is_null()).then(pl.lit("missing cost")),
        money_reason(pl.col("cost"), p("billed_cost"), "cost"),
        money_reason(pl.col("cost_at_list"), p("list_cost"), "cost_at_list"),
        pl.when(p("credits_unparsed") > 0).then(
            pl.format(
                "non-numeric credits.amount in {}",
                pl.col("credits").list.eval(pl.element().struct.field("amount")).list.join(", "),
            )
        ),
        pl.when(usage.struct.field("amount").is_not_null() & p("consumed_quantity").is_null()).then(
            pl.format("non-numeric quantity '{}' in usage.amount", usage.struct.field("amount"))
        ),
        timestamp_reason(
            pl.col("usage_start_time"), p("charge_period_start"), "usage_start_time", required=True
        ),
        timestamp_reason(
            pl.col("usage_end_time"), p("charge_period_end"), "usage_end_time", required=True
        ),
        timestamp_reason(pl.col("export_time"), p("export_time"), "export_time", required=True),
        pl.when(month.is_null())
        .then(pl.lit("missing invoice.month"))
        .when(p("billing_period_start").is_null())
        .then(pl.format("invoice.month '{}' is not YYYYMM", month)),
        pl.when(p("cost_type").is_null())
        .then(pl.lit("missing cost_type"))
        .when(~p("cost_type").is_in(list(CHARGE_CATEGORY)))
        .then(pl.format("unknown cost_type '{}'", pl.col("cost_type"))),
        currency_reason(p("billing_currency"), "currency"),
    ]
    reason = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    staged = staged.with_columns(reason.replace("", None).alias("_reason"))
    good = staged.filter(pl.col("_reason").is_null())
    # Not result.split_valid: it casts each raw column to text, which nested columns
    # refuse; the export row is kept as its own JSON object instead.
    quarantined = conform(
        staged.filter(pl.col("_reason").is_not_null()).select(
            pl.lit(SOURCE).alias("source"),
            pl.lit(source_file).alias("source_file"),
            pl.col("_row_number").alias("row_number"),
            pl.col("_reason").alias("reason"),
            pl.struct(raw_columns).struct.json_encode().alias("raw"),
        ),
        QUARANTINE,
    )
    ids = content_ids(_row_text(good), ["row"]) if good.height else pl.Series([], dtype=pl.String)
    lines = good.select(_line_items(source_file)).with_columns(source_line_id=ids)
    result = ParseResult(
        rows=conform(lines, BILLING_LINE_ITEMS),
        quarantine=quarantined,
        rows_read=raw.height,
        files=[source_file],
    )
    result.check_balance()
    return result


def _quantity(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.to_decimal(scale=QUANTITY.scale)


def _row_text(df: pl.DataFrame) -> pl.DataFrame:
    """A row's identity as text, from parsed values (not the raw spelling), so the same
    export row read from JSON, Parquet or BigQuery gets the same line id."""
    parsed = [
        "charge_period_start",
        "charge_period_end",
        "export_time",
        "billed_cost",
        "credits_total",
        "consumed_quantity",
        "pricing_quantity",
        "cost_type",
        "billing_currency",
    ]
    as_is = [
        "billing_account_id",
        "service",
        "sku",
        "project",
        "labels",
        "system_labels",
        "location",
        "resource",
        "invoice",
        "adjustment_info",
        "seller_name",
    ]
    return df.select(
        pl.struct(
            [pl.col(f"__{c}").cast(pl.String).alias(c) for c in parsed]
            + [pl.col(c).alias(c) for c in as_is]
        )
        .struct.json_encode()
        .alias("row")
    )


def _key_values(column: str) -> pl.Expr:
    """A `[{key, value}]` label list as JSON object text; null when empty."""
    labels = pl.col(column).fill_null(pl.lit([], dtype=_KV))
    encoded = (
        pl.struct(labels.list.to_map().alias("v"))
        .struct.json_encode()
        .str.slice(5)
        .str.strip_suffix("}")
    )
    return pl.when(labels.list.len() > 0).then(encoded)


def _label(column: str, key: str) -> pl.Expr:
    return (
        pl.col(column)
        .list.eval(
            pl.element().filter(pl.element().struct.field("key") == key).struct.field("value")
        )
        .list.first()
    )


def _line_items(source_file: str) -> list[pl.Expr]:
    def p(name: str) -> pl.Expr:
        return pl.col(f"__{name}")

    month = pl.col("invoice").struct.field("month").str.strip_chars()
    sku_description = pl.col("sku").struct.field("description")
    cud_credit = pl.col("credits").list.eval(
        pl.element()
        .filter(pl.element().struct.field("type").str.starts_with(CUD_CREDIT))
        .struct.field("id")
    )
    latest_export = p("export_time").max().over(month)
    return [
        pl.lit(SOURCE).alias("source"),
        pl.lit(source_file).alias("source_file"),
        pl.lit(PROVIDER).alias("provider"),
        # Marketplace rows name their seller; Google's own services have none.
        pl.coalesce(pl.col("seller_name"), pl.lit(PROVIDER)).alias("publisher"),
        pl.lit(PROVIDER).alias("invoice_issuer"),
        pl.col("billing_account_id").alias("billing_account_id"),
        pl.col("project").struct.field("id").alias("sub_account_id"),
        p("billing_period_start").alias("billing_period_start"),
        p("charge_period_start").alias("charge_period_start"),
        p("charge_period_end").alias("charge_period_end"),
        p("cost_type")
        .replace_strict(CHARGE_CATEGORY, return_dtype=pl.String)
        .alias("charge_category"),
        pl.when(p("cost_type") != "regular")
        .then(pl.lit("One-Time"))
        .when(sku_description.str.starts_with("Commitment"))
        .then(pl.lit("Recurring"))
        .otherwise(pl.lit("Usage-Based"))
        .alias("charge_frequency"),
        p("cost_type").alias("charge_type"),
        pl.when(p("cost_type") != "regular")
        .then(None)
        .when(cud_credit.list.len() > 0)
        .then(pl.lit("Committed"))
        .when(sku_description.str.contains("(?i)spot|preemptible"))
        .then(pl.lit("Dynamic"))
        .otherwise(pl.lit("Standard"))
        .alias("pricing_category"),
        pl.col("service").struct.field("description").alias("service_name"),
        pl.col("service")
        .struct.field("description")
        .replace_strict(SERVICE_CATEGORY, default="Other", return_dtype=pl.String)
        .alias("service_category"),
        pl.col("location").struct.field("region").alias("region_id"),
        pl.coalesce(
            pl.col("resource").struct.field("global_name"), pl.col("resource").struct.field("name")
        ).alias("resource_id"),
        pl.col("resource").struct.field("name").alias("resource_name"),
        _label("system_labels", MACHINE_SPEC_LABEL).alias("instance_type"),
        pl.col("sku").struct.field("id").alias("sku_id"),
        sku_description.alias("usage_type"),
        p("consumed_quantity").alias("consumed_quantity"),
        pl.col("usage").struct.field("unit").alias("consumed_unit"),
        p("pricing_quantity").alias("pricing_quantity"),
        pl.col("usage").struct.field("pricing_unit").alias("pricing_unit"),
        cud_credit.list.first().alias("commitment_discount_id"),
        pl.when(cud_credit.list.len() > 0).then(pl.lit("Used")).alias("commitment_discount_status"),
        p("billed_cost").alias("billed_cost"),
        (p("billed_cost") + p("credits_total")).cast(MONEY).alias("effective_cost"),
        p("list_cost").alias("list_cost"),
        p("billing_currency").alias("billing_currency"),
        _key_values("labels").alias("tags"),
        pl.format("{}@{}", month, latest_export.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")).alias(
            "export_version"
        ),
    ]


# --- files --------------------------------------------------------------------------


def read_gcp_billing_file(data: bytes | Path, *, source_file: str) -> ParseResult:
    """Normalize one file of export rows: JSONL, JSONL.gz or Parquet (told apart by content)."""
    if isinstance(data, Path):
        data = data.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        if data[:4] == b"PAR1":
            rows = pl.read_parquet(io.BytesIO(data))
        else:
            # Leaves read as text: a JSON number keeps the digits the export wrote.
            rows = pl.read_ndjson(io.BytesIO(data), schema=RAW_SCHEMA) if data.strip() else None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceFormatError(
            f"{source_file}: cannot be read as JSONL or Parquet rows of the billing export"
            f" ({exc}); re-extract the table (bq extract --destination_format"
            " NEWLINE_DELIMITED_JSON or PARQUET)"
        ) from exc
    if rows is None:
        rows = pl.DataFrame(schema=RAW_SCHEMA)
    return normalize_export_rows(rows, source_file=source_file)


def read_gcp_billing(store: LandingStore, prefix: str = "gcp_billing") -> ParseResult:
    """Every export file under `prefix`; one export_version per invoice month across files."""
    parts = []
    for obj in matching(store.list(prefix), "*.jsonl", "*.jsonl.gz", "*.json", "*.parquet"):
        path = store.local_path(obj.key)
        parts.append(
            read_gcp_billing_file(
                path if path is not None else store.read_bytes(obj.key), source_file=obj.key
            )
        )
    result = ParseResult.concat(parts, BILLING_LINE_ITEMS)
    return _one_version_per_month(result)


def _one_version_per_month(result: ParseResult) -> ParseResult:
    """Rows of one month read from several files carry the month's latest version.

    Versions are `<YYYYMM>@<ISO time>`, so the text maximum is the latest export.
    """
    rows = result.rows.with_columns(
        pl.col("export_version").max().over(pl.col("billing_period_start"))
    )
    return ParseResult(rows, result.quarantine, result.rows_read, result.files)


# --- BigQuery -----------------------------------------------------------------------


def _table_ref(table: str) -> str:
    if not _TABLE_ID.match(table) or table.count(".") != 2:
        raise ValueError(
            "table must be 'project.dataset.gcp_billing_export_resource_v1_<account>',"
            f" not {table!r}"
        )
    return f"`{table}`"


def _query(client: Any, sql: str, params: list[Any]) -> pl.DataFrame:
    from google.cloud import bigquery

    job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params))
    # REST pages, no BigQuery Storage API: one less service to grant and to fake.
    table = job.result().to_arrow(create_bqstorage_client=False)
    return pl.from_arrow(table)  # type: ignore[return-value]


def _since_filter(since_export_time: datetime | None) -> tuple[str, list[Any]]:
    from google.cloud import bigquery

    if since_export_time is None:
        return "TRUE", []
    if since_export_time.tzinfo is None:
        raise ValueError("since_export_time must be timezone-aware (UTC)")
    param = bigquery.ScalarQueryParameter(
        "since", "TIMESTAMP", since_export_time.astimezone(UTC)
    )
    return "export_time > @since", [param]


def changed_invoice_months(
    client: Any,
    table: str,
    *,
    since_export_time: datetime | None,
) -> list[ChangedMonth]:
    """Invoice months with rows exported after `since_export_time` (all months when None).

    A late row for an earlier day names its month here; the caller re-reads that month
    whole and reruns the usage days listed.
    """
    where, params = _since_filter(since_export_time)
    found = _query(
        client,
        "SELECT invoice.month AS invoice_month,"
        " CAST(usage_start_time AS DATE) AS usage_day,"
        " MAX(export_time) AS latest_export_time"
        f" FROM {_table_ref(table)} WHERE {where}"
        " GROUP BY invoice_month, usage_day ORDER BY invoice_month, usage_day",
        params,
    )
    if found.is_empty():
        return []
    months = (
        found.filter(pl.col("invoice_month").is_not_null())
        .group_by("invoice_month")
        .agg(pl.col("usage_day").drop_nulls().sort(), pl.col("latest_export_time").max())
        .sort("invoice_month")
    )
    return [
        ChangedMonth(
            invoice_month=m["invoice_month"],
            usage_days=tuple(m["usage_day"]),
            latest_export_time=m["latest_export_time"].astimezone(UTC),
        )
        for m in months.iter_rows(named=True)
    ]


def read_bigquery(
    client: Any,
    table: str,
    *,
    since_export_time: datetime | None,
    invoice_months: list[str] | None = None,
) -> tuple[ParseResult, datetime | None]:
    """Rows of the detailed export exported after `since_export_time`, normalized.

    `since_export_time=None` reads everything (restricted to `invoice_months` when
    given: pass the months `changed_invoice_months` names to replace them whole).
    Returns the rows and the next cursor: the latest export_time read, or the cursor
    given when nothing new arrived.
    """
    where, params = _since_filter(since_export_time)
    if invoice_months is not None:
        from google.cloud import bigquery

        where += " AND invoice.month IN UNNEST(@months)"
        params.append(bigquery.ArrayQueryParameter("months", "STRING", list(invoice_months)))
    rows = _query(
        client,
        f"SELECT * FROM {_table_ref(table)} WHERE {where} ORDER BY export_time, usage_start_time",
        params,
    )
    result = normalize_export_rows(rows, source_file=f"bigquery:{table}")
    latest = rows.get_column("export_time").max() if rows.height else None
    return result, latest if latest is not None else since_export_time
