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
from connectors.schemas import LAKE_TABLES, QUARANTINE
from connectors.sources import DayBatch, SourceStream

INGESTION_GROUP = "ingestion"
RANGE_POLICY = dg.BackfillPolicy.single_run()
# Windows of up to this many days downsample GPU samples while they are written.
FOLDED_DOWNSAMPLE_DAYS = 3


def _columns(table: str) -> dict[str, dg.TableSchema]:
    """The lake table's contract as Dagster column metadata, shown in the UI."""
    schema = LAKE_TABLES[table]
    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
        )
    }


def _write_day(
    storage: StorageResource,
    table: str,
    day: date,
    batch: DayBatch,
    table_rows: pl.DataFrame | None = None,
) -> dict:
    """Replace the day's partition, quarantine and manifest; `table_rows` when the table holds
    a summary of the rows read (vLLM counters become hourly increases)."""
    lake.write_table(storage.lake_path, table, day, batch.rows if table_rows is None else table_rows)
    lake.write_quarantine(storage.lake_path, table, day, batch.quarantine)
    stats = {
        "rows_read": batch.rows_read,
        "rows_written": batch.rows.height,
        "rows_quarantined": batch.quarantine.height,
    }
    _write_manifest(storage, table, day, batch.objects, stats)
    return stats


def _write_manifest(
    storage: StorageResource,
    table: str,
    day: date,
    objects: list,
    stats: dict,
    ranges: dict | None = None,
) -> None:
    """The partition's manifest row. `ranges`: key -> (first, last) row time of each file read
    whole, so later runs can skip neighbouring files that hold none of their days' rows."""
    files = []
    for o in objects:
        entry = {"key": o.key, "size": o.size, "etag": o.etag}
        if ranges and o.key in ranges:
            entry["first_row"], entry["last_row"] = (t.isoformat() for t in ranges[o.key])
        files.append(entry)
    lake.write_manifest(
        storage.lake_path,
        table,
        day,
        {
            "table_name": table,
            "partition_date": day,
            "written_at": datetime.now(UTC),
            "source_files": json.dumps(files),
            **stats,
        },
    )


def _stream_days(
    storage: StorageResource, table: str, days: list[date], stream: SourceStream,
    on_written: Callable[[date, pl.DataFrame], None] | None = None,
) -> tuple[Counter, Counter]:
    """Write a streamed source's window: each part's rows into the partition of their own
    day, quarantine into its file's home day; every day swapped in once all parts are
    written, with its manifest. Rows of days outside the window (read from neighbouring
    files) belong to those days' runs and are not written here. `on_written(day, rows)`
    sees every frame written to a day's partition, as written (conformed to the table), in
    the order written."""
    rows = {d: lake.PartitionWriter(storage.lake_path, table, d) for d in days}
    quarantine = {
        d: lake.PartitionWriter(storage.lake_path, f"_quarantine/{table}", d, QUARANTINE) for d in days
    }
    home = stream.home()
    reasons: Counter = Counter()
    ranges: dict = {}
    try:
        for part in stream.parts:
            ts = pl.col(stream.ts_column)
            for key, first, last in _file_spans(part.rows, ts):
                if key in ranges:
                    first, last = min(first, ranges[key][0]), max(last, ranges[key][1])
                ranges[key] = (first, last)
            first_day, last_day = part.rows.select(
                ts.min().dt.date().alias("a"), ts.max().dt.date().alias("b")
            ).row(0)
            if first_day == last_day:  # the usual part: one day's rows, written without a copy
                days_rows = [(first_day, part.rows)]
            else:
                dated = part.rows.with_columns(ts.dt.date().alias("_day"))
                days_rows = [(day, frame.drop("_day")) for (day,), frame
                             in dated.partition_by("_day", as_dict=True).items()]
            for day, frame in days_rows:
                if day in rows:
                    written = rows[day].write(frame)
                    if on_written is not None:
                        on_written(day, written)
            if part.quarantine.height:
                q_home = part.quarantine.with_columns(
                    pl.col("source_file")
                    .replace_strict(home, default=None, return_dtype=pl.Date)
                    .alias("_day")
                )
                homeless = q_home.filter(pl.col("_day").is_null())
                if homeless.height:  # every source read is in `home`: never drop its rows
                    raise RuntimeError(
                        f"{table}: {homeless.height} quarantined rows from "
                        f"{homeless['source_file'].unique().to_list()[:3]} have no home day"
                    )
                for (day,), frame in q_home.partition_by("_day", as_dict=True).items():
                    if day in quarantine:
                        quarantine[day].write(frame.drop("_day"))
                        reasons.update(frame.get_column("reason").to_list())
        totals: Counter = Counter()
        for day in days:
            rows[day].commit()
            quarantine[day].commit()
            stats = {
                "rows_read": rows[day].rows + quarantine[day].rows,
                "rows_written": rows[day].rows,
                "rows_quarantined": quarantine[day].rows,
            }
            _write_manifest(storage, table, day, stream.objects_for(day), stats, ranges)
            totals.update(stats)
        return totals, reasons
    finally:
        for writer in (*rows.values(), *quarantine.values()):
            writer.abort()


def _file_spans(rows: pl.DataFrame, ts: pl.Expr) -> list[tuple]:
    """(source_file, first row time, last row time) of each file in a part."""
    files = rows.get_column("source_file")
    if files.len() and not files.null_count() and (files == files[0]).all():
        # The usual part, one file's rows: no group-by over text (34.6 M samples a day
        # hashed ~1.2 CPU s).
        return [(files[0], *rows.select(ts.min().alias("first"), ts.max().alias("last")).row(0))]
    return rows.group_by("source_file").agg(ts.min().alias("first"),
                                            ts.max().alias("last")).rows()


def _result(
    context: dg.AssetExecutionContext,
    table: str,
    totals: Counter,
    reasons: Counter,
    files: int,
    asset_key: str | None = None,
) -> dg.MaterializeResult:
    if totals["rows_quarantined"]:
        context.log.warning(
            f"{table}: {totals['rows_quarantined']} rows quarantined; top reasons: "
            + "; ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
        )
    return dg.MaterializeResult(
        asset_key=asset_key,
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in totals.items()},
            "source_files": dg.MetadataValue.int(files),
            "quarantine_reasons": dg.MetadataValue.json(dict(reasons.most_common(10))),
        },
    )


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
    return _result(context, table, totals, reasons, files)


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
        context,
        storage,
        "billing_line_items",
        lambda d: sources.billing_day(store, d, lake=storage.lake_path),
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
    days = days_in_window(context.partition_time_window.start, context.partition_time_window.end)
    stream = sources.gateway_window(
        store,
        days,
        self_hosted_deployments=deployments,
        customer_salt=storage.customer_salt,
        lake=storage.lake_path,
    )
    totals, reasons = _stream_days(storage, "gateway_requests", days, stream)
    return _result(context, "gateway_requests", totals, reasons, len(stream.objects))


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
        dg.AssetSpec(
            "gpu_minutely",
            deps=["gpu_samples"],
            kinds={"polars", "parquet"},
            metadata=_columns("gpu_minutely"),
            description="GPU telemetry per GPU (or MIG instance) and minute: the same measures as "
            "gpu_hourly at minute grain, for spikes an hourly average hides.",
        ),
    ],
)
def gpu_telemetry(context: dg.AssetExecutionContext, storage: StorageResource):
    store = storage.store()
    days = days_in_window(context.partition_time_window.start, context.partition_time_window.end)
    stream = sources.telemetry_window(store, days, lake=storage.lake_path)
    # A daily run feeds each day's downsamples the rows written to its gpu_samples
    # partition, part by part, as they are written (a GPU's hour may span several files):
    # the day is never read back, and the work overlaps the parsing of the next file. A
    # day's partials are ~0.3 GB at 1,000 GPUs, held until the stream ends, so a longer
    # window (a backfill) reads each day back from the lake after the stream instead.
    fold = len(days) <= FOLDED_DOWNSAMPLE_DAYS
    downsamples = {day: dcgm.HourlyAndMinutely() for day in days} if fold else {}
    totals, reasons = _stream_days(
        storage, "gpu_samples", days, stream,
        on_written=(lambda day, rows: downsamples[day].add(rows)) if fold else None)
    hourly_rows = minutely_rows = 0
    for day in days:
        if fold:
            hourly, minutely = downsamples.pop(day).finish()
        else:
            samples = pl.scan_parquet(lake.partition_files(storage.lake_path, "gpu_samples", day))
            hourly, minutely = dcgm.downsample_hourly_and_minutely(samples)
        lake.write_table(storage.lake_path, "gpu_hourly", day, hourly)
        hourly_rows += hourly.height
        lake.write_table(storage.lake_path, "gpu_minutely", day, minutely)
        minutely_rows += minutely.height
    yield _result(
        context, "gpu_samples", totals, reasons, len(stream.objects), asset_key="gpu_samples"
    )
    yield dg.MaterializeResult(
        asset_key="gpu_hourly", metadata={"rows_written": dg.MetadataValue.int(hourly_rows)}
    )
    yield dg.MaterializeResult(
        asset_key="gpu_minutely", metadata={"rows_written": dg.MetadataValue.int(minutely_rows)}
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
def vllm_hourly(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.MaterializeResult:
    store = storage.store()
    window = context.partition_time_window
    totals: Counter = Counter()
    for day in days_in_window(window.start, window.end):
        batch = sources.vllm_day(store, day)
        hourly = vllm.vllm_hourly(batch.rows).filter(pl.col("hour_start").dt.date() == day)
        # Samples of the day before are read only as the first hour's baseline.
        own = DayBatch(
            batch.rows.filter(pl.col("ts").dt.date() == day), batch.quarantine, batch.objects
        )
        totals.update(_write_day(storage, "vllm_hourly", day, own, table_rows=hourly))
        totals["hourly_rows"] += hourly.height
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(v) for k, v in totals.items()})


INGESTION_ASSETS = [
    billing_line_items,
    fleet_inventory,
    gateway_requests,
    gpu_telemetry,
    vllm_hourly,
]
