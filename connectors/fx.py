"""FX rates: USD per unit of each billing currency, effective-dated.

Every bill row keeps its own currency; the marts convert to the reporting currency (USD)
with the rate of the charge day, else the latest earlier rate. The dbt seed
`dbt/seeds/fx_rates.csv` is the default table; `fx/*.csv` files in the landing store
(same columns: date, currency, usd_per_unit) override it: a landing rate for a (date,
currency) the seed also has replaces the seed's, others are added. USD is the reporting
currency and is always 1, as in the dbt macro `fx_usd_per_unit`.

A bill row whose currency has no rate on or before its charge day cannot be converted;
`split_missing_rates` sends it to quarantine with the fix in its reason instead of letting
it be counted at 1.0. A malformed rate file fails loudly (SourceFormatError): a rate
silently skipped would quarantine a whole currency's bill.
"""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl

from connectors.currency import ISO_4217_CODES
from connectors.landing import LandingObject, LandingStore, matching
from connectors.result import SourceFormatError
from connectors.schemas import FX_RATES, MONEY, QUARANTINE, conform

SEED_PATH = Path(__file__).resolve().parent.parent / "dbt" / "seeds" / "fx_rates.csv"
LANDING_PREFIX = "fx"
REPORTING_CURRENCY = "USD"
COLUMNS = ["date", "currency", "usd_per_unit"]


def read_fx_csv(data: bytes | Path, *, source: str) -> pl.DataFrame:
    """One rate file (date, currency, usd_per_unit) -> FX_RATES rows tagged with `source`."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    try:
        table = pl.read_csv(io.BytesIO(raw), infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise SourceFormatError(
            f"{source}: not a CSV file ({exc}); write date,currency,usd_per_unit"
        ) from exc
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise SourceFormatError(
            f"{source}: FX rate column(s) {missing} missing (found {table.columns});"
            " the header must be date,currency,usd_per_unit"
        )
    parsed = table.with_row_index("_line", offset=2).select(  # line 1 is the header
        "_line",
        *[pl.col(c).alias(f"_raw_{c}") for c in COLUMNS],
        pl.col("date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("rate_date"),
        pl.col("currency").str.strip_chars().str.to_uppercase().alias("currency"),
        pl.col("usd_per_unit")
        .str.strip_chars()
        .str.to_decimal(scale=MONEY.scale)
        .alias("usd_per_unit"),
    )
    reason = pl.concat_str(
        [
            pl.when(pl.col("rate_date").is_null()).then(
                pl.format("date '{}' is not YYYY-MM-DD", pl.col("_raw_date"))
            ),
            pl.when(~pl.col("currency").is_in(sorted(ISO_4217_CODES))).then(
                pl.format("currency '{}' is not an ISO 4217 code", pl.col("_raw_currency"))
            ),
            pl.when(pl.col("usd_per_unit").is_null() | (pl.col("usd_per_unit") <= 0)).then(
                pl.format("usd_per_unit '{}' is not a positive number", pl.col("_raw_usd_per_unit"))
            ),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    bad = parsed.with_columns(reason.alias("reason")).filter(pl.col("reason") != "")
    if bad.height:
        lines = "; ".join(
            f"line {n}: {r}" for n, r in bad.select("_line", "reason").head(5).iter_rows()
        )
        raise SourceFormatError(
            f"{source}: bad FX rate rows ({lines}); fix the file, no rate is read from it"
        )
    duplicated = parsed.filter(pl.struct("rate_date", "currency").is_duplicated())
    if duplicated.height:
        first = duplicated.row(0, named=True)
        raise SourceFormatError(
            f"{source}: {first['currency']} on {first['rate_date']} is given more than once;"
            " keep one rate per date and currency"
        )
    return conform(
        parsed.select("rate_date", "currency", "usd_per_unit", pl.lit(source).alias("source")),
        FX_RATES,
    )


def landing_fx_objects(store: LandingStore) -> list[LandingObject]:
    return matching(store.list(LANDING_PREFIX), "*.csv")


def load_fx_rates(store: LandingStore | None = None, *, seed: Path = SEED_PATH) -> pl.DataFrame:
    """The effective FX table: the seed, overridden by the landing store's fx/*.csv.

    Two landing files giving different rates for the same (date, currency) is an error:
    which one is right is the user's call, not the order of a listing.
    """
    parts = [read_fx_csv(seed, source="seed")]
    landing = []
    for obj in landing_fx_objects(store) if store is not None else []:
        path = store.local_path(obj.key)
        landing.append(
            read_fx_csv(path if path is not None else store.read_bytes(obj.key), source=obj.key)
        )
    if landing:
        overrides = pl.concat(landing)
        clash = (
            overrides.group_by("rate_date", "currency")
            .agg(pl.col("usd_per_unit").n_unique().alias("rates"), pl.col("source").sort())
            .filter(pl.col("rates") > 1)
        )
        if clash.height:
            row = clash.row(0, named=True)
            raise SourceFormatError(
                f"{' and '.join(row['source'])} give different {row['currency']} rates for"
                f" {row['rate_date']}; keep one"
            )
        overrides = overrides.unique(["rate_date", "currency"], keep="first", maintain_order=True)
        parts = [parts[0].join(overrides, on=["rate_date", "currency"], how="anti"), overrides]
    return pl.concat(parts).sort("currency", "rate_date")


def rates_on(rates: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """`keys` (columns currency, day) with usd_per_unit and rate_date of the rate in force:
    the day's own rate, else the latest earlier one; null when there is none."""
    known = rates.select("currency", "rate_date", "usd_per_unit").sort("rate_date")
    found = (
        keys.with_row_index("_key")
        .with_columns(pl.col("day").cast(pl.Date))
        .sort("day")
        # Both sides are sorted on the date just above; polars cannot verify it per group.
        .join_asof(
            known,
            left_on="day",
            right_on="rate_date",
            by="currency",
            strategy="backward",
            check_sortedness=False,
        )
        .sort("_key")
        .drop("_key")
    )
    usd = pl.col("currency") == REPORTING_CURRENCY
    return found.with_columns(
        pl.when(usd)
        .then(pl.lit(Decimal(1), dtype=MONEY))
        .otherwise(pl.col("usd_per_unit"))
        .alias("usd_per_unit"),
        pl.when(usd).then(None).otherwise(pl.col("rate_date")).alias("rate_date"),
    )


def rate_for(rates: pl.DataFrame, currency: str, day: date) -> Decimal | None:
    """USD per unit of `currency` on `day` (that date's rate, else the latest earlier)."""
    found = rates_on(rates, pl.DataFrame({"currency": [currency.strip().upper()], "day": [day]}))
    return found.item(0, "usd_per_unit")


def missing_rate_reason(currency: pl.Expr, day: pl.Expr) -> pl.Expr:
    return pl.format(
        "no FX rate for {} on or before {}: add it to fx/*.csv in the landing store",
        currency,
        day.cast(pl.Date).cast(pl.String),
    )


def split_missing_rates(
    rows: pl.DataFrame, rates: pl.DataFrame, *, day_column: str = "charge_period_start"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Bill rows that can be converted, and quarantine for those whose billing_currency has
    no rate on or before the day of `day_column`.

    The normalized row no longer knows its line in the source file, so the quarantine row
    keeps the whole normalized row (with source_line_id) as its raw record.
    """
    if rows.is_empty():
        return rows, pl.DataFrame(schema=QUARANTINE)
    keys = rows.select(
        pl.col("billing_currency").alias("currency"), pl.col(day_column).dt.date().alias("day")
    )
    has_rate = rates_on(rates, keys).get_column("usd_per_unit").is_not_null()
    bad = rows.filter(~has_rate)
    quarantined = conform(
        bad.select(
            pl.col("source"),
            pl.col("source_file"),
            pl.lit(None, dtype=pl.Int64).alias("row_number"),
            missing_rate_reason(pl.col("billing_currency"), pl.col(day_column).dt.date()).alias(
                "reason"
            ),
            pl.struct(pl.all().cast(pl.String)).struct.json_encode().alias("raw"),
        ),
        QUARANTINE,
    )
    return rows.filter(has_rate), quarantined
