"""Planned-events sensor: an announcement written after the fact re-judges the days it covers.

`config/planned_events.csv` (connectors.planned_events) is read by every anomaly run, so a
launch announced ahead of time never pages. One announced late (the spike already paged,
the product lead writes it down afterwards), or withdrawn, used to change nothing until
someone reran those days by hand. This sensor watches the file's ETag; when it changes it
compares the new events with the ones it kept from the previous version and requests
`planned_events_refresh` (the anomaly detection and the marts export, not the ingestion
or dbt) for the days, up to today, covered by the events added, removed or edited. The
rerun keeps the anomalies with `explained_by = "planned: ..."` and severity info, and the
alert sensor then sees the new statuses. Future days need nothing: their runs will read
the file.

The first look records the file as it is (history is not news). A file that cannot be
read is logged and the cursor kept, so the corrected file triggers the runs; the anomaly
run itself fails on it naming the line.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from assets import anomaly_detection as ad
from assets.partitions import FIRST_DAY
from assets.resources import StorageResource
from connectors import planned_events
from connectors.landing import LandingStore
from connectors.result import SourceFormatError
from pipelines.sensors import run_requests

planned_events_refresh = dg.define_asset_job(
    "planned_events_refresh",
    # Daily partitions come from the two assets (Dagster infers them; naming them here is
    # deprecated and goes in Dagster 2.0).
    selection=dg.AssetSelection.assets("cost_anomalies", "marts_export"),
    description="Judge the days' cost anomalies again (planned events changed) and publish them.",
)

Event = tuple[str, str, str, str, str]  # dimension, key, first day, last day, description


def _token(store: LandingStore) -> str | None:
    """key@ETag of the planned-events file, None when there is none."""
    found = [o for o in store.list("config") if o.key == planned_events.KEY]
    return f"{found[0].key}@{found[0].etag}" if found else None


def read_events(store: LandingStore, customer_salt: str | None) -> list[Event]:
    """The file's events as plain tuples (customer keys hashed as the detector sees them)."""
    rows = planned_events.read_planned_events(
        store, ("total", *ad.LEAF_DIMENSIONS), customer_salt=customer_salt)
    return sorted((r["dimension"], r["key"], r["start_date"].isoformat(),
                   r["end_date"].isoformat(), r["description"]) for r in rows.iter_rows(named=True))


def days_to_rejudge(before: list[Event], after: list[Event], today: date) -> list[date]:
    """Days, from FIRST_DAY to today, inside an event that was added, removed or edited."""
    changed = set(map(tuple, before)) ^ set(map(tuple, after))
    first = date.fromisoformat(FIRST_DAY)
    days: set[date] = set()
    for _, _, start, end, _ in changed:
        day, last = max(date.fromisoformat(start), first), min(date.fromisoformat(end), today)
        while day <= last:
            days.add(day)
            day += timedelta(days=1)
    return sorted(days)


def plan(cursor: dict[str, Any] | None, token: str | None, read: Any, today: date
         ) -> tuple[list[dg.RunRequest], dict[str, Any], str]:
    """What one tick does: the runs to request, the next cursor, and what happened.

    `read` returns the current file's events (it raises SourceFormatError on a bad file).
    """
    if cursor is None:
        events = [] if token is None else _read_or_none(read)
        return [], {"token": token, "events": events or []}, "baseline recorded"
    if token == cursor["token"]:
        return [], cursor, "planned events unchanged"
    try:
        after = [] if token is None else read()
    except SourceFormatError as exc:
        return [], cursor, f"planned events unreadable, nothing rerun until fixed: {exc}"
    days = days_to_rejudge(cursor["events"], after, today)
    requests = run_requests(days, [token or f"{planned_events.KEY}@removed"],
                            trigger="planned_events_sensor", key_prefix="planned")
    note = f"{len(days)} day(s) to judge again" if days else "no past day affected"
    return requests, {"token": token, "events": [list(e) for e in after]}, note


def _read_or_none(read: Any) -> list[Event] | None:
    try:
        return [list(e) for e in read()]
    except SourceFormatError:
        return None


def build_planned_events_sensor(job: Any = planned_events_refresh, *,
                                minimum_interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(name="planned_events_sensor", job=job,
               minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="A change to config/planned_events.csv re-judges the past days "
               "its added, removed or edited events cover (anomalies and export only).")
    def _planned_events_sensor(context: dg.SensorEvaluationContext, storage: StorageResource
                               ) -> dg.SensorResult:
        store = storage.store()
        salt = storage.customer_salt

        def read() -> list[Event]:
            return read_events(store, salt)

        cursor = json.loads(context.cursor) if context.cursor else None
        requests, after, note = plan(cursor, _token(store), read, datetime.now(UTC).date())
        if "unreadable" in note:
            context.log.warning(note)
        next_cursor = json.dumps(after)
        if requests:
            return dg.SensorResult(run_requests=requests, cursor=next_cursor)
        return dg.SensorResult(skip_reason=note, cursor=next_cursor)

    return _planned_events_sensor


def planned_events_definitions() -> dg.Definitions:
    return dg.Definitions(jobs=[planned_events_refresh], sensors=[build_planned_events_sensor()])
