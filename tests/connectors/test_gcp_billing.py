"""Google Cloud detailed billing export: from files, and from BigQuery through the real client."""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import Decimal

import polars as pl
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from connectors.gcp_billing import (
    ChangedMonth,
    changed_invoice_months,
    read_bigquery,
    read_gcp_billing,
    read_gcp_billing_file,
)
from connectors.landing import LocalStore
from connectors.result import SourceFormatError
from tests.support.fake_gcp import FakeGcp, fake_gcp

TABLE = "acme-billing.billing_export.gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9"
ACCOUNT = "01A2B3-C4D5E6-F7A8B9"
COMPUTE = {"id": "6F81-5844-456A", "description": "Compute Engine"}
H100_SKU = {"id": "F7A3-5C2B-9E1D", "description": "Nvidia H100 80GB GPU running in Americas"}
CUD = "projects/acme-ml/regions/us-central1/commitments/gpu-h100-1y"


def _row(**overrides) -> dict:
    """One row of the export as BigQuery's JSON shows it (costs are FLOAT64)."""
    row = {
        "billing_account_id": ACCOUNT,
        "service": COMPUTE,
        "sku": H100_SKU,
        "usage_start_time": "2026-03-01T00:00:00Z",
        "usage_end_time": "2026-03-01T01:00:00Z",
        "project": {
            "id": "acme-ml",
            "number": "123456789012",
            "name": "Acme ML",
            "labels": [{"key": "env", "value": "prod"}],
            "ancestry_numbers": "/1234/",
        },
        "labels": [],
        "system_labels": [],
        "location": {
            "location": "us-central1",
            "country": "US",
            "region": "us-central1",
            "zone": "us-central1-a",
        },
        "resource": {"name": None, "global_name": None},
        "tags": [],
        "export_time": "2026-03-01T06:00:00Z",
        "cost": 0.0,
        "currency": "USD",
        "currency_conversion_rate": 1.0,
        "usage": {
            "amount": 3600.0,
            "unit": "seconds",
            "amount_in_pricing_units": 1.0,
            "pricing_unit": "hour",
        },
        "credits": [],
        "invoice": {"month": "202603"},
        "cost_type": "regular",
        "adjustment_info": None,
        "price": None,
        "cost_at_list": None,
        "transaction_type": "GOOGLE",
        "seller_name": None,
    }
    row.update(overrides)
    return row


def _month_rows() -> list[dict]:
    """March 2026 on one account, as of the export of 2 March, 06:00 UTC."""
    vm = "//compute.googleapis.com/projects/acme-ml/zones/us-central1-a/instances/vllm-a3-0"
    return [
        # 8 x H100 for an hour at 11.00 list, 30% covered by a committed use discount.
        _row(
            usage={
                "amount": 28800.0,
                "unit": "seconds",
                "amount_in_pricing_units": 8.0,
                "pricing_unit": "hour",
            },
            cost=88.0,
            cost_at_list=88.0,
            credits=[
                {
                    "name": "Committed use discount: GPU",
                    "amount": -26.4,
                    "full_name": None,
                    "id": CUD,
                    "type": "COMMITTED_USAGE_DISCOUNT",
                }
            ],
            labels=[{"key": "team", "value": "ml"}, {"key": "deployment", "value": "llama-70b"}],
            system_labels=[
                {"key": "compute.googleapis.com/machine_spec", "value": "a3-highgpu-8g"},
                {"key": "compute.googleapis.com/cores", "value": "208"},
            ],
            resource={"name": "vllm-a3-0", "global_name": vm},
        ),
        # The VM's cores, with a sustained use discount.
        _row(
            sku={"id": "2E27-4F75-95CD", "description": "A3 Instance Core running in Americas"},
            cost=7.777777,
            cost_at_list=9.333333,
            credits=[
                {
                    "name": "Sustained usage discount",
                    "amount": -0.777777,
                    "full_name": None,
                    "id": "",
                    "type": "SUSTAINED_USAGE_DISCOUNT",
                }
            ],
            system_labels=[
                {"key": "compute.googleapis.com/machine_spec", "value": "a3-highgpu-8g"}
            ],
            resource={"name": "vllm-a3-0", "global_name": vm},
        ),
        _row(
            service={"id": "95FF-2EF5-5EA1", "description": "Cloud Storage"},
            sku={"id": "E5F0-6A5D-7BAD", "description": "Standard Storage US Regional"},
            usage_start_time="2026-03-02T00:00:00Z",
            usage_end_time="2026-03-02T01:00:00Z",
            export_time="2026-03-02T06:00:00Z",
            usage={
                "amount": 1.5e12,
                "unit": "byte-seconds",
                "amount_in_pricing_units": 1.55,
                "pricing_unit": "gibibyte month",
            },
            cost=0.031,
            cost_at_list=0.031,
        ),
        # Claude on Vertex AI: Google bills it, Anthropic sells it.
        _row(
            service={"id": "C7E2-9256-1C43", "description": "Claude Sonnet 4.5"},
            sku={"id": "A1B2-C3D4-E5F6", "description": "Claude Sonnet 4.5 Input Tokens"},
            usage={
                "amount": 1_200_000.0,
                "unit": "count",
                "amount_in_pricing_units": 1.2,
                "pricing_unit": "1M tokens",
            },
            cost=3.6,
            cost_at_list=3.6,
            transaction_type="THIRD_PARTY_RESELLER",
            seller_name="Anthropic",
        ),
        _row(
            service={"id": "2062-016F-44A2", "description": "Invoice"},
            sku={"id": "7B2F-A1C4-D9E8", "description": "Tax: US"},
            usage_start_time="2026-03-01T00:00:00Z",
            usage_end_time="2026-04-01T00:00:00Z",
            export_time="2026-03-02T06:00:00Z",
            usage=None,
            cost=5.72,
            cost_type="tax",
        ),
        _row(
            service={"id": "2062-016F-44A2", "description": "Invoice"},
            sku={"id": "0000-0000-0001", "description": "Rounding error"},
            export_time="2026-03-02T06:00:00Z",
            usage=None,
            cost=-0.000001,
            cost_type="rounding_error",
        ),
    ]


# 88 + 7.777777 + 0.031 + 3.6 + 5.72 - 0.000001
BILLED = Decimal("105.128776")
# billed - 26.4 (committed use) - 0.777777 (sustained use)
EFFECTIVE = Decimal("77.950999")
# 88 + 9.333333 + 0.031 + 3.6 (tax and rounding have no list cost)
LIST = Decimal("100.964333")
VERSION = "202603@2026-03-02T06:00:00.000000Z"


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _check_month(result) -> None:
    rows = result.rows
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (6, 6, 0)
    assert rows["billed_cost"].sum() == BILLED
    assert rows["effective_cost"].sum() == EFFECTIVE
    assert rows["list_cost"].sum() == LIST
    assert rows["billed_cost"].dtype == pl.Decimal(38, 12)
    assert rows["export_version"].unique().to_list() == [VERSION]
    by_category = dict(
        rows.group_by("charge_category").agg(pl.col("billed_cost").sum()).iter_rows()
    )
    assert by_category == {
        "Usage": Decimal("99.408777"),
        "Tax": Decimal("5.72"),
        "Adjustment": Decimal("-0.000001"),
    }
    gpu = rows.row(0, named=True)
    assert gpu["effective_cost"] == Decimal("61.6")  # 88.00 - 26.40
    assert (gpu["provider"], gpu["publisher"], gpu["sub_account_id"]) == (
        "Google Cloud",
        "Google Cloud",
        "acme-ml",
    )
    assert (gpu["instance_type"], gpu["region_id"], gpu["service_category"]) == (
        "a3-highgpu-8g",
        "us-central1",
        "Compute",
    )
    assert (gpu["consumed_quantity"], gpu["consumed_unit"]) == (Decimal(28800), "seconds")
    assert (gpu["pricing_quantity"], gpu["pricing_unit"]) == (Decimal(8), "hour")
    assert (gpu["pricing_category"], gpu["commitment_discount_id"]) == ("Committed", CUD)
    assert json.loads(gpu["tags"]) == {"team": "ml", "deployment": "llama-70b"}
    assert str(gpu["billing_period_start"]) == "2026-03-01 00:00:00+00:00"
    assert gpu["resource_id"].endswith("/instances/vllm-a3-0")
    claude = rows.filter(pl.col("publisher") == "Anthropic").row(0, named=True)
    assert (claude["provider"], claude["usage_type"]) == (
        "Google Cloud",
        "Claude Sonnet 4.5 Input Tokens",
    )
    assert rows["source_line_id"].n_unique() == 6
    assert rows["tags"].null_count() == 5  # only the GPU line is labelled


def test_jsonl_gz_and_parquet_exports_give_the_hand_computed_month(tmp_path):
    rows = _month_rows()
    folder = tmp_path / "gcp_billing" / "2026" / "03"
    folder.mkdir(parents=True)
    (folder / "export-000.jsonl.gz").write_bytes(gzip.compress(_jsonl(rows)))
    from_json = read_gcp_billing(LocalStore(tmp_path))
    _check_month(from_json)

    # The same rows as Parquet: typed columns (doubles, UTC timestamps), same numbers.
    times = ["usage_start_time", "usage_end_time", "export_time"]
    frame = pl.DataFrame(rows).with_columns(
        [pl.col(c).str.to_datetime(time_zone="UTC") for c in times]
    )
    parquet = tmp_path / "month.parquet"
    frame.write_parquet(parquet)
    from_parquet = read_gcp_billing_file(parquet, source_file="month.parquet")
    _check_month(from_parquet)
    same = ["source_line_id", "billed_cost", "effective_cost", "list_cost", "tags", "instance_type"]
    assert from_parquet.rows.select(same).equals(from_json.rows.select(same))


def test_files_of_one_month_share_the_month_latest_export_version(tmp_path):
    folder = tmp_path / "gcp_billing"
    folder.mkdir()
    rows = _month_rows()
    (folder / "day-01.jsonl").write_bytes(_jsonl(rows[:2]))  # exported 1 March 06:00
    (folder / "day-02.jsonl").write_bytes(_jsonl(rows[2:]))  # exported 2 March 06:00
    result = read_gcp_billing(LocalStore(tmp_path))
    assert result.rows_written == 6
    assert result.rows["export_version"].unique().to_list() == [VERSION]
    assert result.files == ["gcp_billing/day-01.jsonl", "gcp_billing/day-02.jsonl"]


def test_bad_rows_are_quarantined_with_their_reason():
    bad = [
        _row(cost=1.0, currency="XYZ"),
        _row(cost=2.0, invoice={"month": "2026-3"}),
        _row(cost="abc"),
        _row(cost=3.0, usage_start_time="2026-02-30T00:00:00Z"),
        _row(cost=4.0, cost_type="promotion"),
        _row(cost=5.0, credits=[{"name": "x", "amount": "n/a", "id": "", "type": "PROMOTION"}]),
        _row(cost=None),
    ]
    # `bq extract` writes TIMESTAMP as `2026-03-01 00:00:00 UTC`: accepted as is.
    good = _row(cost=0.25, usage_start_time="2026-03-01 00:00:00 UTC")
    result = read_gcp_billing_file(_jsonl([*bad, good]), source_file="gcp_billing/x.jsonl")
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (8, 1, 7)
    assert result.rows["billed_cost"].to_list() == [Decimal("0.25")]
    reasons = dict(zip(result.quarantine["row_number"], result.quarantine["reason"], strict=True))
    assert reasons == {
        1: "unknown currency 'XYZ' in currency: not an ISO 4217 code; fix the export or add"
        " the code to the FX table",
        2: "invoice.month '2026-3' is not YYYYMM",
        3: "non-numeric cost 'abc' in cost",
        4: "unparseable timestamp '2026-02-30T00:00:00Z' in usage_start_time",
        5: "unknown cost_type 'promotion'",
        6: "non-numeric credits.amount in n/a",
        7: "missing cost",
    }
    assert json.loads(result.quarantine["raw"][0])["currency"] == "XYZ"
    assert set(result.quarantine["source_file"]) == {"gcp_billing/x.jsonl"}


def test_a_file_that_is_not_the_export_fails_loudly(tmp_path):
    with pytest.raises(SourceFormatError, match=r"broken\.jsonl.*bq extract"):
        read_gcp_billing_file(b'{"cost": 1}\n{"cost": \n', source_file="broken.jsonl")
    path = tmp_path / "summary.parquet"
    pl.DataFrame({"service": ["Compute Engine"], "total": [1.0]}).write_parquet(path)
    with pytest.raises(SourceFormatError, match=r"summary\.parquet.*'cost'.*SELECT \*"):
        read_gcp_billing_file(path, source_file="summary.parquet")


# --- BigQuery through google-cloud-bigquery and the fake REST server ---------------------


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
        f(
            "project",
            "RECORD",
            fields=[
                f("id"),
                f("number"),
                f("name"),
                f("labels", "RECORD", "REPEATED", kv),
                f("ancestry_numbers"),
            ],
        ),
        f("labels", "RECORD", "REPEATED", kv),
        f("system_labels", "RECORD", "REPEATED", kv),
        f("location", "RECORD", fields=[f("location"), f("country"), f("region"), f("zone")]),
        f("resource", "RECORD", fields=[f("name"), f("global_name")]),
        f("tags", "RECORD", "REPEATED", [*kv, f("inherited", "BOOLEAN"), f("namespace")]),
        f("export_time", "TIMESTAMP"),
        f("cost", "FLOAT"),
        f("currency"),
        f("currency_conversion_rate", "FLOAT"),
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
        f("adjustment_info", "RECORD", fields=[f("id"), f("description"), f("mode"), f("type")]),
        f(
            "price",
            "RECORD",
            fields=[
                f("effective_price", "NUMERIC"),
                f("tier_start_amount", "NUMERIC"),
                f("unit"),
                f("pricing_unit_quantity", "NUMERIC"),
            ],
        ),
        f("cost_at_list", "FLOAT"),
        f("transaction_type"),
        f("seller_name"),
    ]


@pytest.fixture
def gcp() -> Iterator[FakeGcp]:
    with fake_gcp() as fake:
        yield fake


@pytest.fixture
def client(gcp: FakeGcp) -> bigquery.Client:
    return bigquery.Client(
        project="acme-billing",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcp.endpoint},
    )


def _day_total(rows: pl.DataFrame, day: date) -> Decimal:
    return rows.filter(pl.col("charge_period_start").dt.date() == day)["effective_cost"].sum()


def test_bigquery_rows_match_the_file_rows(gcp, client):
    gcp.add_table(TABLE, _bq_schema(), _month_rows())
    result, cursor = read_bigquery(client, TABLE, since_export_time=None)
    _check_month(result)
    assert cursor == datetime(2026, 3, 2, 6, tzinfo=timezone.utc)
    assert set(result.rows["source_file"]) == {f"bigquery:{TABLE}"}
    from_file = read_gcp_billing_file(_jsonl(_month_rows()), source_file="f.jsonl")
    same = ["source_line_id", "charge_period_start", "billed_cost", "effective_cost", "tags"]
    assert result.rows.select(same).sort("source_line_id").equals(
        from_file.rows.select(same).sort("source_line_id")
    )


def test_late_rows_for_an_earlier_day_change_their_month(gcp, client):
    gcp.add_table(TABLE, _bq_schema(), _month_rows())
    first, cursor = read_bigquery(client, TABLE, since_export_time=None)
    assert _day_total(first.rows, date(2026, 3, 1)) == Decimal("77.919999")  # EFFECTIVE - 0.031

    # Four days later Google exports a forgotten hour of 1 March and the first April row.
    late = _row(
        usage_start_time="2026-03-01T05:00:00Z",
        usage_end_time="2026-03-01T06:00:00Z",
        export_time="2026-03-04T06:00:00Z",
        cost=11.0,
        cost_at_list=11.0,
        credits=[
            {
                "name": "Committed use discount: GPU",
                "amount": -3.3,
                "full_name": None,
                "id": CUD,
                "type": "COMMITTED_USAGE_DISCOUNT",
            }
        ],
    )
    april = _row(
        usage_start_time="2026-04-01T00:00:00Z",
        usage_end_time="2026-04-01T01:00:00Z",
        export_time="2026-04-01T07:30:00Z",
        invoice={"month": "202604"},
        cost=88.0,
    )
    gcp.add_table(TABLE, _bq_schema(), [copy.deepcopy(late), april])

    changed = changed_invoice_months(client, TABLE, since_export_time=cursor)
    assert changed == [
        ChangedMonth("202603", (date(2026, 3, 1),), datetime(2026, 3, 4, 6, tzinfo=timezone.utc)),
        ChangedMonth(
            "202604", (date(2026, 4, 1),), datetime(2026, 4, 1, 7, 30, tzinfo=timezone.utc)
        ),
    ]
    # The query really carried the cursor to BigQuery.
    assert gcp.queries[-1][1] == {"since": cursor}

    new, next_cursor = read_bigquery(client, TABLE, since_export_time=cursor)
    assert new.rows_written == 2
    assert next_cursor == datetime(2026, 4, 1, 7, 30, tzinfo=timezone.utc)
    late_hour = pl.col("charge_period_start") == datetime(2026, 3, 1, 5, tzinfo=timezone.utc)
    assert new.rows.filter(late_hour)["effective_cost"].to_list() == [Decimal("7.7")]  # 11 - 3.30

    # The caller replaces March whole: its earlier day now holds the late hour.
    march, _ = read_bigquery(client, TABLE, since_export_time=None, invoice_months=["202603"])
    assert march.rows_written == 7
    assert march.rows["billed_cost"].sum() == BILLED + Decimal("11.0")
    assert _day_total(march.rows, date(2026, 3, 1)) == Decimal("85.619999")  # 77.919999 + 7.70
    assert _day_total(march.rows, date(2026, 3, 2)) == Decimal("0.031")  # untouched
    assert march.rows["export_version"].unique().to_list() == [
        "202603@2026-03-04T06:00:00.000000Z"
    ]

    # Nothing exported since: no month changes, the cursor stays.
    assert changed_invoice_months(client, TABLE, since_export_time=next_cursor) == []
    none, same_cursor = read_bigquery(client, TABLE, since_export_time=next_cursor)
    assert (none.rows_read, same_cursor) == (0, next_cursor)


def test_table_name_is_checked_before_it_reaches_sql(client):
    with pytest.raises(ValueError, match="project.dataset"):
        read_bigquery(client, "x`; DROP TABLE y; --", since_export_time=None)
