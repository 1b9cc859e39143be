"""GPU list prices from the Cloud Billing Catalog API -> a price reference table.

The billing export says what a GPU hour cost us; the catalog says what it lists for, so
the marts can show list vs effective cost per GPU hour and the discount a commitment
buys. Read with google-cloud-billing's `CloudCatalogClient.list_skus` on Compute Engine
(`services/6F81-5844-456A`), keeping the GPU SKUs: category.resourceGroup `GPU`, or a
description naming an Nvidia GPU (some accelerator SKUs sit in other groups).

GPU_SKU_PRICES, one row per SKU x service region x pricing tier:

| column | meaning |
| --- | --- |
| sku_id, description | the SKU, e.g. `Nvidia H100 80GB GPU running in Americas` |
| service_id | `6F81-5844-456A` |
| resource_group, usage_type | `GPU`; `OnDemand`, `Preemptible`, `Commit1Yr`, ... |
| gpu_model | from the description: `H100 80GB`, `L4`, `Tesla T4` |
| region | one of the SKU's service regions (`us-central1`) |
| usage_unit | the catalog's unit (`h`) |
| start_usage_amount | where the tier starts, in usage units (0 for the first) |
| unit_price | price per usage unit, Decimal(38, 12), exact from units + nanos |
| price_per_hour | unit_price per hour when usage_unit is a time unit, else null |
| currency | ISO 4217 code of the price |
| effective_time | when this price took effect (UTC) |

Money is exact: `units` (int64) and `nanos` (billionths) are combined as integers, never
through a float.

In the lake (`gpu_list_prices`, written by the asset of that name when
INFERLEDGER_GCP_CATALOG is set) the prices are effective-dated like the FX rates: one
partition per UTC day a price took effect, each pull merged into what is kept, so a price
that changes adds a partition and the old price stays where it was (`price_history`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

from connectors.focus import parse_utc
from connectors.schemas import GPU_LIST_PRICES, GPU_SKU_PRICES, MONEY, QUANTITY, conform

COMPUTE_ENGINE_SERVICE = "services/6F81-5844-456A"
GPU_DESCRIPTION = r"(?i)\bnvidia\b"
# Catalog usage units per hour, for the time units GPU SKUs are priced in (whole
# numbers, so the hourly price stays exact).
UNITS_PER_HOUR = {"h": 1, "min": 60, "s": 3600}


# What one price is: a later pull of the same price replaces it, a new effective time adds one.
PRICE_KEY = ["sku_id", "region", "usage_type", "start_usage_amount", "currency", "effective_time"]

CATALOG_ENV = "INFERLEDGER_GCP_CATALOG"
CATALOG_CURRENCY_ENV = "INFERLEDGER_GCP_CATALOG_CURRENCY"
CATALOG_ENDPOINT_ENV = "INFERLEDGER_GCP_CATALOG_ENDPOINT"
_ON = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class CatalogSource:
    """Which catalog service to read, in which currency, and how to reach it."""

    service: str  # services/<id>
    currency: str
    client: Callable[[], Any]  # -> google.cloud.billing_v1.CloudCatalogClient
    endpoint: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CatalogSource | None:
        """INFERLEDGER_GCP_CATALOG: `1`/`true` for Compute Engine's GPUs, or a service
        (`services/<id>` or the bare id); unset, None. Currency from
        INFERLEDGER_GCP_CATALOG_CURRENCY (USD), an API endpoint (Private Service Connect)
        from INFERLEDGER_GCP_CATALOG_ENDPOINT. Credentials are Application Default
        Credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity), never a file here."""
        env = os.environ if env is None else env
        value = env.get(CATALOG_ENV, "").strip()
        if not value or value.lower() in {"0", "false", "no", "off"}:
            return None
        if value.lower() in _ON:
            service = COMPUTE_ENGINE_SERVICE
        else:
            service = value if value.startswith("services/") else f"services/{value}"
        currency = (env.get(CATALOG_CURRENCY_ENV) or "USD").strip().upper()
        endpoint = (env.get(CATALOG_ENDPOINT_ENV) or "").strip() or None

        def client() -> Any:  # a google.cloud.billing_v1.CloudCatalogClient
            from google.cloud import billing_v1

            options = {"api_endpoint": endpoint} if endpoint else None
            return billing_v1.CloudCatalogClient(transport="rest", client_options=options)

        return cls(service=service, currency=currency, client=client, endpoint=endpoint)

    def pull(self) -> pl.DataFrame:
        """The service's GPU list prices now (GPU_SKU_PRICES)."""
        return list_gpu_sku_prices(self.client(), service=self.service,
                                   currency_code=self.currency)


def price_history(kept: pl.DataFrame | None, pulled: pl.DataFrame) -> pl.DataFrame:
    """Prices kept in the lake with a new pull merged in (GPU_LIST_PRICES): a price pulled
    again replaces its kept row (one row per PRICE_KEY), a price the catalog no longer
    lists stays, as the history it is."""
    pulled = conform(pulled, GPU_LIST_PRICES)
    if kept is None or kept.height == 0:
        merged = pulled
    else:
        merged = pl.concat([conform(kept, GPU_LIST_PRICES), pulled])
    return (merged.unique(subset=PRICE_KEY, keep="last", maintain_order=True)
            .sort("sku_id", "region", "usage_type", "start_usage_amount", "effective_time"))


def partition_day() -> pl.Expr:
    """The lake partition of a price: the UTC day it took effect (the day it was read, for
    a price the catalog gives no effective time)."""
    return pl.coalesce(pl.col("effective_time").dt.date(), pl.col("pulled_at").dt.date())


_MONEY = pl.Struct({"currency_code": pl.String, "units": pl.String, "nanos": pl.Int64})
_SKU = {
    "name": pl.String,
    "sku_id": pl.String,
    "description": pl.String,
    "category": pl.Struct(
        {
            "service_display_name": pl.String,
            "resource_family": pl.String,
            "resource_group": pl.String,
            "usage_type": pl.String,
        }
    ),
    "service_regions": pl.List(pl.String),
    "pricing_info": pl.List(
        pl.Struct(
            {
                "effective_time": pl.String,
                "pricing_expression": pl.Struct(
                    {
                        "usage_unit": pl.String,
                        "tiered_rates": pl.List(
                            pl.Struct({"start_usage_amount": pl.Float64, "unit_price": _MONEY})
                        ),
                    }
                ),
            }
        )
    ),
}


def list_gpu_sku_prices(
    client: Any,
    *,
    service: str = COMPUTE_ENGINE_SERVICE,
    currency_code: str = "USD",
) -> pl.DataFrame:
    """The current list prices of every GPU SKU of `service`, in GPU_SKU_PRICES."""
    from google.cloud import billing_v1

    pager = client.list_skus(request={"parent": service, "currency_code": currency_code})
    # The pager walks the pages; each SKU becomes a plain dict once, then all the work
    # below is vectorized.
    skus = [billing_v1.Sku.to_dict(sku, use_integers_for_enums=False) for sku in pager]
    frame = pl.DataFrame(
        [{k: sku.get(k) for k in _SKU} for sku in skus], schema=_SKU, strict=False
    )
    return gpu_prices(frame)


def gpu_prices(skus: pl.DataFrame) -> pl.DataFrame:
    """Keep the GPU SKUs of a catalog frame (Sku fields, snake_case) and flatten prices."""
    category = pl.col("category")
    gpu = skus.filter(
        (category.struct.field("resource_group") == "GPU")
        | pl.col("description").str.contains(GPU_DESCRIPTION)
    )
    rates = (
        gpu.explode("service_regions")
        .explode("pricing_info")
        .with_columns(pl.col("pricing_info").struct.unnest())
        .with_columns(pl.col("pricing_expression").struct.unnest())
        .explode("tiered_rates")
        .with_columns(pl.col("tiered_rates").struct.unnest())
        .with_columns(pl.col("unit_price").struct.unnest())
    )
    # units (int64 as text) and nanos (same sign) -> an exact count of billionths; proto3
    # JSON may leave out either when it is zero, but a SKU without any price stays null.
    units, nanos = pl.col("units"), pl.col("nanos")
    billionths = pl.when(units.is_not_null() | nanos.is_not_null()).then(
        units.fill_null("0").cast(pl.Int64) * 1_000_000_000 + nanos.fill_null(0)
    )
    unit_price = billionths.cast(pl.Decimal(38, 0)).cast(MONEY) / pl.lit(Decimal(10**9))
    per_hour = pl.col("usage_unit").replace_strict(
        UNITS_PER_HOUR, default=None, return_dtype=pl.Int64
    )
    out = rates.select(
        pl.col("sku_id"),
        pl.col("description"),
        pl.col("name").str.extract(r"^services/([^/]+)/").alias("service_id"),
        category.struct.field("resource_group").alias("resource_group"),
        category.struct.field("usage_type").alias("usage_type"),
        pl.col("description").str.extract(r"(?i)nvidia\s+(.+?)\s+GPU\b").alias("gpu_model"),
        pl.col("service_regions").alias("region"),
        pl.col("usage_unit"),
        pl.col("start_usage_amount").cast(pl.String).str.to_decimal(scale=QUANTITY.scale),
        unit_price.cast(MONEY).alias("unit_price"),
        (unit_price * per_hour).cast(MONEY).alias("price_per_hour"),
        pl.col("currency_code").alias("currency"),
        parse_utc(pl.col("effective_time")).alias("effective_time"),
    )
    return conform(out, GPU_SKU_PRICES).sort("sku_id", "region", "start_usage_amount")
