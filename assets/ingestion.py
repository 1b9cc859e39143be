"""Ingestion: each source's day into the Parquet lake, replacing the day's partition whole.

Ingestion writes only Parquet, so sources ingest in parallel and never touch the
warehouse. Every partition written also gets a manifest row (files read, rows read,
written, quarantined) and its quarantine partition, so nothing is dropped silently.
"""


import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl

from assets.partitions import DAILY, days_in_window
from assets.resources import StorageResource
from connectors import dcgm, lake, sources, vllm
from connectors.schemas import LAKE_TABLES
from connectors.sources import DayBatch

INGESTION_GROUP = "ingestion"
RANGE_POLICY = dg.BackfillPolicy.single_run()


def _columns(table: str) -> dict[str, dg.TableSchema]:
    """The lake table's contract as Dagster column metadata, shown in the UI."""
    schema = LAKE_TABLES[table]
    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
        )
    }


def _write_day(
    storage: StorageResource, table: str, day: date, batch: DayBatch, table_rows: pl.DataFrame | None = None
) -> dict:
    """Replace the day's partition, quarantine and manifest; `table_rows` when the table holds
    a summary of the rows read (vLLM counters become hourly increases)."""
    lake.write_table(storage.lake, table, day, batch.rows if table_rows is None else table_rows)
    lake.write_quarantine(storage.lake, table, day, batch.quarantine)
    stats = {
        "rows_read": batch.rows_read,
        "rows_written": batch.rows.height,
        "rows_quarantined": batch.quarantine.height,
    }
    lake.write_manifest(
        storage.lake,
        table,
        day,
        {
            "table_name": table,
            "partition_date": day,
            "written_at": datetime.now(UTC),
            "source_files": json.dumps(batch.source_files()),
            **stats,
        },
    )
    return stats


def _ingest(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    table: str,
    read_day: Callable[[date], DayBatch],
) -> dg.MaterializeResult:
    window = context.partition_time_window
    totals: Counter = Counter()
    reasons: Counter = Counter()
    files = 0
    for day in days_in_window(window.start, window.end):
        batch = read_day(day)
        totals.update(_write_day(storage, table, day, batch))
        reasons.update(batch.quarantine.get_column("reason").to_list())
        files += len(batch.objects)
    if totals["rows_quarantined"]:
        context.log.warning(
            f"{table}: {totals['rows_quarantined']} rows quarantined; top reasons: "
            + "; ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
        )
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in totals.items()},
            "source_files": dg.MetadataValue.int(files),
            "quarantine_reasons": dg.MetadataValue.json(dict(reasons.most_common(10))),
        }
    )


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=RANGE_POLICY,
    group_name=INGESTION_GROUP,
    kinds={"polars", "parquet"},
    metadata=_columns("billing_line_items"),
    description="The bill, line by line: AWS CUR 2.0 / legacy CUR, FOCUS exports and the GCP "
    "billing export (files or BigQuery), normalized to FOCUS-aligned billing_line_items. A "
    "restated month replaces the previous export whole; a row whose currency has no FX rate "
    "is quarantined.",
)
def billing_line_items(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.MaterializeResult:
    store = storage.store()
    return _ingest(
        context, storage, "billing_line_items", lambda d: sources.billing_day(store, d, lake=storage.lake)
    )


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=RANGE_POLICY,
    group_name=INGESTION_GROUP,
    kinds={"polars", "parquet"},
    metadata=_columns("fleet_inventory"),
    description="The fleet inventory (hostname -> provider resource -> deployment), snapshotted "
    "per day so each day is allocated with the fleet as it was known then.",
)
def fleet_inventory(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.MaterializeResult:
    store = storage.store()
    return _ingest(context, storage, "fleet_inventory", lambda d: sources.inventory_snapshot(store))


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=RANGE_POLICY,
    group_name=INGESTION_GROUP,
    kinds={"polars", "parquet"},
    metadata=_columns("gateway_requests"),
    deps=[fleet_inventory],
    description="LLM gateway requests (LiteLLM spend logs) with disjoint token buckets. Prompt "
    "and response bodies are never read; API keys are kept only as a hash.",
)
def gateway_requests(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.MaterializeResult:
    store = storage.store()
    fleet = sources.inventory_snapshot(store).rows
    deployments = frozenset(fleet.get_column("deployment").drop_nulls().to_list())
    return _ingest(
        context,
        storage,
        "gateway_requests",
        lambda d: sources.gateway_day(
            store, d, self_hosted_deployments=deployments, customer_salt=storage.customer_salt
        ),
    )


@dg.multi_asset(
    partitions_def=DAILY,
    backfill_policy=RANGE_POLICY,
    group_name=INGESTION_GROUP,
    specs=[
        dg.AssetSpec(
            "gpu_samples",
            kinds={"polars", "parquet"},
            metadata=_columns("gpu_samples"),
            description="GPU telemetry samples (DCGM exporter), long format, one row per sample.",
        ),
        dg.AssetSpec(
            "gpu_hourly",
            deps=["gpu_samples"],
            kinds={"polars", "parquet"},
            metadata=_columns("gpu_hourly"),
            description="GPU telemetry per GPU (or MIG instance) and hour: utilization, busy "
            "fraction, power and energy, the input to allocation and energy per token.",
        ),
    ],
)
def gpu_telemetry(context: dg.AssetExecutionContext, storage: StorageResource):
    store = storage.store()
    window = context.partition_time_window
    totals: Counter = Counter()
    hourly_rows = 0
    for day in days_in_window(window.start, window.end):
        batch = sources.telemetry_day(store, day)
        totals.update(_write_day(storage, "gpu_samples", day, batch))
        hourly = dcgm.downsample_hourly(batch.rows)
        lake.write_table(storage.lake, "gpu_hourly", day, hourly)
        hourly_rows += hourly.height
    yield dg.MaterializeResult(
        asset_key="gpu_samples",
        metadata={k: dg.MetadataValue.int(v) for k, v in totals.items()},
    )
    yield dg.MaterializeResult(
        asset_key="gpu_hourly", metadata={"rows_written": dg.MetadataValue.int(hourly_rows)}
    )


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=RANGE_POLICY,
    group_name=INGESTION_GROUP,
    kinds={"polars", "parquet"},
    metadata=_columns("vllm_hourly"),
    description="vLLM's own counters per deployment and hour (prompt and generation tokens, "
    "prefill and decode seconds): the allocation weights where vLLM metrics are collected.",
)
def vllm_hourly(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    store = storage.store()
    window = context.partition_time_window
    totals: Counter = Counter()
    for day in days_in_window(window.start, window.end):
        batch = sources.vllm_day(store, day)
        hourly = vllm.vllm_hourly(batch.rows).filter(pl.col("hour_start").dt.date() == day)
        # Samples of the day before are read only as the first hour's baseline.
        own = DayBatch(batch.rows.filter(pl.col("ts").dt.date() == day), batch.quarantine, batch.objects)
        totals.update(_write_day(storage, "vllm_hourly", day, own, table_rows=hourly))
        totals["hourly_rows"] += hourly.height
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(v) for k, v in totals.items()})


INGESTION_ASSETS = [billing_line_items, fleet_inventory, gateway_requests, gpu_telemetry, vllm_hourly]

