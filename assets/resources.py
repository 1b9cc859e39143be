"""Where the data lives, as a Dagster resource (configured by `pipelines.config`)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from connectors.landing import LandingStore, open_store


class StorageResource(dg.ConfigurableResource):
    """The landing store, the Parquet lake and the DuckDB warehouse of one deployment."""

    landing: str
    lake: str
    warehouse: str
    # Salt for pseudonymizing customer ids; a secret, so it comes from the environment.
    customer_salt: str | None = None

    def store(self) -> LandingStore:
        return open_store(self.landing)

    @property
    def lake_path(self) -> Path:
        return Path(self.lake)
