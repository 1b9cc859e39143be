"""Price references in the lake: the effective FX table the billing ingestion used, and
the GPU list prices of Google's Cloud Billing Catalog.

Ingestion quarantines a bill row whose currency has no rate in the FX table (the dbt seed
overridden by fx/*.csv in the landing store). The same effective table is written to
lake/fx_rates/, one partition per rate date, so the warehouse can convert with exactly
the rates ingestion checked against instead of the seed alone.

GPU list prices (connectors.gcp_catalog) are pulled when INFERLEDGER_GCP_CATALOG is set,
into lake/gpu_list_prices/, one partition per day a price took effect: what a GPU hour
lists for, beside what the bills say it cost.
"""

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from assets.ingestion import INGESTION_GROUP, RANGE_POLICY
from assets.partitions import DAILY
from assets.resources import StorageResource
from connectors import fx, gcp_catalog, lake
from connectors.schemas import FX_RATES, conform

FX_TABLE = "fx_rates"


def write_fx_rates(lake_root: str | Path, rates: pl.DataFrame) -> list[str]:
    """Replace lake/fx_rates/ with `rates`: each rate date's partition swapped in whole,
    then the partitions of rate dates no longer in the table removed (a withdrawn
    override must not keep converting). Returns the partitions written."""
    rates = conform(rates, FX_RATES)
    written = []
    for (rate_date,), part in rates.sort("currency").group_by("rate_date", maintain_order=True):
        lake.replace_partition(lake_root, FX_TABLE, rate_date, part)
        written.append(f"date={rate_date.isoformat()}")
    for stale in (Path(lake_root) / FX_TABLE).glob("date=*"):
        if stale.name not in written:
            lake.drop_partition(lake_root, FX_TABLE, date.fromisoformat(stale.name.removeprefix("date=")))
    return sorted(written)


# Price tables are daily assets of the ingestion group, like the sources they price.
PRICE_ASSET = {"partitions_def": DAILY, "backfill_policy": RANGE_POLICY,
               "group_name": INGESTION_GROUP, "kinds": {"polars", "parquet"}}


@dg.asset(
    **PRICE_ASSET,
    description="lake/fx_rates/: the effective FX table (USD per unit, effective-dated), the "
    "dbt seed fx_rates overridden by fx/*.csv in the landing store; the rates billing "
    "ingestion checks every row's currency against. (The asset `fx_rates` is the seed.)",
)
def lake_fx_rates(storage: StorageResource) -> dg.MaterializeResult:
    rates = fx.load_fx_rates(storage.store())
    partitions = write_fx_rates(storage.lake_path, rates)
    overrides = rates.filter(pl.col("source") != "seed")
    return dg.MaterializeResult(
        metadata={
            "rates": dg.MetadataValue.int(rates.height),
            "landing_overrides": dg.MetadataValue.int(overrides.height),
            "currencies": dg.MetadataValue.json(sorted(rates["currency"].unique().to_list())),
            "rate_dates": dg.MetadataValue.int(len(partitions)),
        }
    )


GPU_LIST_PRICES_TABLE = "gpu_list_prices"


def write_gpu_list_prices(lake_root: str | Path, pulled: pl.DataFrame) -> list[str]:
    """Merge a pull of the catalog into lake/gpu_list_prices/: each effective day's
    partition is read, merged with the pull's prices of that day (gcp_catalog.price_history:
    a price read again replaces itself, nothing is counted twice) and swapped in whole.
    Partitions of other days are left as they are: they hold earlier prices. Returns the
    partitions written."""
    pulled = pulled.with_columns(gcp_catalog.partition_day().alias("_day"))
    written = []
    for (day,), part in pulled.group_by("_day", maintain_order=True):
        try:
            kept = lake.read_partition(lake_root, GPU_LIST_PRICES_TABLE, day)
        except FileNotFoundError:  # the first price of that day
            kept = None
        merged = gcp_catalog.price_history(kept, part.drop("_day"))
        lake.replace_partition(lake_root, GPU_LIST_PRICES_TABLE, day, merged)
        written.append(f"date={day.isoformat()}")
    return sorted(written)


@dg.asset(
    **PRICE_ASSET,
    description="lake/gpu_list_prices/: GPU list prices from Google's Cloud Billing Catalog "
    "(per SKU, region, usage type and tier; exact Decimal; effective-dated, one partition per "
    "day a price took effect, history kept), pulled when INFERLEDGER_GCP_CATALOG is set.",
)
def gpu_list_prices(storage: StorageResource) -> dg.MaterializeResult:
    source = gcp_catalog.CatalogSource.from_env()
    if source is None:
        return dg.MaterializeResult(metadata={
            "configured": dg.MetadataValue.bool(False),
            "how_to_enable": dg.MetadataValue.text(
                f"set {gcp_catalog.CATALOG_ENV}=1 (Compute Engine) or to a catalog service id"),
        })
    pulled = source.pull().with_columns(pl.lit(datetime.now(UTC)).alias("pulled_at"))
    partitions = write_gpu_list_prices(storage.lake_path, pulled)
    return dg.MaterializeResult(metadata={
        "configured": dg.MetadataValue.bool(True),
        "service": dg.MetadataValue.text(source.service),
        "currency": dg.MetadataValue.text(source.currency),
        "prices": dg.MetadataValue.int(pulled.height),
        "skus": dg.MetadataValue.int(pulled["sku_id"].n_unique()),
        "partitions_written": dg.MetadataValue.json(partitions),
    })


PRICE_ASSETS = [lake_fx_rates, gpu_list_prices]
