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
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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


@dataclass
class SourceStream:
    """A source over a window of days, streamed: parts of rows (of any day, each row dated
    by its own timestamp column) in bounded memory, and every object read.

    The files of the window's days and of their neighbours are each read once, so a run
    over several days parses a file once, not once per day it might hold rows of. A
    quarantined row belongs to its file's home day (`home`).
    """

    parts: Iterator[ParseResult]
    objects: list[LandingObject]
    ts_column: str
    # Home days of sources that are not landing files (a database or an API, pulled per day).
    pulled: dict[str, date] = field(default_factory=dict)

    def home(self) -> dict[str, date]:
        return {**{o.key: _home_day(o) for o in self.objects}, **self.pulled}

    def objects_for(self, day: date) -> list[LandingObject]:
        return objects_near_day(self.objects, day)

    def collect_day(self, day: date, schema: dict[str, pl.DataType]) -> DayBatch:
        """The whole stream, kept to `day`: for small days and tests."""
        result = ParseResult.concat(self.parts, schema)
        return DayBatch(
            rows=_on_day(result.rows, self.ts_column, day),
            quarantine=_quarantine_for_day(result, self.home(), day),
            objects=self.objects_for(day),
        )


def _objects_near_days(objects: list[LandingObject], days: list[date], *,
                       lake: str | Path | None = None, table: str | None = None
                       ) -> list[LandingObject]:
    """Objects that may hold rows of `days`: those dated within a day of one of them, less
    the neighbours an earlier run already read whole and found no row of `days` in (the
    manifests of `table` in `lake` keep each file's first and last row time). So a daily
    run reads yesterday's and tomorrow's files only when rows spill across midnight."""
    keys = {o.key for d in days for o in objects_near_day(objects, d)}
    near = [o for o in objects if o.key in keys]
    if lake is None or table is None:
        return near
    seen = _known_time_ranges(lake, table, min(days) - timedelta(days=2),
                              max(days) + timedelta(days=2))
    wanted = set(days)
    kept = []
    for o in near:
        home = path_date(o.key)
        span = seen.get((o.key, o.size, o.etag))
        if home is not None and home not in wanted and span is not None:
            first, last = span
            if not any(first <= d <= last for d in wanted):
                continue  # read before: all its rows are on other days
        kept.append(o)
    return kept


def _known_time_ranges(lake: str | Path, table: str, first: date, last: date
                       ) -> dict[tuple[str, int, str], tuple[date, date]]:
    """(key, size, etag) -> dates of the first and last row, from the manifests of
    first..last: a file changed since (new size or etag) is not in it."""
    out: dict[tuple[str, int, str], tuple[date, date]] = {}
    day = first
    while day <= last:
        path = lake_io.partition_dir(lake, f"_manifests/{table}", day) / "part-0.parquet"
        if path.exists():
            for entry in json.loads(pl.read_parquet(path).item(0, "source_files")):
                if entry.get("first_row") and entry.get("last_row"):
                    out[(entry["key"], entry["size"], entry["etag"])] = (
                        date.fromisoformat(entry["first_row"][:10]),
                        date.fromisoformat(entry["last_row"][:10]))
        day += timedelta(days=1)
    return out


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
            home[o.key] = _home_day(o)
            objects.append(o)
    gcp_objects = matching(store.list(GCP_BILLING_PREFIX), *GCP_BILLING_PATTERNS)
    if gcp_objects:
        parts.append(gcp_billing.read_gcp_billing(store, GCP_BILLING_PREFIX))
        for o in gcp_objects:
            home[o.key] = _home_day(o)
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
    """Gateway requests that started on `day` (gateway_window for one day, collected)."""
    return gateway_window(store, [day], self_hosted_deployments=self_hosted_deployments,
                          customer_salt=customer_salt).collect_day(day, GATEWAY_REQUESTS)


def gateway_window(
    store: LandingStore,
    days: list[date],
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
    lake: str | Path | None = None,
    litellm_dsn: str | None = None,
) -> SourceStream:
    """Gateway requests from every format under gateway_logs/, streamed over `days`.

    `gateway_logs/<format>/**`: litellm (JSONL, streamed batch by batch), openai_usage and
    anthropic_usage (API response pages, .json or .jsonl), otel_genai (OTLP JSON), generic
    (JSONL read through the nearest `mapping.json` above the file). Files of the days and
    their neighbours are read (with `lake`, less neighbours known to hold none of their
    rows); each format counts a request id once across its files.

    With `litellm_dsn` (default: INFERLEDGER_LITELLM_DSN, environment only: it holds a
    password), each day's rows of the proxy's `LiteLLM_SpendLogs` table are pulled too, a
    request id present in both the table and an exported file counted once.
    """
    options = {"self_hosted_deployments": self_hosted_deployments,
               "customer_salt": customer_salt}
    dsn = litellm_dsn if litellm_dsn is not None else os.environ.get(LITELLM_DSN_ENV, "")
    unknown = sorted({o.key.split("/")[1] for o in store.list("gateway_logs")
                      if o.key.count("/") >= 2} - set(_GATEWAY_READERS))
    if unknown:
        raise SourceFormatError(
            f"gateway_logs/: unknown format folder(s) {unknown}; use one of "
            f"{sorted(_GATEWAY_READERS)} (generic with a mapping.json for other gateways)")
    found: dict[str, list[LandingObject]] = {}
    for fmt in _GATEWAY_READERS:
        objects = _objects_near_days(
            matching(store.list(f"gateway_logs/{fmt}"), *_GATEWAY_PATTERNS[fmt]), days,
            lake=lake, table="gateway_requests")
        if fmt == "generic":
            objects = [o for o in objects if not o.key.endswith("/mapping.json")]
        if objects:
            found[fmt] = objects

    pulled: dict[str, date] = {}
    if dsn:
        from connectors import litellm_postgres

        windows = [(_day_start(d), _day_start(d + timedelta(days=1))) for d in days]
        pulled = {litellm_postgres.source_name(dsn, lo, hi): d
                  for d, (lo, hi) in zip(days, windows)}

    def parts() -> Iterator[ParseResult]:
        spend_logs = litellm.SpendLogReader(self_hosted_deployments, customer_salt)
        for fmt, objects in found.items():
            keys = [o.key for o in objects]
            if fmt == "litellm":
                yield from litellm.iter_litellm(store, keys, reader=spend_logs, **options)
            else:
                yield _GATEWAY_READERS[fmt](store, keys, **options)
        if dsn:
            for lo, hi in windows:
                yield from litellm_postgres.iter_spend_logs(dsn, lo, hi, reader=spend_logs)

    objects = [o for objs in found.values() for o in objs]
    return SourceStream(parts(), objects + [_pulled_object(k, d) for k, d in pulled.items()],
                        "ts_start", pulled)


LITELLM_DSN_ENV = "INFERLEDGER_LITELLM_DSN"
PROMETHEUS_URL_ENV = "INFERLEDGER_PROMETHEUS_URL"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _pulled_object(key: str, day: date) -> LandingObject:
    """A pulled source in the manifest: where the day's rows came from (no credentials)."""
    return LandingObject(key=key, size=0, etag="", last_modified=_day_start(day))


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


# Telemetry files read at once (each inflated and parsed in its own thread).
TELEMETRY_READERS = 2


def telemetry_day(store: LandingStore, day: date) -> DayBatch:
    """GPU samples taken on `day` (telemetry_window for one day, collected)."""
    return telemetry_window(store, [day]).collect_day(day, GPU_SAMPLES)


def telemetry_window(store: LandingStore, days: list[date], *,
                     lake: str | Path | None = None,
                     prometheus_url: str | None = None) -> SourceStream:
    """GPU samples over `days`, one part per file: DCGM long CSV, Prometheus text and
    query_range JSON, nvidia-smi CSV (recognized by its header; local times in the zone of
    the nearest `nvidia_smi.json` {"timezone": ...} above the file, else UTC). Files under
    gpu_telemetry/vllm/ are vLLM's metrics, read by vllm_day. With `lake`, neighbours known
    to hold no row of `days` are skipped.

    With `prometheus_url` (default: INFERLEDGER_PROMETHEUS_URL), each day's DCGM series are
    also pulled from that Prometheus's query_range API, in hour windows, one part a day."""
    url = (prometheus_url if prometheus_url is not None
           else os.environ.get(PROMETHEUS_URL_ENV, "")).rstrip("/")
    pulled = {f"{url}/api/v1/query_range#date={d.isoformat()}": d for d in days} if url else {}
    objects = [o for o in _objects_near_days(
        matching(store.list("gpu_telemetry"), *_TELEMETRY_PATTERNS), days,
        lake=lake, table="gpu_samples")
        if not o.key.startswith(VLLM_PREFIX) and not o.key.endswith("/nvidia_smi.json")]

    def parts() -> Iterator[ParseResult]:
        # The next files are inflated and parsed in threads while this one is written: the
        # readers spend their time in zlib and polars, which release the GIL. Two readers,
        # not one: a file's inflate and the CSV parse's own serial parts left a core idle
        # (a production day's telemetry alone: 25.3 -> 19.5 s, 40 -> 37 CPU s, +0.3 GB).
        ahead = TELEMETRY_READERS + 1
        with ThreadPoolExecutor(max_workers=TELEMETRY_READERS,
                                thread_name_prefix="telemetry-read") as pool:
            pending = deque(pool.submit(_read_telemetry_file, store, o.key)
                            for o in objects[:ahead])
            for o in objects[ahead:]:
                done = pending.popleft().result()
                pending.append(pool.submit(_read_telemetry_file, store, o.key))
                yield done
            while pending:
                yield pending.popleft().result()
        for key, day in pulled.items():
            result = prometheus_api.read_dcgm_range(url, _day_start(day),
                                                    _day_start(day + timedelta(days=1)))
            # One source per day: its quarantine belongs to that day.
            yield ParseResult(
                rows=result.rows.with_columns(pl.lit(key).alias("source_file")),
                quarantine=result.quarantine.with_columns(pl.lit(key).alias("source_file")),
                rows_read=result.rows_read, files=[key])

    return SourceStream(parts(), objects + [_pulled_object(k, d) for k, d in pulled.items()],
                        "ts", pulled)


def _read_telemetry_file(store: LandingStore, key: str) -> ParseResult:
    name = key.removesuffix(".gz")
    if name.endswith(".json"):
        return prometheus_api.parse_query_range(_read(store, key), source_file=key)
    data = dcgm.gunzip_if_compressed(_read(store, key), key)
    if name.endswith(".csv") and nvidia_smi.looks_like_nvidia_smi(data[:4096]):
        settings = _nearest(store, key, "nvidia_smi.json")
        tz = (json.loads(store.read_bytes(settings)).get("timezone", "UTC") if settings
              else "UTC")
        return nvidia_smi.read_nvidia_smi_csv(data, source_file=key, timezone=tz)
    return dcgm.read_gpu_telemetry_bytes(data, key)


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
