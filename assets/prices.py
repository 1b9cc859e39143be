"""Price references in the lake: the effective FX table the billing ingestion used.

Ingestion quarantines a bill row whose currency has no rate in the FX table (the dbt seed
overridden by fx/*.csv in the landing store). The same effective table is written to
lake/fx_rates/, one partition per rate date, so the warehouse can convert with exactly
the rates ingestion checked against instead of the seed alone.
"""

import shutil
from pathlib import Path

import dagster as dg
import polars as pl

from assets.ingestion import INGESTION_GROUP, RANGE_POLICY
from assets.partitions import DAILY
from assets.resources import StorageResource
from connectors import fx, lake
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
            shutil.rmtree(stale)
    return sorted(written)


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=RANGE_POLICY,
    group_name=INGESTION_GROUP,
    kinds={"polars", "parquet"},
    description="lake/fx_rates/: the effective FX table (USD per unit, effective-dated), the "
    "dbt seed fx_rates overridden by fx/*.csv in the landing store; the rates billing "
    "ingestion checks every row's currency against. (The asset `fx_rates` is the seed.)",
)
def lake_fx_rates(storage: StorageResource) -> dg.MaterializeResult:
    rates = fx.load_fx_rates(storage.store())
    partitions = write_fx_rates(storage.lake, rates)
    overrides = rates.filter(pl.col("source") != "seed")
    return dg.MaterializeResult(
        metadata={
            "rates": dg.MetadataValue.int(rates.height),
            "landing_overrides": dg.MetadataValue.int(overrides.height),
            "currencies": dg.MetadataValue.json(sorted(rates["currency"].unique().to_list())),
            "rate_dates": dg.MetadataValue.int(len(partitions)),
        }
    )


PRICE_ASSETS = [lake_fx_rates]
