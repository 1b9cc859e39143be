"""Where the data lives, as a Dagster resource (configured by `pipelines.config`)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from connectors.export_mirror import check_outside_lake
from connectors.lake_remote import S3Lake, attach, is_remote, local_lake
from connectors.landing import LandingStore, open_store


class StorageResource(dg.ConfigurableResource):
    """The landing store, the Parquet lake and the DuckDB warehouse of one deployment."""

    landing: str
    lake: str  # a folder, or s3://bucket/prefix (then worked on through a local copy)
    warehouse: str
    lake_cache: str | None = None  # that local copy; default: lake-cache beside the warehouse
    exports: str | None = None  # s3://bucket/prefix the BI Parquet exports are mirrored to
    # Salt for pseudonymizing customer ids; a secret, so it comes from the environment.
    customer_salt: str | None = None

    def store(self) -> LandingStore:
        return open_store(self.landing)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """An S3 lake: bring the local copy level with S3 before the run reads it, and
        publish every partition the run commits (connectors.lake_remote)."""
        if self.exports:
            check_outside_lake(self.exports, self.lake)
        if not is_remote(self.lake):
            return
        remote = attach(S3Lake(self.lake, self.lake_path))
        pulled = remote.pull()
        if context.log:
            context.log.info(
                f"lake {self.lake}: {pulled.partitions} partitions, {len(pulled.downloaded)} "
                f"brought up to date ({pulled.files} files, {pulled.bytes / 1e6:.1f} MB), "
                f"{len(pulled.removed)} removed, in {self.lake_path}")

    @property
    def lake_path(self) -> Path:
        """The folder the assets read and write: the lake, or an S3 lake's local copy."""
        return local_lake(self.lake, self.lake_cache, self.warehouse)
