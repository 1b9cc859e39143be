"""The Dagster code location (workspace.yaml loads `pipelines.definitions`)."""

from __future__ import annotations

import os

import dagster as dg

from assets.anomalies import ANOMALY_ASSETS
from assets.exports import marts_export_asset
from assets.ingestion import INGESTION_ASSETS
from assets.prices import PRICE_ASSETS
from assets.quality import LAKE_CHECKS, with_mart_freshness
from assets.resources import StorageResource
from assets.warehouse import dbt_resource, warehouse_assets
from pipelines.config import Settings, load_settings
from pipelines.sensors import event_definitions
from pipelines.sensors_billing import billing_definitions
from pipelines.sensors_planned import planned_events_definitions


def storage_resource(settings: Settings) -> StorageResource:
    salt = dg.EnvVar("INFERLEDGER_CUSTOMER_SALT") if os.environ.get("INFERLEDGER_CUSTOMER_SALT") else None
    return StorageResource(
        landing=settings.landing, lake=settings.lake, warehouse=settings.warehouse,
        lake_cache=settings.lake_cache, exports=settings.exports, customer_salt=salt,
    )


def resources(settings: Settings) -> dict[str, object]:
    return {"storage": storage_resource(settings), "dbt": dbt_resource()}


daily_refresh = dg.define_asset_job(
    "daily_refresh",
    selection=dg.AssetSelection.all(),
    description="Ingest every source for a day and rebuild the warehouse and marts for it.",
)

# Yesterday's partition at 06:00 UTC, when the providers' bills for it have mostly landed.
daily_schedule = dg.build_schedule_from_partitioned_job(daily_refresh, hour_of_day=6, minute_of_hour=0)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Each area exports its own definitions; this merges them into one code location."""
    core = dg.Definitions(
        assets=[*INGESTION_ASSETS, *PRICE_ASSETS, warehouse_assets(), *ANOMALY_ASSETS, marts_export_asset()],
        asset_checks=LAKE_CHECKS,
        jobs=[daily_refresh],
        schedules=[daily_schedule],
        resources=resources(settings or load_settings()),
    )
    return dg.Definitions.merge(
        with_mart_freshness(core),
        event_definitions(daily_refresh),
        billing_definitions(daily_refresh),
        planned_events_definitions(),
    )


defs = build_definitions()
