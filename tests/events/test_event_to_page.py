"""The issue's acceptance path, end to end on loopback servers.

A LiteLLM spend log (as the demo gateway writes it) is dropped into an S3 bucket on moto;
the bucket notifies SQS; the landing sensor requests a run of exactly that day; the run
ingests it, a stand-in anomaly detector writes `cost_anomalies`, and `alert_delivery`
pages the local recorder standing in for PagerDuty: one trigger on the spike day, one
resolve the day after, nothing on a second tick.

The stand-in detector keeps this test fast and independent of the real one
(assets/anomaly_detection.py): a day whose gateway spend is over twice the median of the
days before it opens an incident; a normal day closes it.
"""


from collections.abc import Iterator
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.ingestion import fleet_inventory, gateway_requests
from assets.partitions import DAILY, days_in_window
from assets.resources import StorageResource
from assets.warehouse import WAREHOUSE_POOL
from pipelines.alerts.asset import alert_delivery
from pipelines.demo.gateway import write_gateway_logs
from pipelines.demo.world import build_world
from pipelines.sensors import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    build_alert_sensor,
    build_landing_sensor,
)
from tests.support.http_recorder import http_recorder
from tests.support.moto_server import REGION, moto_server

BUCKET = "acme-landing"
ROUTING_KEY = "E2EROUTINGKEY00000000000000000042"
START = date(2024, 6, 3)  # a Monday: the five days used are weekdays, so traffic is comparable
SPIKE_DAY = date(2024, 6, 6)  # the demo world's one-day spike: cust_globex sends 8x its traffic


@dg.asset(partitions_def=DAILY, deps=[gateway_requests], pool=WAREHOUSE_POOL,
          backfill_policy=dg.BackfillPolicy.single_run())
def cost_anomalies(context: dg.AssetExecutionContext, storage: StorageResource) -> None:
    """Stand-in detector: total gateway spend per day against the median of the days before."""
    spend = (
        pl.scan_parquet(f"{storage.lake}/gateway_requests/*/*.parquet", hive_partitioning=True)
        .group_by(day=pl.col("ts_start").dt.date())
        .agg(pl.col("gateway_reported_cost").sum().cast(pl.Float64).alias("spend"))
        .collect()
    )
    with closing(duckdb.connect(storage.warehouse)) as con:
        con.execute("""create table if not exists cost_anomalies (
            period_start timestamptz, usage_date date, grain varchar, metric varchar, dimension varchar,
            key varchar, actual decimal(38,12), expected decimal(38,12), lower decimal(38,12),
            upper decimal(38,12), score double, impact_usd decimal(38,12), impact_pct double,
            rule varchar, direction varchar, severity varchar, root_causes varchar,
            explained_by varchar, dedup_key varchar, status varchar)""")
        for day in days_in_window(*context.partition_time_window):
            history = spend.filter(pl.col("day") < day).get_column("spend")
            actual = spend.filter(pl.col("day") == day).get_column("spend").sum()
            expected = history.median() if history.len() else None
            open_key = con.execute(
                "select arg_max(dedup_key, period_start), arg_max(status, period_start) from cost_anomalies"
            ).fetchall()[0]
            if expected and actual > 2 * expected:
                status, key = "triggered", f"day:cost:total:all:{day.isoformat()}"
            elif open_key[1] in ("triggered", "ongoing"):
                status, key = "resolved", open_key[0]
            else:
                continue
            con.execute(
                "insert into cost_anomalies values (?::timestamptz, ?, 'day', 'cost', 'total', 'all',"
                " round(?, 2), round(?, 2), null, null, null, round(?, 2), ?, 'spike', 'up', ?, '[]', null, ?, ?)",
                [f"{day.isoformat()} 00:00:00+00", day, actual, expected, actual - expected,
                 float((actual - expected) / expected), "critical" if status == "triggered" else "info",
                 key, status],
            )


ASSETS = [fleet_inventory, gateway_requests, cost_anomalies, alert_delivery]
JOB = dg.define_asset_job("event_refresh", selection=ASSETS)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple]:
    with moto_server() as aws, http_recorder() as rec:
        yield aws, rec


@pytest.fixture
def world_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    local = tmp_path_factory.mktemp("gateway")
    write_gateway_logs(build_world(seed=11, start=START, days=9, requests_per_day=300), local)
    return local


def test_dropped_spike_file_pages_once_and_the_next_normal_day_resolves(
    servers: tuple, world_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws, rec = servers
    aws.reset()
    rec.clear()
    for name, value in {
        "AWS_ENDPOINT_URL": aws.endpoint, "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "INFERLEDGER_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "INFERLEDGER_PAGERDUTY_URL": rec.url("/v2/enqueue"),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("INFERLEDGER_S3_ENDPOINT_URL", "INFERLEDGER_SLACK_WEBHOOK_URL", "INFERLEDGER_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    s3, sqs = aws.client("s3"), aws.client("sqs")
    s3.create_bucket(Bucket=BUCKET)
    queue_url = sqs.create_queue(QueueName="landing-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    monkeypatch.setenv("INFERLEDGER_LANDING_QUEUE_URL", queue_url)

    storage = StorageResource(landing=f"s3://{BUCKET}/landing", lake=str(tmp_path / "lake"),
                              warehouse=str(tmp_path / "warehouse.duckdb"))
    instance = dg.DagsterInstance.ephemeral()
    landing_sensor = build_landing_sensor(JOB, quiet=timedelta(0))
    alert_sensor = build_alert_sensor()
    cursors: dict[str, str | None] = {"landing": None, "alerts": None}

    def tick(name: str, sensor: dg.SensorDefinition) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(cursor=cursors[name], instance=instance,
                                          resources={"storage": storage})
        result = sensor(context)
        cursors[name] = result.cursor
        return result.run_requests

    def drop(day: date) -> None:
        key = f"gateway_logs/litellm/{day:%Y/%m/%d}/spend_logs-0.jsonl.gz"
        s3.put_object(Bucket=BUCKET, Key=f"landing/{key}", Body=(world_files / key).read_bytes())

    def run(request: dg.RunRequest, as_of: date) -> None:
        """What the daemon does with a run request (evaluated as of 07:00 the next day)."""
        result = dg.materialize(
            ASSETS, instance=instance, resources={"storage": storage},
            partition_key=request.partition_key, tags=request.tags,
            run_config={"ops": {"alert_delivery": {"config": {"as_of": f"{as_of}T07:00:00+00:00"}}}},
        )
        assert result.success

    def pages() -> list[tuple[str, str]]:
        return [(r.json()["event_action"], r.json()["dedup_key"]) for r in rec.to("/v2/enqueue")]

    # Three ordinary days land at once: one run for the three, nothing to page.
    for i in range(3):
        drop(START + timedelta(days=i))
    (history,) = tick("landing", landing_sensor)
    assert (history.tags[RANGE_START_TAG], history.tags[RANGE_END_TAG]) == ("2024-06-03", "2024-06-05")
    run(history, date(2024, 6, 6))
    assert pages() == []

    # The spike day's file: a run of exactly that day, and exactly one page.
    drop(SPIKE_DAY)
    (spike_run,) = tick("landing", landing_sensor)
    assert spike_run.partition_key == "2024-06-06" and RANGE_START_TAG not in spike_run.tags
    run(spike_run, date(2024, 6, 7))
    assert pages() == [("trigger", "day:cost:total:all:2024-06-06")]
    trigger = rec.to("/v2/enqueue")[0].json()
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["routing_key"] == ROUTING_KEY
    details = trigger["payload"]["custom_details"]
    assert float(details["actual"]) > 2 * float(details["expected"]) > 0

    # Second ticks of both sensors: no new run, no new page.
    assert tick("landing", landing_sensor) == []
    assert tick("alerts", alert_sensor) == []
    assert pages() == [("trigger", "day:cost:total:all:2024-06-06")]

    # The next day is normal again: one run of that day, one resolve with the same key.
    drop(SPIKE_DAY + timedelta(days=1))
    (normal_run,) = tick("landing", landing_sensor)
    assert normal_run.partition_key == "2024-06-07"
    run(normal_run, date(2024, 6, 8))
    assert pages() == [("trigger", "day:cost:total:all:2024-06-06"),
                       ("resolve", "day:cost:total:all:2024-06-06")]
    assert tick("landing", landing_sensor) == [] and tick("alerts", alert_sensor) == []


def test_anomalies_built_outside_a_delivery_run_start_one(
    servers: tuple, world_files: Path, tmp_path: Path
) -> None:
    storage = StorageResource(landing=str(world_files), lake=str(tmp_path / "lake"),
                              warehouse=str(tmp_path / "warehouse.duckdb"))
    instance = dg.DagsterInstance.ephemeral()
    sensor = build_alert_sensor()
    first = sensor(dg.build_sensor_context(instance=instance))
    assert first.run_requests == []
    result = dg.materialize([fleet_inventory, gateway_requests, cost_anomalies], instance=instance,
                            resources={"storage": storage}, partition_key="2024-06-03")
    assert result.success
    requested = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    (request,) = requested.run_requests
    assert request.run_key.startswith("alerts:")
    again = sensor(dg.build_sensor_context(instance=instance, cursor=requested.cursor))
    assert again.run_requests == []
