"""One day of each source: which landing objects to read, and the rows that belong to the day.

This is the seam between the format readers and the orchestration: an ingestion asset
asks for `billing_day(store, day)` and gets normalized rows and quarantine, without
knowing whether they came from CUR Parquet, a FOCUS CSV or a LiteLLM log.

Rows belong to the day of their own timestamp (charge_period_start, ts_start, sample
ts). A quarantined row has no trustworthy timestamp, so it belongs to its file's home
day: the date in the file's path, the first day of a bill's billing period, or else the
day the object was last modified. Summed over days, every row read is counted once.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from connectors import (
    anthropic_usage,
    aws_cur,
    dcgm,
    focus,
    fx,
    gcp_billing,
    generic_jsonl,
    inventory,
    litellm,
    nvidia_smi,
    openai_usage,
    otel_genai,
    prometheus_api,
    vllm,
)
from connectors import lake as lake_io
from connectors.landing import LandingObject, LandingStore, matching, objects_near_day, path_date
from connectors.result import ParseResult, SourceFormatError
from connectors.schemas import (
    BILLING_LINE_ITEMS,
    FLEET_INVENTORY,
    GATEWAY_REQUESTS,
    GPU_SAMPLES,
    QUARANTINE,
    TS,
    VLLM_SAMPLES,
    empty,
)


@dataclass
class DayBatch:
    """The rows of one source for one day, and what was read to produce them."""

    rows: pl.DataFrame
    quarantine: pl.DataFrame
    objects: list[LandingObject]

    @property
    def rows_read(self) -> int:
        return self.rows.height + self.quarantine.height

    def source_files(self) -> list[dict]:
        return [{"key": o.key, "size": o.size, "etag": o.etag} for o in self.objects]


def _home_day(obj: LandingObject) -> date:
    return path_date(obj.key) or obj.last_modified.date()


def _quarantine_for_day(result: ParseResult, home: dict[str, date], day: date) -> pl.DataFrame:
    keys = [k for k, d in home.items() if d == day]
    return result.quarantine.filter(pl.col("source_file").is_in(keys))


def _on_day(df: pl.DataFrame, column: str, day: date) -> pl.DataFrame:
    return df.filter(pl.col(column).dt.date() == day)


def billing_day(
    store: LandingStore,
    day: date,
    *,
    lake: str | Path | None = None,
    bigquery: GcpBillingTable | None = None,
) -> DayBatch:
    """Billing rows charged on `day`: AWS CUR, FOCUS files, the GCP billing export.

    A CUR month is read whole from its newest manifest, so a restated month replaces the
    old numbers; the month's quarantine is filed under the month's first day. GCP export
    rows come from files under gcp_billing/ and, when `bigquery` is given or
    INFERLEDGER_GCP_BILLING_TABLE names the table, from BigQuery: the invoice months that
    changed since the cursor kept in `lake` are pulled whole first (`sync_bigquery`). An
    export row read twice (a month extracted again, or both from a file and BigQuery) has
    one line id and is kept once. A row whose currency has no FX rate on or before `day`
    (fx/*.csv in the landing store over the dbt seed) is quarantined, not converted at 1.
    """
    bigquery = bigquery or GcpBillingTable.from_env()
    period = f"{day.year:04d}-{day.month:02d}"
    parts: list[ParseResult] = []
    home: dict[str, date] = {}
    objects: list[LandingObject] = []
    listed = {o.key: o for o in store.list("aws_cur")}
    for export in aws_cur.find_exports(store):
        if export.billing_period != period:
            continue
        parts.append(aws_cur.read_export(store, export))
        for key in (export.manifest_key, *export.data_keys):
            home[key] = day.replace(day=1)
            if key in listed:
                objects.append(listed[key])
    focus_objects = matching(store.list("focus"), "*.csv", "*.csv.gz", "*.parquet")
    if focus_objects:
        parts.append(focus.read_focus(store))
        for o in focus_objects:
            home[o.key] = _focus_home_day(o)
            objects.append(o)
    gcp_objects = matching(store.list(GCP_BILLING_PREFIX), *GCP_BILLING_PATTERNS)
    if gcp_objects:
        parts.append(gcp_billing.read_gcp_billing(store, GCP_BILLING_PREFIX))
        for o in gcp_objects:
            home[o.key] = _focus_home_day(o)
            objects.append(o)
    result = ParseResult.concat(parts, BILLING_LINE_ITEMS)
    rows = _on_day(result.rows, "charge_period_start", day)
    quarantine = _quarantine_for_day(result, home, day)
    if bigquery is not None:
        if lake is None:
            raise ValueError(
                f"the BigQuery billing export {bigquery.table} is configured but no lake was"
                " given: pass lake= (the pulled months and the cursor are kept there)"
            )
        sync_bigquery(lake, bigquery)
        pulled = _bigquery_day(lake, bigquery.table, day)
        # BigQuery first: the file copy of a row it also has is the one dropped below.
        rows = pl.concat([pulled.rows, rows])
        quarantine = pl.concat([pulled.quarantine, quarantine])
        objects += pulled.objects
    rows = _once_per_gcp_line(rows)
    touched = set(rows.get_column("source_file").unique().to_list()) | {
        k for k, d in home.items() if d == day
    }
    fx_objects = fx.landing_fx_objects(store)
    rows, no_rate = fx.split_missing_rates(rows, fx.load_fx_rates(store))
    return DayBatch(
        rows=rows,
        quarantine=pl.concat([quarantine, no_rate]),
        objects=[o for o in objects if o.key in touched or o.key.startswith("bigquery:")]
        + fx_objects,
    )


def _focus_home_day(obj: LandingObject) -> date:
    d = path_date(obj.key)
    return d if d is not None else obj.last_modified.date()


# --- GCP billing export: files and BigQuery ------------------------------------------------

GCP_BILLING_PREFIX = "gcp_billing"
GCP_BILLING_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json", "*.parquet")
GCP_TABLE_ENV = "INFERLEDGER_GCP_BILLING_TABLE"
GCP_PROJECT_ENV = "INFERLEDGER_GCP_PROJECT"  # the project BigQuery jobs run (and bill) in
# Per table: rows/date=<invoice month's first day>/ and quarantine/date=.../ hold each
# pulled invoice month whole; cursor.parquet the latest export_time pulled.
GCP_STATE = "_state/gcp_billing"


@dataclass(frozen=True)
class GcpBillingTable:
    """The BigQuery detailed billing export to pull, and how to reach it."""

    table: str  # project.dataset.gcp_billing_export_resource_v1_<account>
    client: Callable[[], Any]  # -> google.cloud.bigquery.Client

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GcpBillingTable | None:
        """INFERLEDGER_GCP_BILLING_TABLE, else None; credentials from Application Default
        Credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity), never a file here."""
        env = os.environ if env is None else env
        table = env.get(GCP_TABLE_ENV, "").strip()
        if not table:
            return None
        project = env.get(GCP_PROJECT_ENV) or table.split(".", 1)[0]

        def client() -> Any:  # a google.cloud.bigquery.Client
            from google.cloud import bigquery

            return bigquery.Client(project=project)

        return cls(table=table, client=client)


def _state_root(lake: str | Path, table: str) -> Path:
    return Path(lake) / GCP_STATE / table


def bigquery_cursor(lake: str | Path, table: str) -> datetime | None:
    """The latest export_time already pulled from `table` into the lake, or None."""
    path = _state_root(lake, table) / "cursor.parquet"
    if not path.exists():
        return None
    return pl.read_parquet(path).item(0, "export_time")


def sync_bigquery(lake: str | Path, source: GcpBillingTable) -> list[gcp_billing.ChangedMonth]:
    """Pull every invoice month that received rows since the cursor, whole, into the lake.

    A changed month replaces its stored copy (Google appends late rows and corrections to
    a month for weeks), so a rerun never counts a row twice. The cursor moves only after
    the months are written: a run that dies in between pulls the same months again.
    """
    client = source.client()
    changed = gcp_billing.changed_invoice_months(
        client, source.table, since_export_time=bigquery_cursor(lake, source.table)
    )
    state = f"{GCP_STATE}/{source.table}"
    for month in changed:
        pulled, _ = gcp_billing.read_bigquery(
            client, source.table, since_export_time=None, invoice_months=[month.invoice_month]
        )
        first_day = _invoice_month_day(month.invoice_month)
        lake_io.replace_partition(lake, f"{state}/rows", first_day, pulled.rows)
        lake_io.replace_partition(lake, f"{state}/quarantine", first_day, pulled.quarantine)
    if changed:
        latest = max(m.latest_export_time for m in changed)
        cursor = pl.DataFrame(
            {"table_id": [source.table], "export_time": [latest], "pulled_at": [datetime.now(UTC)]},
            schema={"table_id": pl.String, "export_time": TS, "pulled_at": TS},
        )
        path = _state_root(lake, source.table) / "cursor.parquet"
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.parquet")
        cursor.write_parquet(tmp)
        os.replace(tmp, path)
    return changed


def _invoice_month_day(invoice_month: str) -> date:
    return date(int(invoice_month[:4]), int(invoice_month[4:6]), 1)


def _bigquery_day(lake: str | Path, table: str, day: date) -> DayBatch:
    """The pulled rows charged on `day`; a month's quarantine on its first day."""
    root = _state_root(lake, table)
    month_files = sorted((root / "rows").glob("date=*/part-0.parquet"))
    rows = (
        pl.scan_parquet(month_files, hive_partitioning=False)
        .filter(pl.col("charge_period_start").dt.date() == day)
        .collect()
        if month_files
        else empty(BILLING_LINE_ITEMS)
    )
    quarantine_file = root / "quarantine" / f"date={day.isoformat()}" / "part-0.parquet"
    quarantine = pl.read_parquet(quarantine_file) if quarantine_file.exists() else empty(QUARANTINE)
    months = set(rows.get_column("billing_period_start").dt.date().unique().to_list())
    if quarantine.height:
        months.add(day)
    objects = []
    for first_day in sorted(months):
        path = root / "rows" / f"date={first_day.isoformat()}" / "part-0.parquet"
        version = pl.read_parquet(path, columns=["export_version"]).get_column("export_version")
        objects.append(
            LandingObject(
                key=f"bigquery:{table}#invoice_month={first_day:%Y%m}",
                size=path.stat().st_size,
                etag=version.max() or "",
                last_modified=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
            )
        )
    return DayBatch(rows=rows, quarantine=quarantine, objects=objects)


def _once_per_gcp_line(rows: pl.DataFrame) -> pl.DataFrame:
    """A GCP export row's line id is its content, so the same row read again is kept once."""
    gcp = pl.col("source") == gcp_billing.SOURCE
    if not rows.select(gcp.any()).item():
        return rows
    once = rows.filter(gcp).unique("source_line_id", keep="first", maintain_order=True)
    return pl.concat([once, rows.filter(~gcp)])


def gateway_day(
    store: LandingStore,
    day: date,
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> DayBatch:
    """Gateway requests that started on `day`, from every format under gateway_logs/.

    `gateway_logs/<format>/**`: litellm (JSONL), openai_usage and anthropic_usage (API
    response pages, .json or .jsonl), otel_genai (OTLP JSON), generic (JSONL read through
    the nearest `mapping.json` above the file). Files of the day and its neighbours are
    read; each format counts a request id once across its files.
    """
    options = {"self_hosted_deployments": self_hosted_deployments,
               "customer_salt": customer_salt}
    unknown = sorted({o.key.split("/")[1] for o in store.list("gateway_logs")
                      if o.key.count("/") >= 2} - set(_GATEWAY_READERS))
    if unknown:
        raise SourceFormatError(
            f"gateway_logs/: unknown format folder(s) {unknown}; use one of "
            f"{sorted(_GATEWAY_READERS)} (generic with a mapping.json for other gateways)")
    parts: list[ParseResult] = []
    objects: list[LandingObject] = []
    for fmt, read in _GATEWAY_READERS.items():
        found = objects_near_day(
            matching(store.list(f"gateway_logs/{fmt}"), *_GATEWAY_PATTERNS[fmt]), day)
        if fmt == "generic":
            found = [o for o in found if not o.key.endswith("/mapping.json")]
        if found:
            parts.append(read(store, [o.key for o in found], **options))
            objects += found
    if not parts:
        return DayBatch(empty(GATEWAY_REQUESTS), empty(QUARANTINE), [])
    result = ParseResult.concat(parts, GATEWAY_REQUESTS)
    home = {o.key: _home_day(o) for o in objects}
    return DayBatch(
        rows=_on_day(result.rows, "ts_start", day),
        quarantine=_quarantine_for_day(result, home, day),
        objects=objects,
    )


def _read_generic(store: LandingStore, keys: list[str], **options: object) -> ParseResult:
    """Each generic file through the mapping.json nearest above it; a request id is kept
    once per mapping's source."""
    parts = []
    for key in keys:
        mapping_key = _nearest(store, key, "mapping.json")
        if mapping_key is None:
            raise SourceFormatError(
                f"{key}: no mapping.json in its folder or above it under gateway_logs/generic/; "
                "add one that maps the log's fields (see connectors/generic_jsonl.py)")
        mapping = generic_jsonl.Mapping.from_config(
            json.loads(store.read_bytes(mapping_key)), where=mapping_key)
        parts.append(generic_jsonl.read_generic_jsonl(
            _read(store, key), mapping, source_file=key, **options))
    return ParseResult.concat(parts, GATEWAY_REQUESTS)


def _nearest(store: LandingStore, key: str, name: str) -> str | None:
    folder = key.rsplit("/", 1)[0]
    while folder.count("/") >= 1:
        candidate = f"{folder}/{name}"
        if any(o.key == candidate for o in store.list(folder)):
            return candidate
        folder = folder.rsplit("/", 1)[0]
    return None


def _read(store: LandingStore, key: str) -> bytes:
    path = store.local_path(key)
    return path.read_bytes() if path is not None else store.read_bytes(key)


_GATEWAY_READERS = {
    "litellm": litellm.read_litellm,
    "openai_usage": openai_usage.read_openai_usage_files,
    "anthropic_usage": anthropic_usage.read_anthropic_usage_files,
    "otel_genai": otel_genai.read_otel_genai_files,
    "generic": _read_generic,
}
_JSONL = ("*.jsonl", "*.jsonl.gz")
_PAGES = ("*.json", "*.json.gz", *_JSONL)
_GATEWAY_PATTERNS = {"litellm": _JSONL, "openai_usage": _PAGES, "anthropic_usage": _PAGES,
                     "otel_genai": _PAGES, "generic": _JSONL}
_TELEMETRY_PATTERNS = ("*.csv", "*.csv.gz", "*.prom", "*.prom.gz", "*.json", "*.json.gz")
# vLLM's own metrics live beside the GPU telemetry but are a table of their own.
VLLM_PREFIX = "gpu_telemetry/vllm/"


def telemetry_day(store: LandingStore, day: date) -> DayBatch:
    """GPU samples taken on `day`: DCGM long CSV, Prometheus text and query_range JSON,
    nvidia-smi CSV (recognized by its header; local times in the zone of the nearest
    `nvidia_smi.json` {"timezone": ...} above the file, else UTC). Files under
    gpu_telemetry/vllm/ are vLLM's metrics, read by vllm_day."""
    objects = [o for o in objects_near_day(
        matching(store.list("gpu_telemetry"), *_TELEMETRY_PATTERNS), day)
        if not o.key.startswith(VLLM_PREFIX) and not o.key.endswith("/nvidia_smi.json")]
    if not objects:
        return DayBatch(empty(GPU_SAMPLES), empty(QUARANTINE), [])
    parts = []
    for o in objects:
        name = o.key.removesuffix(".gz")
        if name.endswith(".json"):
            parts.append(prometheus_api.parse_query_range(_read(store, o.key), source_file=o.key))
            continue
        data = dcgm.gunzip_if_compressed(_read(store, o.key), o.key)
        if name.endswith(".csv") and nvidia_smi.looks_like_nvidia_smi(data[:4096]):
            settings = _nearest(store, o.key, "nvidia_smi.json")
            tz = (json.loads(store.read_bytes(settings)).get("timezone", "UTC") if settings
                  else "UTC")
            parts.append(nvidia_smi.read_nvidia_smi_csv(data, source_file=o.key, timezone=tz))
        else:
            parts.append(dcgm.read_gpu_telemetry_bytes(data, o.key))
    result = ParseResult.concat(parts, GPU_SAMPLES)
    home = {o.key: _home_day(o) for o in objects}
    return DayBatch(
        rows=_on_day(result.rows, "ts", day),
        quarantine=_quarantine_for_day(result, home, day),
        objects=objects,
    )


def vllm_day(store: LandingStore, day: date) -> DayBatch:
    """vLLM counter samples (VLLM_SAMPLES) taken on `day` and the day before it, so the
    first hour's increases have their baseline; vllm.vllm_hourly turns them into the
    vllm_hourly table (keep the hours of `day`)."""
    objects = objects_near_day(
        matching(store.list(VLLM_PREFIX.rstrip("/")), "*.prom", "*.prom.gz", "*.txt",
                 "*.txt.gz"), day)
    if not objects:
        return DayBatch(empty(VLLM_SAMPLES), empty(QUARANTINE), [])
    result = ParseResult.concat(
        [vllm.read_vllm_metrics(_read(store, o.key), source_file=o.key) for o in objects],
        VLLM_SAMPLES)
    rows = result.rows.filter(pl.col("ts").dt.date().is_between(day - timedelta(days=1), day))
    home = {o.key: _home_day(o) for o in objects}
    return DayBatch(rows=rows, quarantine=_quarantine_for_day(result, home, day),
                    objects=objects)


def inventory_snapshot(store: LandingStore) -> DayBatch:
    """The whole fleet inventory as it stands in the landing store."""
    objects = matching(store.list("inventory"), "*.csv")
    if not objects:
        return DayBatch(empty(FLEET_INVENTORY), empty(QUARANTINE), [])
    result = inventory.read_inventory(store)
    return DayBatch(rows=result.rows, quarantine=result.quarantine, objects=objects)
