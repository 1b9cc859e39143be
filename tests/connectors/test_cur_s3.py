"""CUR 2.0 exports read through S3Store from moto in server mode (real HTTP on loopback)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import polars as pl
import pytest

from connectors.aws_cur import find_exports, read_export
from connectors.landing import S3Store
from connectors.result import SourceFormatError
from tests.support.moto_server import MotoServer, moto_server

BUCKET = "acme-billing"
STORE_PREFIX = "landing"  # the store is s3://acme-billing/landing
EXPORT = "team-cur"
PERIOD = "2026-03"
# Line type, usage type, unblended cost (the export writes doubles).
V1_LINES = [
    ("Usage", "BoxUsage:p5.48xlarge", 98.32),
    ("Usage", "BoxUsage:p5.48xlarge", 98.32),
    ("Tax", None, 11.80),
]
# AWS restates the month: a late S3 line, a credit and the recomputed tax.
V2_LINES = [
    ("Usage", "BoxUsage:p5.48xlarge", 98.32),
    ("Usage", "BoxUsage:p5.48xlarge", 98.32),
    ("Usage", "TimedStorage-ByteHrs", 0.37),
    ("Credit", None, -10.00),
    ("Tax", None, 11.82),
]


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def s3(aws: MotoServer):
    aws.reset()
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def _parquet(lines: list[tuple[str, str | None, float]]) -> bytes:
    n = len(lines)
    frame = pl.DataFrame(
        {
            "identity_line_item_id": [f"line-{i}" for i in range(n)],
            "identity_time_interval": ["2026-03-01T00:00:00Z/2026-03-01T01:00:00Z"] * n,
            "bill_billing_period_start_date": [datetime(2026, 3, 1)] * n,
            "bill_payer_account_id": ["111122223333"] * n,
            "line_item_line_item_type": [t for t, _, _ in lines],
            "line_item_usage_type": [u for _, u, _ in lines],
            "line_item_usage_start_date": [datetime(2026, 3, 1, 0)] * n,
            "line_item_usage_end_date": [datetime(2026, 3, 1, 1)] * n,
            "line_item_product_code": ["AmazonEC2"] * n,
            "line_item_unblended_cost": [c for _, _, c in lines],
            "line_item_currency_code": ["USD"] * n,
        }
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _deliver(
    s3, execution: str, lines: list[tuple[str, str | None, float]], *, versioned: bool
) -> str:
    """Upload one delivery the way Data Exports writes it: data first, then the manifest.

    `versioned` is the "create new export versions" setting (one folder per execution);
    otherwise the export overwrites the same keys. The manifest names the data file by
    the S3 URI AWS wrote it to, with AWS's bucket and prefix.
    """
    folder = f"{execution}/" if versioned else ""
    export_root = f"{STORE_PREFIX}/aws_cur/{EXPORT}"
    data_key = f"{export_root}/data/BILLING_PERIOD={PERIOD}/{folder}{EXPORT}-00001.snappy.parquet"
    s3.put_object(Bucket=BUCKET, Key=data_key, Body=_parquet(lines))
    manifest = {
        "exportArn": f"arn:aws:bcm-data-exports:us-east-1:111122223333:export/{EXPORT}-abc",
        "exportName": EXPORT,
        "executionId": execution,
        "billingPeriod": {"start": "2026-03-01T00:00:00.000Z", "end": "2026-04-01T00:00:00.000Z"},
        "dataFiles": [f"s3://{BUCKET}/{data_key}"],
    }
    manifest_key = f"{export_root}/metadata/BILLING_PERIOD={PERIOD}/{folder}{EXPORT}-Manifest.json"
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=json.dumps(manifest).encode())
    return data_key.removeprefix(f"{STORE_PREFIX}/")


def _next_second() -> None:
    """S3's LastModified has one-second resolution: a later delivery starts a new second."""
    time.sleep(1.0 - (time.time() % 1.0) + 0.01)


def _totals(rows: pl.DataFrame) -> dict[str, Decimal]:
    by = rows.group_by("charge_category").agg(pl.col("billed_cost").sum())
    return {
        "total": rows["billed_cost"].sum(),
        "effective": rows["effective_cost"].sum(),
        **dict(zip(by["charge_category"], by["billed_cost"], strict=True)),
    }


@pytest.mark.parametrize("versioned", [True, False], ids=["new-version-folders", "overwrite"])
def test_restated_month_on_s3_replaces_the_previous_export(s3, versioned):
    store = S3Store(f"s3://{BUCKET}/{STORE_PREFIX}", client=s3)
    v1_key = _deliver(s3, "exec-0001", V1_LINES, versioned=versioned)

    (export,) = find_exports(store)
    assert (export.name, export.billing_period, export.version) == (EXPORT, PERIOD, "exec-0001")
    assert export.data_keys == (v1_key,)  # the s3:// URI resolved against the store's prefix
    v1 = read_export(store, export)
    assert (v1.rows_read, v1.rows_written, v1.rows_quarantined) == (3, 3, 0)
    # 98.32 + 98.32 + 11.80 tax
    assert _totals(v1.rows) == {
        "total": Decimal("208.44"),
        "effective": Decimal("208.44"),
        "Usage": Decimal("196.64"),
        "Tax": Decimal("11.80"),
    }

    if versioned:  # two manifests side by side: the later LastModified must win
        _next_second()
    _deliver(s3, "exec-0002", V2_LINES, versioned=versioned)
    (export,) = find_exports(store)  # only the newest delivery of the month
    assert export.version == "exec-0002"
    v2 = read_export(store, export)
    assert v2.rows_written == 5
    assert v2.rows["export_version"].unique().to_list() == ["exec-0002"]
    # 98.32 + 98.32 + 0.37 - 10.00 credit + 11.82 tax
    assert _totals(v2.rows) == {
        "total": Decimal("198.83"),
        "effective": Decimal("198.83"),
        "Usage": Decimal("197.01"),
        "Credit": Decimal("-10.00"),
        "Tax": Decimal("11.82"),
    }
    assert v2.files == [export.data_keys[0]]


def test_manifest_uri_from_another_bucket_resolves_against_the_store(s3):
    """A replicated copy: the manifest still names AWS's original bucket and prefix."""
    data_key = f"aws_cur/{EXPORT}/data/BILLING_PERIOD={PERIOD}/{EXPORT}-00001.snappy.parquet"
    s3.put_object(Bucket=BUCKET, Key=data_key, Body=_parquet(V1_LINES))
    manifest = {
        "exportName": EXPORT,
        "executionId": "exec-r",
        "billingPeriod": {"start": "2026-03-01T00:00:00.000Z"},
        "dataFiles": [f"s3://payer-cur-bucket/exports/cur/{data_key.removeprefix('aws_cur/')}"],
    }
    s3.put_object(
        Bucket=BUCKET,
        Key=f"aws_cur/{EXPORT}/metadata/BILLING_PERIOD={PERIOD}/{EXPORT}-Manifest.json",
        Body=json.dumps(manifest).encode(),
    )
    # A sibling folder whose name starts like the CUR prefix is not part of it.
    s3.put_object(Bucket=BUCKET, Key="aws_cur_archive/x-Manifest.json", Body=b"not json")
    store = S3Store(f"s3://{BUCKET}", client=s3)
    (export,) = find_exports(store)
    assert export.data_keys == (data_key,)
    assert read_export(store, export).rows["billed_cost"].sum() == Decimal("208.44")


def test_manifest_listing_a_file_not_yet_uploaded_fails_loudly(s3):
    store = S3Store(f"s3://{BUCKET}/{STORE_PREFIX}", client=s3)
    data_key = _deliver(s3, "exec-0001", V1_LINES, versioned=True)
    s3.delete_object(Bucket=BUCKET, Key=f"{STORE_PREFIX}/{data_key}")
    (export,) = find_exports(store)
    with pytest.raises(SourceFormatError, match="not in the landing store"):
        read_export(store, export)
