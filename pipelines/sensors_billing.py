"""Billing sensors: a new or rewritten bill export requests exactly the days it changes.

Providers rewrite bills: AWS re-delivers a month's CUR several times a day and for weeks
after the month closes, Google appends late rows to an invoice month for days. Each
arrival maps to the daily partitions of `daily_refresh` it makes stale:

- an AWS CUR manifest (or a data file under aws_cur/): every day of its billing month up
  to today, because the month is replaced whole by its newest manifest;
- a FOCUS or GCP export file: the days its rows are charged on (and its home day when it
  has quarantined rows); when it cannot be read, its billing month (the run then fails
  loudly with the reader's message);
- the BigQuery export: the usage days of the rows exported since the cursor, in each
  invoice month that received them (`changed_invoice_months`).

Listing is cursored on LastModified (S3 has one-second resolution, so the objects seen at
the cursor's second are kept too). Run keys hash the objects' key@ETag, so a tick that
sees the same delivery twice never starts a second run. Contiguous days are one run (a
single-run backfill, one dbt start-up for a restated month). The mapping from objects to
days is plain functions (`affected_days`, `billing_run_requests`); the sensors only list,
read and keep the cursor.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from assets.partitions import FIRST_DAY
from assets.resources import StorageResource
from connectors import focus, gcp_billing
from connectors.landing import LandingObject, LandingStore, matching, path_date
from connectors.result import ParseResult, SourceFormatError
from connectors.sources import (
    GCP_BILLING_PATTERNS,
    GCP_BILLING_PREFIX,
    GCP_TABLE_ENV,
    GcpBillingTable,
    bigquery_cursor,
)

BILLING_PREFIXES = ("aws_cur", "focus", GCP_BILLING_PREFIX)
FOCUS_PATTERNS = ("*.csv", "*.csv.gz", "*.parquet")
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# BILLING_PERIOD=2026-03 (CUR 2.0), /20260301-20260401/ (legacy CUR), else a YYYY-MM or
# YYYY/MM in the path (a FOCUS or GCP export filed by month).
_CUR_PERIOD = re.compile(r"BILLING_PERIOD=(\d{4})-(\d{2})|/(\d{4})(\d{2})01-\d{8}/")
_MONTH_IN_PATH = re.compile(r"(?<!\d)(\d{4})[-/](\d{2})(?![\d])")


@dataclass(frozen=True)
class BillingArrival:
    """A new or rewritten billing object, with what reading it told about its days."""

    key: str
    etag: str
    last_modified: datetime
    billing_month: date | None = None  # first day; a CUR month, or where a file is filed
    row_days: tuple[date, ...] = ()  # days its rows are charged on (FOCUS, GCP files)

    @property
    def token(self) -> str:
        return f"{self.key}@{self.etag}"


def month_days(first: date, today: date) -> list[date]:
    """The days of `first`'s month, up to `today`."""
    last = calendar.monthrange(first.year, first.month)[1]
    return [d for d in (first.replace(day=n) for n in range(1, last + 1)) if d <= today]


def billing_month_in_path(key: str) -> date | None:
    """The billing month a key is filed under, or None."""
    cur = _CUR_PERIOD.search(key)
    if cur:
        year, month = cur.group(1) or cur.group(3), cur.group(2) or cur.group(4)
        return date(int(year), int(month), 1)
    found = _MONTH_IN_PATH.findall(key)
    if found and 1 <= int(found[-1][1]) <= 12:
        return date(int(found[-1][0]), int(found[-1][1]), 1)
    return None


def affected_days(
    arrival: BillingArrival, today: date, *, previous: Iterable[date] = ()
) -> list[date]:
    """The daily partitions an arrival makes stale (before FIRST_DAY and after today dropped).

    `previous`: the days the lake holds rows of the same key from an earlier version.
    """
    if arrival.key.startswith("aws_cur/") or not arrival.row_days:
        first = arrival.billing_month or arrival.last_modified.date().replace(day=1)
        days = {*month_days(first, today), *previous}
    else:
        days = {*arrival.row_days, *previous}
    start = date.fromisoformat(FIRST_DAY)
    return sorted(d for d in days if start <= d <= today)


def day_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    """Days -> contiguous inclusive ranges, in order."""
    ranges: list[tuple[date, date]] = []
    for d in sorted(set(days)):
        if ranges and d == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], d)
        else:
            ranges.append((d, d))
    return ranges


def billing_run_requests(
    days_by_token: Mapping[str, Iterable[date]], *, trigger: str
) -> list[dg.RunRequest]:
    """One run of daily_refresh per contiguous range of affected days.

    `days_by_token` maps each object's key@ETag (or BigQuery month@export_time) to its
    days; a range's run key hashes the tokens that touch it, so the same delivery seen
    again asks for the same run and Dagster starts it once.
    """
    days_by_token = {t: set(ds) for t, ds in days_by_token.items()}
    requests = []
    for first, last in day_ranges(d for ds in days_by_token.values() for d in ds):
        tokens = sorted(t for t, ds in days_by_token.items() if any(first <= d <= last for d in ds))
        digest = hashlib.sha256("\n".join(tokens).encode()).hexdigest()[:16]
        run_key = f"billing:{first.isoformat()}..{last.isoformat()}:{digest}"
        tags = {"inferledger/trigger": trigger, "inferledger/billing_objects": str(len(tokens))}
        if first == last:
            requests.append(
                dg.RunRequest(run_key=run_key, partition_key=first.isoformat(), tags=tags)
            )
        else:
            range_tags = {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}
            requests.append(dg.RunRequest(run_key=run_key, tags={**tags, **range_tags}))
    return requests


def bigquery_days_by_token(
    table: str, changed: Iterable[gcp_billing.ChangedMonth], today: date
) -> dict[str, list[date]]:
    """Each changed invoice month's usage days, keyed by table#month@latest export_time."""
    start = date.fromisoformat(FIRST_DAY)
    return {
        f"{table}#{m.invoice_month}@{m.latest_export_time.isoformat()}": [
            d for d in m.usage_days if start <= d <= today
        ]
        for m in changed
    }


# --- reading what arrived ------------------------------------------------------------------


def _read_rows(store: LandingStore, obj: LandingObject) -> ParseResult | None:
    """A FOCUS or GCP export file read by its own connector; None for other objects."""
    if obj.key.startswith("focus/") and matching([obj], *FOCUS_PATTERNS):
        reader = focus.read_focus_file
        options = {"export_version": f"{obj.key}@{obj.etag}"}
    elif obj.key.startswith(f"{GCP_BILLING_PREFIX}/") and matching([obj], *GCP_BILLING_PATTERNS):
        reader, options = gcp_billing.read_gcp_billing_file, {}
    else:
        return None
    path = store.local_path(obj.key)
    data = path if path is not None else store.read_bytes(obj.key)
    return reader(data, source_file=obj.key, **options)


def read_arrival(store: LandingStore, obj: LandingObject) -> BillingArrival | None:
    """What an object means for the bill; None when it is not part of one (a README)."""
    arrival = BillingArrival(obj.key, obj.etag, obj.last_modified, billing_month_in_path(obj.key))
    if obj.key.startswith("aws_cur/"):
        if obj.key.endswith("Manifest.json"):
            return replace(
                arrival, billing_month=_manifest_month(store, obj) or arrival.billing_month
            )
        return arrival if arrival.billing_month is not None else None
    try:
        result = _read_rows(store, obj)
    except SourceFormatError:
        return arrival  # its month reruns, and the run reports the reader's error
    if result is None:
        return None
    days = set(result.rows.get_column("charge_period_start").dt.date().unique().to_list())
    if result.rows_quarantined:  # quarantine is filed under the file's home day
        days.add(path_date(obj.key) or obj.last_modified.date())
    return replace(arrival, row_days=tuple(sorted(days)))


def days_in_lake(lake: str | Path, keys: Iterable[str]) -> dict[str, set[date]]:
    """The days whose billing partition holds rows of each file: a rewritten file must
    also rerun the days its previous version filled, which its new rows may not name."""
    files = sorted(Path(lake).glob("billing_line_items/date=*/*.parquet"))
    keys = list(keys)
    if not files or not keys:
        return {}
    found = (
        pl.scan_parquet(files, hive_partitioning=True)
        .filter(pl.col("source_file").is_in(keys))
        .select("source_file", pl.col("date").cast(pl.Date))
        .unique()
        .collect()
    )
    out: dict[str, set[date]] = {}
    for key, day in found.iter_rows():
        out.setdefault(key, set()).add(day)
    return out


def _manifest_month(store: LandingStore, obj: LandingObject) -> date | None:
    try:
        period = json.loads(store.read_bytes(obj.key)).get("billingPeriod")
    except (json.JSONDecodeError, AttributeError):
        return None
    start = period.get("start") if isinstance(period, dict) else period
    digits = re.sub(r"[^0-9]", "", start) if isinstance(start, str) else ""
    return date(int(digits[:4]), int(digits[4:6]), 1) if len(digits) >= 6 else None


@dataclass
class ListingCursor:
    """Where the listing stands: the newest LastModified seen and the objects seen at it."""

    since: datetime | None = None
    at_since: list[str] = field(default_factory=list)  # key@etag with LastModified == since
    baseline_taken: bool = False  # the store's first listing, history rather than news

    @classmethod
    def load(cls, text: str | None) -> ListingCursor:
        if not text:
            return cls()
        state = json.loads(text)
        since = datetime.fromisoformat(state["since"]) if state["since"] else None
        return cls(since, state["at_since"], baseline_taken=True)

    def dump(self) -> str:
        since = self.since.isoformat() if self.since else None
        return json.dumps({"since": since, "at_since": sorted(self.at_since)})

    def is_new(self, obj: LandingObject) -> bool:
        return (
            self.since is None
            or obj.last_modified > self.since
            or (obj.last_modified == self.since and f"{obj.key}@{obj.etag}" not in self.at_since)
        )

    def advance(self, objects: list[LandingObject]) -> None:
        for o in objects:
            token = f"{o.key}@{o.etag}"
            if self.since is None or o.last_modified > self.since:
                self.since, self.at_since = o.last_modified, [token]
            elif o.last_modified == self.since and token not in self.at_since:
                self.at_since.append(token)


def new_billing_objects(store: LandingStore, cursor: ListingCursor) -> list[LandingObject]:
    """Objects under the billing prefixes modified since the cursor, oldest first."""
    listed = [o for prefix in BILLING_PREFIXES for o in store.list(prefix)]
    return sorted((o for o in listed if cursor.is_new(o)), key=lambda o: (o.last_modified, o.key))


# --- the sensors ---------------------------------------------------------------------------


def build_billing_sensors(
    job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    *,
    minimum_interval_seconds: int = 120,
    bigquery: Callable[[], GcpBillingTable | None] = GcpBillingTable.from_env,
) -> list[dg.SensorDefinition]:
    """The landing-store and BigQuery billing sensors, requesting runs of `job`.

    `bigquery` says which BigQuery export to watch (by default the one the environment
    names, with Application Default Credentials).
    """

    @dg.sensor(
        name="billing_export_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        description="A new CUR manifest or a new or rewritten FOCUS / GCP export file in the"
        " landing store requests the days it changes.",
    )
    def billing_export_sensor(
        context: dg.SensorEvaluationContext, storage: StorageResource
    ) -> dg.SensorResult:
        store = storage.store()
        cursor = ListingCursor.load(context.cursor)
        objects = new_billing_objects(store, cursor)
        if not cursor.baseline_taken:
            # The first look at a store: what is there is history (a backfill's job).
            cursor.advance(objects)
            return dg.SensorResult(skip_reason="baseline listing recorded", cursor=cursor.dump())
        today = datetime.now(UTC).date()
        arrivals = [a for a in (read_arrival(store, o) for o in objects) if a is not None]
        before = days_in_lake(storage.lake_path, [a.key for a in arrivals])
        days_by_token = {
            a.token: affected_days(a, today, previous=before.get(a.key, ())) for a in arrivals
        }
        cursor.advance(objects)
        requests = billing_run_requests(days_by_token, trigger="billing_export_sensor")
        if not requests:
            return dg.SensorResult(skip_reason="no billing export changed", cursor=cursor.dump())
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump())

    @dg.sensor(
        name="gcp_bigquery_billing_sensor",
        job=job,
        minimum_interval_seconds=max(minimum_interval_seconds, 600),
        description="Rows exported to the BigQuery billing export since the cursor request"
        f" their usage days ({GCP_TABLE_ENV} names the table).",
    )
    def gcp_bigquery_billing_sensor(
        context: dg.SensorEvaluationContext, storage: StorageResource
    ) -> dg.SensorResult:
        source = bigquery()
        if source is None:
            return dg.SensorResult(skip_reason=f"{GCP_TABLE_ENV} is not set")
        # Without a cursor of its own, the sensor starts where the lake's pull stands.
        since = (
            datetime.fromisoformat(context.cursor)
            if context.cursor
            else bigquery_cursor(storage.lake_path, source.table)
        )
        changed = gcp_billing.changed_invoice_months(
            source.client(), source.table, since_export_time=since
        )
        if not changed:
            return dg.SensorResult(skip_reason="no rows exported since the cursor")
        today = datetime.now(UTC).date()
        requests = billing_run_requests(
            bigquery_days_by_token(source.table, changed, today),
            trigger="gcp_bigquery_billing_sensor",
        )
        latest = max(m.latest_export_time for m in changed)
        return dg.SensorResult(run_requests=requests, cursor=latest.isoformat())

    return [billing_export_sensor, gcp_bigquery_billing_sensor]


def billing_definitions(job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition) -> dg.Definitions:
    """The billing sensors, to merge into the code location."""
    return dg.Definitions(sensors=build_billing_sensors(job))
