"""The Dagster code location (workspace.yaml loads `pipelines.definitions`)."""

from __future__ import annotations

import os

import dagster as dg

from assets.ingestion import INGESTION_ASSETS
from assets.resources import StorageResource
from assets.warehouse import dbt_resource, warehouse_assets
from pipelines.config import Settings, load_settings


def storage_resource(settings: Settings) -> StorageResource:
    salt = dg.EnvVar("INFERLEDGER_CUSTOMER_SALT") if os.environ.get("INFERLEDGER_CUSTOMER_SALT") else None
    return StorageResource(
        landing=settings.landing, lake=settings.lake, warehouse=settings.warehouse, customer_salt=salt
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
    return dg.Definitions(
        assets=[*INGESTION_ASSETS, warehouse_assets()],
        jobs=[daily_refresh],
        schedules=[daily_schedule],
        resources=resources(settings or load_settings()),
    )


defs = build_definitions()
