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

from dataclasses import dataclass
from datetime import date

import polars as pl

from connectors import aws_cur, dcgm, focus, inventory, litellm
from connectors.landing import LandingObject, LandingStore, matching, objects_near_day, path_date
from connectors.result import ParseResult
from connectors.schemas import (
    BILLING_LINE_ITEMS,
    FLEET_INVENTORY,
    GATEWAY_REQUESTS,
    GPU_SAMPLES,
    QUARANTINE,
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


def billing_day(store: LandingStore, day: date) -> DayBatch:
    """Billing rows charged on `day`, from the newest export of its month, and FOCUS files.

    A CUR month is read whole from its newest manifest, so a restated month replaces the
    old numbers; the month's quarantine is filed under the month's first day.
    """
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
    result = ParseResult.concat(parts, BILLING_LINE_ITEMS)
    rows = _on_day(result.rows, "charge_period_start", day)
    touched = set(rows.get_column("source_file").unique().to_list()) | {
        k for k, d in home.items() if d == day
    }
    return DayBatch(
        rows=rows,
        quarantine=_quarantine_for_day(result, home, day),
        objects=[o for o in objects if o.key in touched],
    )


def _focus_home_day(obj: LandingObject) -> date:
    d = path_date(obj.key)
    return d if d is not None else obj.last_modified.date()


def gateway_day(
    store: LandingStore,
    day: date,
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> DayBatch:
    """Gateway requests that started on `day` (files of the day and its neighbours)."""
    objects = objects_near_day(
        matching(store.list("gateway_logs/litellm"), "*.jsonl", "*.jsonl.gz"), day
    )
    if not objects:
        return DayBatch(empty(GATEWAY_REQUESTS), empty(QUARANTINE), [])
    result = litellm.read_litellm(
        store,
        [o.key for o in objects],
        self_hosted_deployments=self_hosted_deployments,
        customer_salt=customer_salt,
    )
    home = {o.key: _home_day(o) for o in objects}
    return DayBatch(
        rows=_on_day(result.rows, "ts_start", day),
        quarantine=_quarantine_for_day(result, home, day),
        objects=objects,
    )


def telemetry_day(store: LandingStore, day: date) -> DayBatch:
    """GPU samples taken on `day` (DCGM long CSV, Prometheus text)."""
    objects = objects_near_day(
        matching(store.list("gpu_telemetry"), "*.csv", "*.csv.gz", "*.prom", "*.prom.gz"), day
    )
    if not objects:
        return DayBatch(empty(GPU_SAMPLES), empty(QUARANTINE), [])
    result = dcgm.read_gpu_telemetry(store, [o.key for o in objects])
    home = {o.key: _home_day(o) for o in objects}
    return DayBatch(
        rows=_on_day(result.rows, "ts", day),
        quarantine=_quarantine_for_day(result, home, day),
        objects=objects,
    )


def inventory_snapshot(store: LandingStore) -> DayBatch:
    """The whole fleet inventory as it stands in the landing store."""
    objects = matching(store.list("inventory"), "*.csv")
    if not objects:
        return DayBatch(empty(FLEET_INVENTORY), empty(QUARANTINE), [])
    result = inventory.read_inventory(store)
    return DayBatch(rows=result.rows, quarantine=result.quarantine, objects=objects)
