"""Lake contracts of the price references (FX rates).

Kept apart from `connectors.schemas` until the lead merges them into LAKE_TABLES; the
writer (`assets.prices`) conforms to it and calls `lake.replace_partition` itself.

lake/fx_rates/date=<rate_date>/part-0.parquet   the effective FX table (dbt seed merged
                                                with the landing's fx/*.csv), one
                                                partition per rate date
"""

from __future__ import annotations

import polars as pl

from connectors.schemas import MONEY

# USD per unit of a currency from rate_date on (the meaning of the dbt seed fx_rates.csv:
# date, currency, usd_per_unit). The hive partition `date` equals rate_date, so a reader
# of the lake glob gets the seed's own column names.
FX_RATES: dict[str, pl.DataType] = {
    "rate_date": pl.Date,
    "currency": pl.String,
    "usd_per_unit": MONEY,
    "source": pl.String,  # `seed` or the landing key of the fx/*.csv that set the rate
}

PRICE_TABLES: dict[str, dict[str, pl.DataType]] = {"fx_rates": FX_RATES}
