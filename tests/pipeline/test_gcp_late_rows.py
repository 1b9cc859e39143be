"""Late GCP billing rows for an earlier day: the sensor requests that day, and its rerun
changes that day's marts. From files under gcp_billing/ and from the BigQuery export
(the real google-cloud-bigquery client against the fake REST server on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from assets.resources import StorageResource
from connectors.gcp_billing import ChangedMonth
from connectors.landing import LandingObject, LocalStore
from connectors.sources import GcpBillingTable, bigquery_cursor, billing_day
from pipelines.config import Settings
from pipelines.definitions import daily_refresh
from pipelines.runner import run_range
from pipelines.sensors_billing import (
    BillingArrival,
    ListingCursor,
    affected_days,
    bigquery_days_by_token,
    billing_run_requests,
    build_billing_sensors,
    new_billing_objects,
    read_arrival,
)
from tests.support.fake_gcp import FakeGcp, fake_gcp

TABLE = "acme-billing.billing_export.gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9"
TODAY = date(2026, 11, 28)
OCT_1, OCT_2 = date(2026, 10, 1), date(2026, 10, 2)
COMPUTE = {"id": "6F81-5844-456A", "description": "Compute Engine"}
H100 = {"id": "F7A3-5C2B-9E1D", "description": "Nvidia H100 80GB GPU running in Americas"}
STORAGE = {"id": "95FF-2EF5-5EA1", "description": "Cloud Storage"}
CUD = "projects/acme-ml/regions/us-central1/commitments/gpu-h100-1y"


def _row(start: str, export: str, cost: float, cud: float | None = None, **over) -> dict:
    """One hour of an a3-highgpu-8g (8 x H100) as the export writes it; `cud` is the
    committed use discount credit (negative)."""
    credits = (
        []
        if cud is None
        else [
            {
                "name": "Committed use discount: GPU",
                "amount": cud,
                "full_name": None,
                "id": CUD,
                "type": "COMMITTED_USAGE_DISCOUNT",
            }
        ]
    )
    day, hour = start[:10], int(start[11:13])
    row = {
        "billing_account_id": "01A2B3-C4D5E6-F7A8B9",
        "service": COMPUTE,
        "sku": H100,
        "usage_start_time": start,
        "usage_end_time": f"{day}T{hour + 1:02d}:00:00Z",
        "project": {"id": "acme-ml", "name": "Acme ML"},
        "labels": [{"key": "team", "value": "ml"}],
        "system_labels": [{"key": "compute.googleapis.com/machine_spec", "value": "a3-highgpu-8g"}],
        "location": {
            "location": "us-central1",
            "country": "US",
            "region": "us-central1",
            "zone": "us-central1-a",
        },
        "resource": {"name": "vllm-a3-0", "global_name": "//compute/vllm-a3-0"},
        "export_time": export,
        "cost": cost,
        "currency": "USD",
        "usage": {
            "amount": 28800.0,
            "unit": "seconds",
            "amount_in_pricing_units": 8.0,
            "pricing_unit": "hour",
        },
        "credits": credits,
        "invoice": {"month": "202610"},
        "cost_type": "regular",
    }
    row.update(over)
    return row


# October as exported by 3 October: an H100 hour on each of the 1st and 2nd (88.00 list,
# 26.40 committed use credit: effective 61.60), and a storage line on the 1st.
OCT_1_ROWS = [
    _row("2026-10-01T00:00:00Z", "2026-10-02T06:00:00Z", 88.0, -26.4),
    _row(
        "2026-10-01T00:00:00Z",
        "2026-10-02T06:00:00Z",
        0.031,
        service=STORAGE,
        sku={"id": "E5F0-6A5D-7BAD", "description": "Standard Storage US Regional"},
        system_labels=[],
        usage=None,
    ),
]
OCT_2_ROWS = [_row("2026-10-02T00:00:00Z", "2026-10-03T06:00:00Z", 88.0, -26.4)]
# Exported on 5 October: an hour of 1 October that Google had not billed yet.
LATE_ROW = _row("2026-10-01T05:00:00Z", "2026-10-05T06:00:00Z", 11.0, -3.3)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _write(landing: Path, key: str, rows: list[dict]) -> None:
    path = landing / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_jsonl(rows))


def _day_totals(batch_rows: pl.DataFrame) -> tuple[Decimal, Decimal]:
    return batch_rows["billed_cost"].sum(), batch_rows["effective_cost"].sum()


# --- days affected: plain functions ----------------------------------------------------------


def test_a_gcp_file_affects_the_days_its_rows_are_charged_on(tmp_path):
    _write(tmp_path, "gcp_billing/2026/10/05/export.jsonl", [LATE_ROW])
    (obj,) = LocalStore(tmp_path).list("gcp_billing")
    arrival = read_arrival(LocalStore(tmp_path), obj)
    assert arrival.row_days == (OCT_1,)
    assert affected_days(arrival, TODAY) == [OCT_1]
    # A rewritten file also reruns the days its previous version filled in the lake.
    assert affected_days(arrival, TODAY, previous=[OCT_2]) == [OCT_1, OCT_2]
    # A file that cannot be read reruns its month, where the run reports the reader's error.
    unreadable = BillingArrival(
        "gcp_billing/2026/10/x.jsonl",
        "e",
        datetime(2026, 10, 9, tzinfo=UTC),
        billing_month=date(2026, 10, 1),
    )
    assert affected_days(unreadable, date(2026, 10, 9)) == [date(2026, 10, d) for d in range(1, 10)]


def test_bigquery_changes_request_each_changed_months_usage_days():
    changed = [
        ChangedMonth("202610", (OCT_1, date(2026, 10, 4)), datetime(2026, 10, 5, 6, tzinfo=UTC)),
        ChangedMonth(
            "202611",
            (date(2026, 11, 28), date(2026, 11, 29)),
            datetime(2026, 11, 29, 1, tzinfo=UTC),
        ),
    ]
    by_token = bigquery_days_by_token(TABLE, changed, TODAY)
    assert by_token == {
        f"{TABLE}#202610@2026-10-05T06:00:00+00:00": [OCT_1, date(2026, 10, 4)],
        f"{TABLE}#202611@2026-11-29T01:00:00+00:00": [date(2026, 11, 28)],  # not tomorrow
    }
    requests = billing_run_requests(by_token, trigger="t")
    assert [r.partition_key for r in requests] == ["2026-10-01", "2026-10-04", "2026-11-28"]
    # The same changes seen again ask for the same runs (Dagster starts a run key once).
    assert [r.run_key for r in billing_run_requests(by_token, trigger="t")] == [
        r.run_key for r in requests
    ]


# --- BigQuery: pulled months replace their stored copy ---------------------------------------


def _bq_schema() -> list[dict]:
    def f(name: str, kind: str = "STRING", mode: str = "NULLABLE", fields=None) -> dict:
        return {"name": name, "type": kind, "mode": mode, **({"fields": fields} if fields else {})}

    kv = [f("key"), f("value")]
    return [
        f("billing_account_id"),
        f("service", "RECORD", fields=[f("id"), f("description")]),
        f("sku", "RECORD", fields=[f("id"), f("description")]),
        f("usage_start_time", "TIMESTAMP"),
        f("usage_end_time", "TIMESTAMP"),
        f("project", "RECORD", fields=[f("id"), f("name")]),
        f("labels", "RECORD", "REPEATED", kv),
        f("system_labels", "RECORD", "REPEATED", kv),
        f("location", "RECORD", fields=[f("location"), f("country"), f("region"), f("zone")]),
        f("resource", "RECORD", fields=[f("name"), f("global_name")]),
        f("export_time", "TIMESTAMP"),
        f("cost", "FLOAT"),
        f("currency"),
        f(
            "usage",
            "RECORD",
            fields=[
                f("amount", "FLOAT"),
                f("unit"),
                f("amount_in_pricing_units", "FLOAT"),
                f("pricing_unit"),
            ],
        ),
        f(
            "credits",
            "RECORD",
            "REPEATED",
            [f("name"), f("amount", "FLOAT"), f("full_name"), f("id"), f("type")],
        ),
        f("invoice", "RECORD", fields=[f("month")]),
        f("cost_type"),
    ]


@pytest.fixture
def gcp() -> Iterator[FakeGcp]:
    with fake_gcp() as fake:
        yield fake


@pytest.fixture
def export_table(gcp: FakeGcp) -> GcpBillingTable:
    def client() -> bigquery.Client:
        return bigquery.Client(
            project="acme-billing",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": gcp.endpoint},
        )

    return GcpBillingTable(table=TABLE, client=client)


def test_bigquery_late_row_replaces_its_month_and_reruns_its_day(tmp_path, gcp, export_table):
    landing, lake = LocalStore(tmp_path / "landing"), tmp_path / "lake"
    gcp.add_table(TABLE, _bq_schema(), OCT_1_ROWS + OCT_2_ROWS)
    day1 = billing_day(landing, OCT_1, lake=lake, bigquery=export_table)
    assert _day_totals(day1.rows) == (Decimal("88.031"), Decimal("61.631"))
    assert bigquery_cursor(lake, TABLE) == datetime(2026, 10, 3, 6, tzinfo=UTC)
    assert [o.key for o in day1.objects] == [f"bigquery:{TABLE}#invoice_month=202610"]
    # The next day's run finds nothing new: no month is pulled again.
    queries = len(gcp.queries)
    day2 = billing_day(landing, OCT_2, lake=lake, bigquery=export_table)
    assert _day_totals(day2.rows) == (Decimal(88), Decimal("61.6"))
    assert len(gcp.queries) == queries + 1  # changed_invoice_months only

    # The sensor starts from the lake's cursor and asks for 1 October when the late row lands.
    (_, bq_sensor) = build_billing_sensors(daily_refresh, bigquery=lambda: export_table)
    storage = StorageResource(landing=str(tmp_path / "landing"), lake=str(lake), warehouse="w")
    context = dg.build_sensor_context(resources={"storage": storage})
    assert bq_sensor(context).skip_reason.skip_message == "no rows exported since the cursor"
    gcp.add_table(TABLE, _bq_schema(), [LATE_ROW])
    result = bq_sensor(dg.build_sensor_context(resources={"storage": storage}))
    assert [r.partition_key for r in result.run_requests] == ["2026-10-01"]
    assert result.cursor == "2026-10-05T06:00:00+00:00"

    # The rerun of 1 October pulls October whole: the late hour is added, nothing twice.
    day1 = billing_day(landing, OCT_1, lake=lake, bigquery=export_table)
    assert _day_totals(day1.rows) == (Decimal("99.031"), Decimal("69.331"))  # + 11.00, + 7.70
    assert day1.rows["export_version"].unique().to_list() == ["202610@2026-10-05T06:00:00.000000Z"]
    day1_again = billing_day(landing, OCT_1, lake=lake, bigquery=export_table)
    assert _day_totals(day1_again.rows) == (Decimal("99.031"), Decimal("69.331"))
    assert bigquery_cursor(lake, TABLE) == datetime(2026, 10, 5, 6, tzinfo=UTC)


def test_an_export_row_read_from_bigquery_and_a_file_counts_once(tmp_path, gcp, export_table):
    _write(tmp_path / "landing", "gcp_billing/2026/10/02/export.jsonl", OCT_1_ROWS)
    gcp.add_table(TABLE, _bq_schema(), OCT_1_ROWS)
    batch = billing_day(
        LocalStore(tmp_path / "landing"), OCT_1, lake=tmp_path / "lake", bigquery=export_table
    )
    assert batch.rows.height == 2
    assert set(batch.rows["source_file"]) == {f"bigquery:{TABLE}"}


def test_a_month_extracted_again_into_a_new_file_counts_once(tmp_path):
    landing = tmp_path / "landing"
    _write(landing, "gcp_billing/2026/10/02/export.jsonl", OCT_1_ROWS)
    _write(landing, "gcp_billing/2026/10/05/full-month.jsonl", [*OCT_1_ROWS, *OCT_2_ROWS, LATE_ROW])
    batch = billing_day(LocalStore(landing), OCT_1)
    assert _day_totals(batch.rows) == (Decimal("99.031"), Decimal("69.331"))


def test_bigquery_configured_without_a_lake_fails_loudly(tmp_path, export_table):
    with pytest.raises(ValueError, match="pass lake="):
        billing_day(LocalStore(tmp_path), OCT_1, bigquery=export_table)


# --- end to end: files, the landing sensor, the rerun, the marts ------------------------------


def _marts(settings: Settings, day: date) -> dict[str, tuple]:
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        lines = con.execute(
            "select count(*), sum(billed_cost), sum(effective_cost) from fct_billing_line_items"
            " where usage_date = ?",
            [day],
        ).fetchall()[0]
        recon = con.execute(
            "select billed_total, billed_in_scope, out_of_scope, unattributed, passed"
            " from billing_reconciliation_daily where usage_date = ? and provider = 'Google Cloud'"
            " and billing_currency = 'USD'",
            [day],
        ).fetchall()
    return {"lines": lines, "reconciliation": recon[0] if recon else None}


def test_late_gcp_file_reruns_its_day_and_changes_that_days_marts(tmp_path):
    landing = tmp_path / "landing"
    _write(landing, "gcp_billing/2026/10/02/export.jsonl", OCT_1_ROWS)
    _write(landing, "gcp_billing/2026/10/03/export.jsonl", OCT_2_ROWS)
    settings = Settings(
        landing=str(landing),
        lake=str(tmp_path / "lake"),
        warehouse=str(tmp_path / "warehouse.duckdb"),
    )
    run_range(settings, OCT_1, OCT_2)
    # Effective cost: the GPU hour 88.00 - 26.40 in scope (no fleet: unattributed), storage out.
    assert _marts(settings, OCT_1) == {
        "lines": (2, Decimal("88.031"), Decimal("61.631")),
        "reconciliation": (
            Decimal("61.631"),
            Decimal("61.6"),
            Decimal("0.031"),
            Decimal("61.6"),
            True,
        ),
    }
    oct_2_before = _marts(settings, OCT_2)
    assert oct_2_before["lines"] == (1, Decimal(88), Decimal("61.6"))

    storage = StorageResource(
        landing=settings.landing, lake=settings.lake, warehouse=settings.warehouse
    )
    (landing_sensor, _) = build_billing_sensors(daily_refresh)
    baseline = landing_sensor(dg.build_sensor_context(resources={"storage": storage}))
    assert baseline.skip_reason.skip_message == "baseline listing recorded"
    _write(landing, "gcp_billing/2026/10/05/export.jsonl", [LATE_ROW])
    tick = landing_sensor(
        dg.build_sensor_context(cursor=baseline.cursor, resources={"storage": storage})
    )
    (request,) = tick.run_requests
    assert request.partition_key == "2026-10-01"
    assert request.run_key.startswith("billing:2026-10-01..2026-10-01:")
    quiet = landing_sensor(
        dg.build_sensor_context(cursor=tick.cursor, resources={"storage": storage})
    )
    assert quiet.skip_reason.skip_message == "no billing export changed"

    run_range(settings, OCT_1, OCT_1)  # what the request runs: the 1 October partition
    assert _marts(settings, OCT_1) == {
        "lines": (3, Decimal("99.031"), Decimal("69.331")),  # + 11.00 billed, + 7.70 effective
        "reconciliation": (
            Decimal("69.331"),
            Decimal("69.3"),
            Decimal("0.031"),
            Decimal("69.3"),
            True,
        ),
    }
    assert _marts(settings, OCT_2) == oct_2_before


def test_listing_cursor_sees_billing_objects_once_including_same_second_arrivals():
    at = datetime(2026, 10, 5, 6, tzinfo=UTC)
    first = LandingObject("gcp_billing/2026/10/05/a.jsonl", 10, "e1", at)
    cursor = ListingCursor()
    cursor.advance([first])
    cursor = ListingCursor.load(cursor.dump())
    same_second = LandingObject("gcp_billing/2026/10/05/b.jsonl", 10, "e2", at)
    rewritten = LandingObject(first.key, 11, "e3", at)
    assert [cursor.is_new(o) for o in (first, same_second, rewritten)] == [False, True, True]
    cursor.advance([same_second, rewritten])
    assert not any(cursor.is_new(o) for o in (first, same_second, rewritten))


def test_first_export_in_an_empty_landing_store_is_news_not_history(tmp_path):
    storage = StorageResource(landing=str(tmp_path), lake=str(tmp_path / "lake"), warehouse="w")
    (landing_sensor, _) = build_billing_sensors(daily_refresh)
    baseline = landing_sensor(dg.build_sensor_context(resources={"storage": storage}))
    assert baseline.skip_reason.skip_message == "baseline listing recorded"
    _write(tmp_path, "gcp_billing/2026/10/02/export.jsonl", OCT_1_ROWS)
    context = dg.build_sensor_context(cursor=baseline.cursor, resources={"storage": storage})
    assert [r.partition_key for r in landing_sensor(context).run_requests] == ["2026-10-01"]


def test_only_billing_prefixes_are_listed(tmp_path):
    _write(tmp_path, "gateway_logs/litellm/2026-10-01.jsonl", [])
    _write(tmp_path, "gcp_billing/2026/10/02/export.jsonl", OCT_1_ROWS)
    objects = new_billing_objects(LocalStore(tmp_path), ListingCursor())
    assert [o.key for o in objects] == ["gcp_billing/2026/10/02/export.jsonl"]
