"""The landing sensor against moto in server mode: real S3 -> SQS bucket notifications,
boto3 over HTTP; and the listing fallback. Every test asserts the partitions requested."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from assets.ingestion import INGESTION_ASSETS
from assets.resources import StorageResource
from connectors.landing import LocalStore
from pipelines.sensors import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    LandingChange,
    LandingCursor,
    build_landing_sensor,
    changes_from_s3_events,
    day_ranges,
    days_affected,
    plan_tick,
)
from tests.support.moto_server import REGION, MotoServer, moto_server

BUCKET = "acme-landing"
LANDING = f"s3://{BUCKET}/landing"
JOB = dg.define_asset_job("landing_refresh", selection=INGESTION_ASSETS)


def gateway_key(day: date, part: int = 0) -> str:
    return f"landing/gateway_logs/litellm/{day:%Y/%m/%d}/spend_logs-{part}.jsonl.gz"


def spend_log(request_id: str) -> bytes:
    row = {"request_id": request_id, "startTime": "2024-06-05T10:00:00.000Z", "spend": 0.01}
    return gzip.compress(json.dumps(row).encode() + b"\n", mtime=0)  # same text, same bytes


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def landing(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A bucket whose `landing/` prefix notifies an SQS queue, as set up in AWS."""
    aws.reset()
    for name, value in {"AWS_ENDPOINT_URL": aws.endpoint, "AWS_DEFAULT_REGION": REGION,
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("INFERLEDGER_S3_ENDPOINT_URL", raising=False)
    s3, sqs = aws.client("s3"), aws.client("sqs")
    s3.create_bucket(Bucket=BUCKET)
    queue_url = sqs.create_queue(QueueName="landing-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{
            "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "landing/"}]}},
        }],
    })
    monkeypatch.setenv("INFERLEDGER_LANDING_QUEUE_URL", queue_url)
    return {"s3": s3, "sqs": sqs, "queue_url": queue_url}


class Ticker:
    """Evaluates a sensor tick after tick, carrying its cursor like the daemon does."""

    def __init__(self, sensor: dg.SensorDefinition, landing_uri: str) -> None:
        self.sensor, self.cursor = sensor, None
        self.storage = StorageResource(landing=landing_uri, lake="unused", warehouse="unused")

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(cursor=self.cursor, resources={"storage": self.storage})
        result = self.sensor(context)
        self.cursor = result.cursor
        return result


def partitions(result: dg.SensorResult) -> list[str]:
    return [r.partition_key or f"{r.tags[RANGE_START_TAG]}..{r.tags[RANGE_END_TAG]}" for r in result.run_requests]


def test_gateway_log_dropped_in_s3_requests_exactly_its_day(landing: dict) -> None:
    ticker = Ticker(build_landing_sensor(JOB, quiet=timedelta(0)), LANDING)
    landing["s3"].put_object(Bucket=BUCKET, Key=gateway_key(date(2024, 6, 5)), Body=spend_log("a"))
    first = ticker.tick()
    assert partitions(first) == ["2024-06-05"]
    request = first.run_requests[0]
    assert request.run_key.startswith("landing:") and request.run_key.endswith(":2024-06-05..2024-06-05")
    # The queue is drained (the s3:TestEvent included): the next tick requests nothing.
    assert ticker.tick().run_requests == []
    assert landing["sqs"].receive_message(QueueUrl=landing["queue_url"]).get("Messages") is None


def test_same_etag_twice_starts_one_run_and_a_rewrite_starts_another(landing: dict) -> None:
    ticker = Ticker(build_landing_sensor(JOB, quiet=timedelta(0)), LANDING)
    key = gateway_key(date(2024, 6, 5))
    landing["s3"].put_object(Bucket=BUCKET, Key=key, Body=spend_log("a"))
    first = ticker.tick().run_requests
    assert [r.partition_key for r in first] == ["2024-06-05"]
    landing["s3"].put_object(Bucket=BUCKET, Key=key, Body=spend_log("a"))  # same bytes, same ETag
    assert ticker.tick().run_requests == []
    landing["s3"].put_object(Bucket=BUCKET, Key=key, Body=spend_log("b"))  # rewritten
    rewrite = ticker.tick().run_requests
    assert [r.partition_key for r in rewrite] == ["2024-06-05"]
    assert rewrite[0].run_key != first[0].run_key


def test_burst_of_files_over_two_days_is_one_run(landing: dict) -> None:
    ticker = Ticker(build_landing_sensor(JOB, quiet=timedelta(0)), LANDING)
    for day, part in [(date(2024, 6, 5), 0), (date(2024, 6, 5), 1), (date(2024, 6, 6), 0)]:
        landing["s3"].put_object(Bucket=BUCKET, Key=gateway_key(day, part), Body=spend_log(f"{day}{part}"))
    landing["s3"].put_object(Bucket=BUCKET, Key="landing/gpu_telemetry/dcgm/2024-06-06/host-a.prom", Body=b"")
    result = ticker.tick()
    assert partitions(result) == ["2024-06-05..2024-06-06"]
    assert result.run_requests[0].tags["inferledger/objects"] == "4"


def test_cur_manifest_requests_its_whole_billing_month(landing: dict) -> None:
    ticker = Ticker(build_landing_sensor(JOB, quiet=timedelta(0)), LANDING)
    root = "landing/aws_cur/team-cur"
    landing["s3"].put_object(Bucket=BUCKET, Key=f"{root}/data/BILLING_PERIOD=2024-02/team-cur-00001.snappy.parquet",
                             Body=b"PAR1")
    assert ticker.tick().run_requests == []  # data files wait for their manifest
    manifest = {"exportName": "team-cur", "executionId": "exec-2",
                "billingPeriod": {"start": "2024-02-01T00:00:00.000Z", "end": "2024-03-01T00:00:00.000Z"},
                "dataFiles": [f"s3://{BUCKET}/{root}/data/BILLING_PERIOD=2024-02/team-cur-00001.snappy.parquet"]}
    landing["s3"].put_object(Bucket=BUCKET, Key=f"{root}/metadata/BILLING_PERIOD=2024-02/team-cur-Manifest.json",
                             Body=json.dumps(manifest).encode())
    assert partitions(ticker.tick()) == ["2024-02-01..2024-02-29"]  # a leap year: 29 days


def test_listing_fallback_uses_a_last_modified_cursor(landing: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERLEDGER_LANDING_QUEUE_URL")
    landing["s3"].put_object(Bucket=BUCKET, Key=gateway_key(date(2024, 6, 3)), Body=spend_log("old"))
    ticker = Ticker(build_landing_sensor(JOB, quiet=timedelta(0)), LANDING)
    baseline = ticker.tick()  # what was there before the sensor started is history
    assert baseline.run_requests == [] and json.loads(ticker.cursor)["since"]
    landing["s3"].put_object(Bucket=BUCKET, Key=gateway_key(date(2024, 6, 7)), Body=spend_log("new"))
    assert partitions(ticker.tick()) == ["2024-06-07"]
    assert ticker.tick().run_requests == []


def test_unreadable_queue_falls_back_to_listing(landing: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    ticker = Ticker(build_landing_sensor(JOB, quiet=timedelta(0)), LANDING)
    landing["s3"].put_object(Bucket=BUCKET, Key=gateway_key(date(2024, 6, 5)), Body=spend_log("a"))
    assert partitions(ticker.tick()) == ["2024-06-05"]
    monkeypatch.setenv("INFERLEDGER_LANDING_QUEUE_URL", landing["queue_url"] + "-deleted")
    landing["s3"].put_object(Bucket=BUCKET, Key=gateway_key(date(2024, 6, 6)), Body=spend_log("b"))
    # The listing starts where the events left off: only the new object, not history.
    assert partitions(ticker.tick()) == ["2024-06-06"]


def test_local_landing_folder_is_listed_too(tmp_path: pytest.TempPathFactory) -> None:
    ticker = Ticker(build_landing_sensor(JOB, quiet=timedelta(0)), str(tmp_path))
    assert ticker.tick().run_requests == []
    path = tmp_path / "gpu_telemetry" / "dcgm" / "2024-06-04" / "host-b.csv"
    path.parent.mkdir(parents=True)
    path.write_text("timestamp,metric\n")
    assert partitions(ticker.tick()) == ["2024-06-04"]


def test_a_burst_waits_until_quiet_or_max_wait() -> None:
    t0 = datetime(2024, 6, 5, 12, tzinfo=UTC)

    def change(key: str, at: datetime) -> LandingChange:
        return LandingChange(f"gateway_logs/litellm/2024/06/05/{key}.jsonl.gz", f"etag-{key}", at)

    def days_of(c: LandingChange) -> list[date]:
        return [date(2024, 6, 5)]

    cursor = LandingCursor()
    kw = {"quiet": timedelta(seconds=60), "max_wait": timedelta(minutes=10)}
    assert plan_tick(cursor, [change("a", t0)], days_of, t0, **kw).waiting == 1
    assert plan_tick(cursor, [change("b", t0)], days_of, t0 + timedelta(seconds=30), **kw).waiting == 2
    released = plan_tick(cursor, [], days_of, t0 + timedelta(seconds=95), **kw)
    assert [r.partition_key for r in released.requests] == ["2024-06-05"]
    assert released.requests[0].tags["inferledger/objects"] == "2"
    # A steady trickle (a file every 30 s) is released by max_wait, not held forever.
    trickle = LandingCursor()
    out = [plan_tick(trickle, [change(f"t{i}", t0)], days_of, t0 + timedelta(seconds=30 * i), **kw).requests
           for i in range(22)]
    assert [i for i, r in enumerate(out) if r] == [20]
    # SQS delivers at least once: the same key@etag again is not news.
    assert plan_tick(cursor, [change("a", t0)], days_of, t0 + timedelta(hours=1), **kw).requests == []


def test_days_affected_by_each_kind_of_object(tmp_path: pytest.TempPathFactory) -> None:
    store = LocalStore(tmp_path)
    at = datetime(2024, 7, 9, 8, tzinfo=UTC)

    def days(key: str) -> list[date]:
        return days_affected(store, LandingChange(key, "e", at))

    assert days("gateway_logs/litellm/2024/06/05/spend_logs-0.jsonl.gz") == [date(2024, 6, 5)]
    assert days("gateway_logs/litellm/undated.jsonl") == [date(2024, 7, 9)]
    assert days("gpu_telemetry/dcgm/date=2024-06-30/a.csv") == [date(2024, 6, 30)]
    assert days("inventory/fleet.csv") == [date(2024, 7, 9)]
    focus = days("focus/azure/2024-05/focus.csv.gz")
    assert (focus[0], focus[-1], len(focus)) == (date(2024, 5, 1), date(2024, 5, 31), 31)
    assert days("aws_cur/team-cur/data/BILLING_PERIOD=2024-05/part-0.parquet") == []
    assert days("prices/overrides.csv") == []
    assert day_ranges([date(2024, 6, 1), date(2024, 6, 2), date(2024, 6, 4)]) == [
        (date(2024, 6, 1), date(2024, 6, 2)), (date(2024, 6, 4), date(2024, 6, 4))]


def test_s3_events_are_unquoted_and_sns_envelopes_opened() -> None:
    record = {"eventName": "ObjectCreated:Put", "eventTime": "2024-06-05T10:00:01.000Z",
              "s3": {"bucket": {"name": BUCKET},
                     "object": {"key": "landing/gateway_logs/litellm/2024/06/05/spend+logs%3D1.jsonl.gz",
                                "eTag": "abc"}}}
    bodies = [
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}),
        json.dumps({"Type": "Notification", "Message": json.dumps({"Records": [record]})}),
        json.dumps({"Records": [{**record, "s3": {**record["s3"], "bucket": {"name": "other"}}}]}),
    ]
    (change,) = changes_from_s3_events(bodies, BUCKET, "landing")
    assert change.key == "gateway_logs/litellm/2024/06/05/spend logs=1.jsonl.gz"
    assert change.token == "gateway_logs/litellm/2024/06/05/spend logs=1.jsonl.gz@abc"
