"""Sensors: data arriving starts the runs it needs; anomalies and failed runs start alerting.

**Landing sensor.** New or rewritten objects in the landing store are found either from S3
event notifications delivered through SQS (`INFERLEDGER_LANDING_QUEUE_URL`) or, without a
queue or when it cannot be read, by listing the store with a LastModified cursor. Each
object maps to the days it affects:

- an AWS CUR manifest: every day of the billing month it names (`billingPeriod`): a
  restated month is rebuilt whole; CUR data files themselves map to nothing, because the
  manifest, written last, is what says which files make the month;
- a FOCUS export: every day of the month in its path (else of its LastModified);
- a gateway log or a telemetry file: the day in its path (else its LastModified day);
- an inventory file: the day it changed (the fleet is snapshotted per day).

A burst of files is debounced into one run: objects wait in the cursor until no new one
has arrived for `quiet`, or the oldest has waited `max_wait`; then each contiguous range of
days is one run (a single-run backfill for a month). Run keys are built from the objects'
key@ETag, so an event delivered twice (SQS is at-least-once) never starts a second run.
The daily schedule stays the safety net for anything a sensor misses.

**Alert sensor.** A new materialization of `cost_anomalies` or of the reconciliation mart
that no `alert_delivery` has seen yet requests a delivery run; so does delivery work left
pending (a trigger in cooldown, a digest not yet due). **Run-failure sensor.** A failed run
requests a delivery run, which pages for it.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import dagster as dg

from assets.partitions import FIRST_DAY
from assets.resources import StorageResource
from connectors import aws_cur
from connectors.landing import LandingStore, S3Store, path_date
from connectors.result import SourceFormatError
from pipelines.alerts.asset import ANOMALIES, RECONCILIATION, alert_delivery, alert_delivery_job

QUEUE_URL_ENV = "INFERLEDGER_LANDING_QUEUE_URL"
DEFAULT_QUIET = timedelta(seconds=60)
DEFAULT_MAX_WAIT = timedelta(minutes=10)
RECENT_TOKENS = 5000  # key@etag already requested, kept to drop duplicate events
SQS_BATCHES_PER_TICK = 20  # x 10 messages; the rest waits for the next tick
# A short poll may answer empty while messages wait (SQS samples its servers): the first
# receive of a tick long-polls this long, and returns as soon as a message is there.
SQS_WAIT_SECONDS = 1
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
_MONTH_IN_PATH = re.compile(r"(?<!\d)(\d{4})-?(\d{2})(?:-?\d{2})?(?!\d)")


@dataclass(frozen=True)
class LandingChange:
    """An object that appeared, was rewritten or was removed, by its landing-store key."""

    key: str
    etag: str
    seen_at: datetime  # LastModified, or the S3 event's time
    removed: bool = False

    @property
    def token(self) -> str:
        return f"{self.key}@{self.etag}"


# --- which days an object affects --------------------------------------------------------


def _month_days(year: int, month: int) -> list[date]:
    last = calendar.monthrange(year, month)[1]
    return [date(year, month, d) for d in range(1, last + 1)]


def days_affected(store: LandingStore, change: LandingChange) -> list[date]:
    """The daily partitions an object's arrival (or removal) makes stale; [] for none."""
    source = change.key.split("/", 1)[0]
    if source == "aws_cur":
        if not change.key.endswith("Manifest.json") or change.removed:
            return []
        manifest = json.loads(store.read_bytes(change.key))
        # The CUR reader's own rule (billingPeriod, else BILLING_PERIOD= in the path), so
        # the sensor and the ingestion never disagree about a manifest's month.
        period = aws_cur._billing_period(manifest, change.key)
        return _month_days(int(period[:4]), int(period[5:7]))
    if source == "focus":
        month = _MONTH_IN_PATH.findall(change.key)
        year, mon = (int(month[-1][0]), int(month[-1][1])) if month else (
            change.seen_at.year, change.seen_at.month)
        return _month_days(year, mon) if 1 <= mon <= 12 else []
    if source in ("gateway_logs", "gpu_telemetry"):
        return [path_date(change.key) or change.seen_at.date()]
    if source == "inventory":
        return [change.seen_at.date()]
    return []


def _partition_days(days: Iterable[date], today: date) -> list[date]:
    """Days that are partitions: from FIRST_DAY to today (today's partition is open)."""
    first = date.fromisoformat(FIRST_DAY)
    return sorted({d for d in days if first <= d <= today})


def day_ranges(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days -> contiguous inclusive ranges."""
    ranges: list[tuple[date, date]] = []
    for d in days:
        if ranges and d == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], d)
        else:
            ranges.append((d, d))
    return ranges


def run_requests(days: list[date], tokens: list[str], *, trigger: str = "landing_sensor",
                 key_prefix: str = "landing") -> list[dg.RunRequest]:
    """One run per contiguous range of days; the run key names the objects that caused it."""
    digest = hashlib.sha256("\n".join(sorted(tokens)).encode()).hexdigest()[:16]
    out = []
    for first, last in day_ranges(days):
        run_key = f"{key_prefix}:{digest}:{first.isoformat()}..{last.isoformat()}"
        tags = {"inferledger/trigger": trigger, "inferledger/objects": str(len(tokens))}
        if first == last:
            out.append(dg.RunRequest(run_key=run_key, partition_key=first.isoformat(), tags=tags))
        else:
            out.append(dg.RunRequest(run_key=run_key, tags={
                **tags, RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}))
    return out


# --- where changes come from ---------------------------------------------------------------


def changes_from_s3_events(bodies: Iterable[str], bucket: str, prefix: str) -> list[LandingChange]:
    """S3 event notifications (direct, or wrapped by SNS) -> changes under the store's prefix.

    The s3:TestEvent S3 sends when a notification is configured carries no Records and is
    skipped; keys arrive URL-encoded.
    """
    root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    out = []
    for body in bodies:
        message = json.loads(body)
        if isinstance(message.get("Message"), str):  # SNS envelope
            message = json.loads(message["Message"])
        for record in message.get("Records", []):
            s3 = record.get("s3", {})
            if s3.get("bucket", {}).get("name") != bucket:
                continue
            key = unquote_plus(s3.get("object", {}).get("key", ""))
            if not key.startswith(root) or key.endswith("/"):
                continue
            removed = str(record.get("eventName", "")).startswith("ObjectRemoved")
            event_time = datetime.fromisoformat(record["eventTime"])  # 3.11 reads the Z
            out.append(LandingChange(
                key=key[len(root):],
                etag=str(s3["object"].get("eTag") or s3["object"].get("sequencer") or "removed"),
                # LastModified has whole seconds: so must the listing position taken from events.
                seen_at=event_time.replace(microsecond=0),
                removed=removed,
            ))
    return out


def receive_s3_events(sqs: Any, queue_url: str, bucket: str, prefix: str) -> list[LandingChange]:
    """Drain up to SQS_BATCHES_PER_TICK batches and delete them once parsed.

    Deleting before the runs start is safe: the changes are kept in the sensor's cursor,
    and a tick that dies before saving it is covered by the listing fallback and the
    daily schedule.
    """
    changes: list[LandingChange] = []
    for i in range(SQS_BATCHES_PER_TICK):
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                    WaitTimeSeconds=SQS_WAIT_SECONDS if i == 0 else 0)
        messages = batch.get("Messages", [])
        if not messages:
            break
        changes += changes_from_s3_events([m["Body"] for m in messages], bucket, prefix)
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return changes


def changes_from_listing(
    store: LandingStore, since: datetime | None, seen_at_since: set[str]
) -> list[LandingChange]:
    """Objects modified after `since`, or at `since` and not seen then (S3 has 1 s resolution)."""
    out = []
    for o in store.list():
        if since is None or o.last_modified > since or (
            o.last_modified == since and f"{o.key}@{o.etag}" not in seen_at_since
        ):
            out.append(LandingChange(o.key, o.etag, o.last_modified))
    return out


# --- the cursor: listing position, debounced changes, recently requested -------------------


@dataclass
class LandingCursor:
    since: datetime | None = None  # the listing position: newest LastModified seen
    seen_at_since: list[str] = field(default_factory=list)  # key@etag seen at exactly `since`
    pending: dict[str, list[str]] = field(default_factory=dict)  # key@etag -> ISO days, debouncing
    first_at: datetime | None = None  # when the pending burst started
    last_at: datetime | None = None  # when its newest object was seen
    recent: list[str] = field(default_factory=list)  # key@etag already requested
    listed: bool = False  # the store's contents at the first look were recorded

    @classmethod
    def load(cls, text: str | None) -> LandingCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        for k in ("since", "first_at", "last_at"):
            raw[k] = datetime.fromisoformat(raw[k]) if raw.get(k) else None
        return cls(**raw)

    def dump(self) -> str:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return json.dumps({
            "since": iso(self.since), "seen_at_since": self.seen_at_since, "pending": self.pending,
            "first_at": iso(self.first_at), "last_at": iso(self.last_at),
            "recent": self.recent[-RECENT_TOKENS:], "listed": self.listed,
        })

    def advance(self, changes: list[LandingChange]) -> None:
        """Move the listing position past `changes` (keys seen at the newest instant kept)."""
        for c in changes:
            if self.since is None or c.seen_at > self.since:
                self.since, self.seen_at_since = c.seen_at, [c.token]
            elif c.seen_at == self.since and c.token not in self.seen_at_since:
                self.seen_at_since.append(c.token)


@dataclass(frozen=True)
class TickPlan:
    requests: list[dg.RunRequest]
    cursor: LandingCursor
    unmapped: list[str]  # keys that map to no partition (logged, not silently dropped)
    waiting: int  # objects held back by the debounce


def plan_tick(
    cursor: LandingCursor,
    changes: list[LandingChange],
    days_of: Any,
    now: datetime,
    *,
    quiet: timedelta = DEFAULT_QUIET,
    max_wait: timedelta = DEFAULT_MAX_WAIT,
) -> TickPlan:
    """Add new changes to the pending set; release it as runs once the burst is over."""
    known = set(cursor.recent) | set(cursor.pending)
    unmapped = []
    for change in changes:
        if change.token in known:
            continue
        known.add(change.token)
        days = _partition_days(days_of(change), now.date())
        if not days:
            unmapped.append(change.key)
            continue
        cursor.pending[change.token] = [d.isoformat() for d in days]
        cursor.first_at = cursor.first_at or now
        cursor.last_at = now
    cursor.advance(changes)
    if not cursor.pending:
        return TickPlan([], cursor, unmapped, 0)
    burst_over = now - cursor.last_at >= quiet or now - cursor.first_at >= max_wait
    if not burst_over:
        return TickPlan([], cursor, unmapped, len(cursor.pending))
    tokens = sorted(cursor.pending)
    days = sorted({date.fromisoformat(d) for ds in cursor.pending.values() for d in ds})
    requests = run_requests(days, tokens)
    cursor.recent = [*cursor.recent, *tokens]
    cursor.pending, cursor.first_at, cursor.last_at = {}, None, None
    return TickPlan(requests, cursor, unmapped, 0)


def _sqs_client() -> Any:
    import boto3

    # Region and endpoint come from the standard AWS variables (AWS_REGION,
    # AWS_ENDPOINT_URL_SQS), like every boto3 client.
    return boto3.client("sqs")


def build_landing_sensor(
    job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    *,
    name: str = "landing_sensor",
    quiet: timedelta = DEFAULT_QUIET,
    max_wait: timedelta = DEFAULT_MAX_WAIT,
    minimum_interval_seconds: int = 30,
) -> dg.SensorDefinition:
    """The sensor that turns landing-store changes into runs of `job` (daily partitions)."""

    @dg.sensor(name=name, job=job, minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="New or rewritten landing objects (S3 events through SQS, else a "
               "listing) request the days they affect; bursts are debounced into one run.")
    def _landing_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
        store = storage.store()
        cursor = LandingCursor.load(context.cursor)
        now = datetime.now(UTC)
        queue_url = os.environ.get(QUEUE_URL_ENV)
        changes: list[LandingChange] | None = None
        if queue_url and isinstance(store, S3Store):
            try:
                changes = receive_s3_events(_sqs_client(), queue_url, store.bucket, store.prefix)
            except Exception as exc:  # noqa: BLE001 - any SQS failure falls back to listing
                context.log.warning(f"SQS queue unreadable ({type(exc).__name__}); listing the store instead")
        if changes is None:
            if cursor.since is None and not cursor.listed:
                # First look at a store: what is there is history (a backfill's job), not news.
                cursor.advance([LandingChange(o.key, o.etag, o.last_modified) for o in store.list()])
                cursor.listed = True
                return dg.SensorResult(skip_reason="baseline listing recorded", cursor=cursor.dump())
            changes = changes_from_listing(store, cursor.since, set(cursor.seen_at_since))

        def days_of(change: LandingChange) -> list[date]:
            try:
                return days_affected(store, change)
            except (SourceFormatError, ValueError, FileNotFoundError) as exc:
                context.log.warning(f"{change.key}: cannot tell which days it affects ({exc})")
                return []

        plan = plan_tick(cursor, changes, days_of, now, quiet=quiet, max_wait=max_wait)
        if plan.unmapped:
            context.log.info(f"{len(plan.unmapped)} object(s) affect no partition: {plan.unmapped[:5]}")
        if plan.requests:
            return dg.SensorResult(run_requests=plan.requests, cursor=plan.cursor.dump())
        reason = f"waiting for the burst to end ({plan.waiting} objects)" if plan.waiting else "no new objects"
        return dg.SensorResult(skip_reason=reason, cursor=plan.cursor.dump())

    return _landing_sensor


# --- alerting -----------------------------------------------------------------------------


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> Any:
    records = instance.fetch_materializations(key, limit=1).records
    return records[0] if records else None


def build_alert_sensor(
    *, recheck: timedelta = timedelta(minutes=15), minimum_interval_seconds: int = 60
) -> dg.SensorDefinition:
    """Request alert delivery when anomalies or reconciliation changed since the last one."""

    @dg.sensor(name="alert_sensor", job=alert_delivery_job, minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="New cost_anomalies or reconciliation results, or delivery work left "
               "pending, start alert delivery.")
    def _alert_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        upstream = [r for r in (_latest(context.instance, k) for k in (ANOMALIES, RECONCILIATION)) if r]
        newest = max((r.storage_id for r in upstream), default=0)
        delivered = _latest(context.instance, alert_delivery.key)
        delivered_id = delivered.storage_id if delivered else 0
        seen = int(context.cursor or 0)
        if newest > max(delivered_id, seen):
            return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"alerts:{newest}")], cursor=str(newest))
        if delivered is not None:
            metadata = delivered.asset_materialization.metadata
            pending = metadata.get("pending")
            age = datetime.now(UTC).timestamp() - delivered.timestamp
            if pending is not None and pending.value and age >= recheck.total_seconds():
                return dg.SensorResult(
                    run_requests=[dg.RunRequest(run_key=f"alerts:recheck:{delivered_id}")], cursor=str(seen))
        return dg.SensorResult(skip_reason="nothing new to deliver", cursor=str(max(seen, newest)))

    return _alert_sensor


def build_run_failure_alert_sensor() -> dg.SensorDefinition:
    """A failed run (a blocking check failing fails its run too) starts alert delivery."""

    @dg.run_failure_sensor(name="run_failure_alert_sensor", request_job=alert_delivery_job,
                           default_status=dg.DefaultSensorStatus.RUNNING)
    def _run_failure_alert_sensor(context: dg.RunFailureSensorContext) -> dg.RunRequest | None:
        if context.dagster_run.job_name == alert_delivery_job.name:
            return None  # delivery itself failing is retried by its policy; paging for it would loop
        return dg.RunRequest(run_key=f"run_failed:{context.dagster_run.run_id}")

    return _run_failure_alert_sensor


def event_definitions(refresh_job: dg.UnresolvedAssetJobDefinition) -> dg.Definitions:
    """The sensors, the alert delivery asset and its job, for `pipelines.definitions` to merge."""
    return dg.Definitions(
        assets=[alert_delivery],
        jobs=[alert_delivery_job],
        sensors=[build_landing_sensor(refresh_job), build_alert_sensor(), build_run_failure_alert_sensor()],
    )
