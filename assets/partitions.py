"""Daily UTC partitions shared by every usage asset and mart."""

from __future__ import annotations

import warnings
from datetime import date, datetime, timedelta

import dagster as dg

# Single-run backfills (a range of days in one run, one dbt start-up) are what make a
# backfill cheap; the parameter is marked beta in Dagster 1.13 and we rely on it knowingly.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

FIRST_DAY = "2024-01-01"

# end_offset=1 keeps today's partition open, so data arriving today can be built today.
DAILY = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1, timezone="UTC")


def days_in_window(start: datetime, end: datetime) -> list[date]:
    """The days of a half-open [start, end) partition time window."""
    first, last = start.date(), end.date()
    return [first + timedelta(days=i) for i in range((last - first).days)]


def dbt_vars_for_window(start: datetime, end: datetime) -> dict[str, str]:
    """The only way a partition window reaches SQL: half-open `min_date`/`max_date`."""
    return {"min_date": start.date().isoformat(), "max_date": end.date().isoformat()}
