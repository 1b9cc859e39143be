"""Planned events (launches, migrations, load tests) announced ahead: `config/planned_events.csv`.

A product lead who knows a launch will double a feature's spend next week writes it down
once, in the landing store, instead of acknowledging a page afterwards:

    dimension,key,start_date,end_date,description
    feature,code-review,2026-10-20,2026-10-24,code review GA launch
    customer,cust_piedpiper,2026-10-21,2026-10-21,Pied Piper onboarding load test

`dimension` is one the anomaly detector watches (`total`, `provider`, `model`,
`deployment`, `feature`, `customer`), `key` its value as the marts show it (for `total`,
`all`), and the dates are the first and last day, inclusive. An anomaly of that series
inside the window is still recorded, with `explained_by = "planned: <description>"`,
but never pages or notifies.

Customer keys are written as the customer ids the gateway sends. When customer ids are
pseudonymized (INFERLEDGER_CUSTOMER_SALT), `read_planned_events` hashes them the same way,
so the file never has to hold the hashes.

A malformed file fails the run with SourceFormatError naming the file, the line and the
fix: a planned launch silently dropped would page someone for it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import polars as pl

from connectors.landing import LandingStore
from connectors.litellm import pseudonymized_customers
from connectors.result import SourceFormatError

KEY = "config/planned_events.csv"
COLUMNS = ["dimension", "key", "start_date", "end_date", "description"]
PLANNED_EVENTS: dict[str, pl.DataType] = {
    "dimension": pl.String,
    "key": pl.String,
    "start_date": pl.Date,
    "end_date": pl.Date,
    "description": pl.String,
}


def read_planned_events(store: LandingStore, dimensions: Iterable[str], *,
                        customer_salt: str | None = None) -> pl.DataFrame:
    """The landing store's planned events (PLANNED_EVENTS rows); none without the file."""
    if not any(o.key == KEY for o in store.list("config")):
        return pl.DataFrame(schema=PLANNED_EVENTS)
    return parse_planned_events(store.read_bytes(KEY), source=KEY, dimensions=dimensions,
                                customer_salt=customer_salt)


def parse_planned_events(data: bytes, *, source: str, dimensions: Iterable[str],
                         customer_salt: str | None = None) -> pl.DataFrame:
    """One planned-events CSV -> PLANNED_EVENTS rows, every row checked."""
    try:
        table = pl.read_csv(io.BytesIO(data), infer_schema=False)
    except pl.exceptions.NoDataError:
        return pl.DataFrame(schema=PLANNED_EVENTS)
    except pl.exceptions.PolarsError as exc:
        raise SourceFormatError(f"{source}: not a CSV file ({exc}); write {','.join(COLUMNS)}"
                                ) from exc
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise SourceFormatError(
            f"{source}: missing column(s) {missing}; the header is {','.join(COLUMNS)}")
    known = sorted(set(dimensions))
    events = table.select(
        pl.col("dimension").str.strip_chars(),
        pl.col("key").str.strip_chars(),
        pl.col("start_date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False),
        pl.col("end_date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False),
        pl.col("description").str.strip_chars(),
        # The header is line 1.
        pl.int_range(2, pl.len() + 2).alias("_line"),
        pl.col("start_date").alias("_start_text"),
        pl.col("end_date").alias("_end_text"),
    )
    problem = pl.coalesce(
        pl.when(~pl.col("dimension").is_in(known).fill_null(False)).then(pl.format(
            "dimension '{}' is not one the detector watches ({})", pl.col("dimension").fill_null(""),
            pl.lit(", ".join(known)))),
        pl.when(pl.col("key").fill_null("") == "").then(pl.lit("key is empty")),
        pl.when(pl.col("start_date").is_null()).then(pl.format(
            "start_date '{}' is not a date (YYYY-MM-DD)", pl.col("_start_text").fill_null(""))),
        pl.when(pl.col("end_date").is_null()).then(pl.format(
            "end_date '{}' is not a date (YYYY-MM-DD)", pl.col("_end_text").fill_null(""))),
        pl.when(pl.col("end_date") < pl.col("start_date")).then(
            pl.lit("end_date is before start_date (both days are inclusive)")),
        pl.when(pl.col("description").fill_null("") == "").then(
            pl.lit("description is empty (it is what the alert says instead of paging)")),
    )
    bad = events.with_columns(problem.alias("_problem")).filter(pl.col("_problem").is_not_null())
    if bad.height:
        first = bad.row(0, named=True)
        more = f" (and {bad.height - 1} more line(s))" if bad.height > 1 else ""
        raise SourceFormatError(
            f"{source} line {first['_line']}: {first['_problem']}{more}; fix the line or "
            "remove it")
    events = events.select(list(PLANNED_EVENTS))
    if customer_salt is not None:
        hashed = pseudonymized_customers(pl.col("key"), events["key"], customer_salt)
        events = events.with_columns(
            pl.when(pl.col("dimension") == "customer").then(hashed).otherwise(pl.col("key"))
            .alias("key"))
    return events
