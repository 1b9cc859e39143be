"""A restated CUR month on S3 (moto in server mode, real HTTP): after the rerun the
warehouse holds only the newest export's numbers; the billing sensor asks for the month."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.resources import StorageResource
from connectors.landing import LandingObject
from pipelines.config import Settings
from pipelines.definitions import daily_refresh
from pipelines.runner import run_range
from pipelines.sensors_billing import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    BillingArrival,
    affected_days,
    billing_month_in_path,
    billing_run_requests,
    build_billing_sensors,
)
from tests.support.moto_server import MotoServer, moto_server_in_env

BUCKET = "acme-billing"
PREFIX = "landing"
EXPORT = "team-cur"
PERIOD = "2026-10"
OCT_1, OCT_3 = date(2026, 10, 1), date(2026, 10, 3)

# (line type, start, end, instance type, unblended cost): two p5.48xlarge hours a day.
P5 = "p5.48xlarge"
HOURS = [
    (f"2026-10-0{d}T0{h}:00:00", f"2026-10-0{d}T0{h + 1}:00:00") for d in (1, 2, 3) for h in (0, 1)
]
V1 = [
    *[("Usage", s, e, P5, "98.32") for s, e in HOURS],
    ("Tax", "2026-10-01T00:00:00", "2026-11-01T00:00:00", None, "11.80"),
]
# AWS restates October: a late hour on the 3rd, a credit on the 2nd, the tax recomputed.
V2 = [
    *[("Usage", s, e, P5, "98.32") for s, e in HOURS],
    ("Usage", "2026-10-03T02:00:00", "2026-10-03T03:00:00", P5, "98.32"),
    ("Credit", "2026-10-02T00:00:00", "2026-10-02T01:00:00", None, "-10.00"),
    ("Tax", "2026-10-01T00:00:00", "2026-11-01T00:00:00", None, "12.30"),
]


def _cur_parquet(lines: list[tuple]) -> bytes:
    """A CUR 2.0 data file (Data Exports), costs as the doubles AWS writes."""
    n = len(lines)
    ts = [
        pl.col(c).str.to_datetime()
        for c in ("line_item_usage_start_date", "line_item_usage_end_date")
    ]
    frame = pl.DataFrame(
        {
            "identity_line_item_id": [f"line-{i}" for i in range(n)],
            "bill_billing_period_start_date": [datetime(2026, 10, 1)] * n,
            "bill_payer_account_id": ["111122223333"] * n,
            "line_item_usage_account_id": ["111122223333"] * n,
            "line_item_line_item_type": [t for t, *_ in lines],
            "line_item_usage_start_date": [s for _, s, *_ in lines],
            "line_item_usage_end_date": [e for _, _, e, *_ in lines],
            "line_item_product_code": ["AmazonEC2"] * n,
            "line_item_usage_type": [f"BoxUsage:{i}" if i else None for *_, i, _ in lines],
            "line_item_resource_id": ["i-0a1b2c3d4e5f" if i else None for *_, i, _ in lines],
            "product_instance_type": [i for *_, i, _ in lines],
            "product_region_code": ["us-east-1"] * n,
            "line_item_unblended_cost": [float(c) for *_, c in lines],
            "line_item_currency_code": ["USD"] * n,
        }
    ).with_columns(ts)
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _deliver(s3, execution: str, lines: list[tuple]) -> None:
    """Data first, then the manifest, in a folder per execution ("new export versions")."""
    root = f"{PREFIX}/aws_cur/{EXPORT}"
    data_key = f"{root}/data/BILLING_PERIOD={PERIOD}/{execution}/{EXPORT}-00001.snappy.parquet"
    s3.put_object(Bucket=BUCKET, Key=data_key, Body=_cur_parquet(lines))
    manifest = {
        "exportName": EXPORT,
        "executionId": execution,
        "billingPeriod": {"start": "2026-10-01T00:00:00.000Z", "end": "2026-11-01T00:00:00.000Z"},
        "dataFiles": [f"s3://{BUCKET}/{data_key}"],
    }
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{root}/metadata/BILLING_PERIOD={PERIOD}/{execution}/{EXPORT}-Manifest.json",
        Body=json.dumps(manifest).encode(),
    )


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with moto_server_in_env() as server:
        yield server


def _marts(settings: Settings) -> dict[str, list[tuple]]:
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        return {
            "lines": con.execute(
                "select usage_date, count(*), sum(billed_cost), sum(effective_cost)"
                " from fct_billing_line_items group by 1 order by 1"
            ).fetchall(),
            "versions": con.execute(
                "select distinct export_version from fct_billing_line_items"
            ).fetchall(),
            "reconciliation": con.execute(
                "select usage_date, billed_total, billed_in_scope, out_of_scope, unattributed,"
                " passed from billing_reconciliation_daily where provider = 'AWS' order by 1"
            ).fetchall(),
        }


def test_restated_cur_month_on_s3_leaves_only_the_new_exports_numbers(aws, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    _deliver(s3, "exec-0001", V1)
    settings = Settings(
        landing=f"s3://{BUCKET}/{PREFIX}",
        lake=str(tmp_path / "lake"),
        warehouse=str(tmp_path / "warehouse.duckdb"),
    )
    run_range(settings, OCT_1, OCT_3)
    d1, d2, d3 = OCT_1, date(2026, 10, 2), OCT_3
    # 2 x 98.32 a day, all in scope (GPU hours, no fleet: unattributed); tax on the 1st.
    assert _marts(settings) == {
        "lines": [
            (d1, 3, Decimal("208.44"), Decimal("208.44")),
            (d2, 2, Decimal("196.64"), Decimal("196.64")),
            (d3, 2, Decimal("196.64"), Decimal("196.64")),
        ],  # 601.72 in all
        "versions": [("exec-0001",)],
        "reconciliation": [
            (d1, Decimal("208.44"), Decimal("196.64"), Decimal("11.80"), Decimal("196.64"), True),
            (d2, Decimal("196.64"), Decimal("196.64"), Decimal(0), Decimal("196.64"), True),
            (d3, Decimal("196.64"), Decimal("196.64"), Decimal(0), Decimal("196.64"), True),
        ],
    }

    storage = StorageResource(
        landing=settings.landing, lake=settings.lake, warehouse=settings.warehouse
    )
    (sensor, _) = build_billing_sensors(daily_refresh)
    baseline = sensor(dg.build_sensor_context(resources={"storage": storage}))
    _deliver(s3, "exec-0002", V2)
    tick = sensor(dg.build_sensor_context(cursor=baseline.cursor, resources={"storage": storage}))
    (request,) = tick.run_requests  # the data file and its manifest: one run for the month
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
        "2026-10-01",
        "2026-10-31",
    )

    run_range(settings, OCT_1, OCT_3)  # the days the restated month has rows on
    assert _marts(settings) == {
        "lines": [
            (d1, 3, Decimal("208.94"), Decimal("208.94")),  # 196.64 + 12.30 tax
            (d2, 3, Decimal("186.64"), Decimal("186.64")),  # 196.64 - 10.00 credit
            (d3, 3, Decimal("294.96"), Decimal("294.96")),  # 3 x 98.32
        ],  # 690.54 in all
        "versions": [("exec-0002",)],
        "reconciliation": [
            (d1, Decimal("208.94"), Decimal("196.64"), Decimal("12.30"), Decimal("196.64"), True),
            (d2, Decimal("186.64"), Decimal("196.64"), Decimal("-10.00"), Decimal("196.64"), True),
            (d3, Decimal("294.96"), Decimal("294.96"), Decimal(0), Decimal("294.96"), True),
        ],
    }


# --- the mapping from CUR objects to days: plain functions ------------------------------------


def _arrival(key: str, month: date | None = None) -> BillingArrival:
    return BillingArrival(key, "etag-1", datetime(2026, 10, 15, 4, tzinfo=UTC), month)


def test_cur_manifest_reruns_its_billing_month_up_to_today():
    key = f"aws_cur/{EXPORT}/metadata/BILLING_PERIOD=2026-10/exec-7/{EXPORT}-Manifest.json"
    assert billing_month_in_path(key) == date(2026, 10, 1)
    days = affected_days(_arrival(key, date(2026, 10, 1)), date(2026, 10, 15))
    assert days == [date(2026, 10, d) for d in range(1, 16)]  # not the rest of October
    closed = affected_days(_arrival(key, date(2026, 9, 1)), date(2026, 10, 15))
    assert (closed[0], closed[-1], len(closed)) == (date(2026, 9, 1), date(2026, 9, 30), 30)
    legacy = "aws_cur/acme/20260901-20261001/acme-Manifest.json"
    assert billing_month_in_path(legacy) == date(2026, 9, 1)


def test_one_run_per_contiguous_range_with_a_key_from_the_objects():
    by_token = {
        "aws_cur/a/metadata/x-Manifest.json@e1": [date(2026, 9, d) for d in range(1, 31)],
        "gcp_billing/2026/10/05/x.jsonl@e2": [date(2026, 10, 1), date(2026, 10, 3)],
    }
    requests = billing_run_requests(by_token, trigger="test")
    ranges = [
        (r.tags.get(RANGE_START_TAG, r.partition_key), r.tags.get(RANGE_END_TAG, r.partition_key))
        for r in requests
    ]
    # 30 September and 1 October touch: one range across both objects' days.
    assert ranges == [("2026-09-01", "2026-10-01"), ("2026-10-03", "2026-10-03")]
    assert requests[1].partition_key == "2026-10-03"
    assert billing_run_requests(by_token, trigger="again")[1].run_key == requests[1].run_key
    moved = billing_run_requests(
        {
            "aws_cur/a/metadata/x-Manifest.json@e1": by_token[
                "aws_cur/a/metadata/x-Manifest.json@e1"
            ],
            "gcp_billing/2026/10/05/x.jsonl@e9": [date(2026, 10, 3)],
        },
        trigger="t",
    )
    assert moved[1].run_key != requests[1].run_key  # a new ETag is a new run


def test_cur_data_file_without_a_month_in_its_path_is_not_a_billing_change():
    from pipelines.sensors_billing import read_arrival

    obj = LandingObject("aws_cur/README.txt", 1, "e", datetime(2026, 10, 1, tzinfo=UTC))
    assert read_arrival(None, obj) is None  # type: ignore[arg-type] - nothing is read
