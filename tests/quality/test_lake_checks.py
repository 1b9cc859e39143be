"""Great Expectations suites on lake partitions, as blocking Dagster asset checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets import quality
from assets.resources import StorageResource
from assets.warehouse import dbt_resource, warehouse_assets
from connectors import lake
from connectors.schemas import LAKE_TABLES

DAY = date(2026, 10, 1)


def _requests(n: int, day: date = DAY) -> pl.DataFrame:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rows = [
        {
            "request_id": f"req-{i:03d}",
            "source": "generic",
            "source_file": "gw.jsonl",
            "ts_start": start + timedelta(minutes=30 * i),
            "provider": "openai",
            "model_served": "gpt-4o",
            "deployment": "gpt-4o",
            "customer_id": "cust_a",
            "feature": "chat",
            "status": "success",
            "input_uncached_tokens": 100,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "output_tokens": 50,
            "reasoning_tokens": 0,
        }
        for i in range(n)
    ]
    return pl.DataFrame(rows)


def _bad_partition() -> pl.DataFrame:
    """48 requests, two without an id and one with negative output tokens."""
    return _requests(48).with_columns(
        request_id=pl.when(pl.col("request_id").is_in(["req-003", "req-007"])).then(None).otherwise("request_id"),
        output_tokens=pl.when(pl.col("request_id") == "req-011").then(-50).otherwise("output_tokens"),
    )


def test_clean_gateway_partition_passes_every_expectation(tmp_path: Path) -> None:
    lake.write_table(tmp_path, "gateway_requests", DAY, _requests(48))
    report = quality.validate_partition(tmp_path, "gateway_requests", DAY)
    assert report["success"], report["failures"]
    assert report["rows"] == 48
    # 4 keys not null, 1 unique, row count, freshness, 5 token ranges, status, cost range
    assert report["expectations"] == 14


def test_bad_partition_names_the_failing_expectations_counts_and_keys(tmp_path: Path) -> None:
    lake.write_table(tmp_path, "gateway_requests", DAY, _bad_partition())
    report = quality.validate_partition(tmp_path, "gateway_requests", DAY)
    assert not report["success"]
    failures = {(f["expectation"], f["arguments"].get("column")): f for f in report["failures"]}
    nulls = failures[("expect_column_values_to_not_be_null", "request_id")]
    assert nulls["unexpected_count"] == 2
    negative = failures[("expect_column_values_to_be_between", "output_tokens")]
    assert negative["unexpected_count"] == 1
    assert negative["sample_keys"] == ["req-011"]
    assert set(failures) == {
        ("expect_column_values_to_not_be_null", "request_id"),
        ("expect_column_values_to_be_between", "output_tokens"),
    }


def test_duplicate_request_ids_fail_with_their_count_and_keys(tmp_path: Path) -> None:
    # req-005 written twice: pass or fail comes from the distinct count, the report from
    # the per-row uniqueness run again.
    rows = _requests(48)
    lake.write_table(tmp_path, "gateway_requests", DAY,
                     pl.concat([rows, rows.filter(pl.col("request_id") == "req-005")]))
    report = quality.validate_partition(tmp_path, "gateway_requests", DAY)
    assert not report["success"]
    assert report["rows"] == 49
    (failure,) = report["failures"]
    assert failure["expectation"] == "expect_column_values_to_be_unique"
    assert failure["arguments"] == {"column": "request_id"}
    assert failure["unexpected_count"] == 2
    assert failure["sample_keys"] == ["req-005", "req-005"]


def test_partition_without_request_ids_fails_on_the_nulls_alone(tmp_path: Path) -> None:
    rows = _requests(48).with_columns(request_id=pl.lit(None, pl.String))
    lake.write_table(tmp_path, "gateway_requests", DAY, rows)
    report = quality.validate_partition(tmp_path, "gateway_requests", DAY)
    assert not report["success"]
    (failure,) = report["failures"]
    assert failure["expectation"] == "expect_column_values_to_not_be_null"
    assert failure["unexpected_count"] == 48


def test_row_count_is_bounded_by_the_trailing_week_of_manifests(tmp_path: Path) -> None:
    for i in range(1, 8):
        day = DAY - timedelta(days=i)
        lake.write_manifest(tmp_path, "gateway_requests", day, {
            "table_name": "gateway_requests", "partition_date": day, "written_at": datetime.now(UTC),
            "source_files": "[]", "rows_read": 1000, "rows_written": 1000, "rows_quarantined": 0,
        })
    assert quality.trailing_row_counts(tmp_path, "gateway_requests", DAY) == [1000] * 7
    lake.write_table(tmp_path, "gateway_requests", DAY, _requests(48))
    report = quality.validate_partition(tmp_path, "gateway_requests", DAY)
    (failure,) = report["failures"]
    # 48 rows against a median of 1000: below 0.2 x 1000 = 200.
    assert failure["expectation"] == "expect_table_row_count_to_be_between"
    assert failure["arguments"] == {"min_value": "200", "max_value": "5001"}
    assert failure["observed_value"] == "48"


def test_stale_partition_fails_freshness(tmp_path: Path) -> None:
    # 12 half-hourly requests, the last at 05:30: the day's data stopped arriving early.
    early = _requests(12)
    lake.write_table(tmp_path, "gateway_requests", DAY, early)
    report = quality.validate_partition(tmp_path, "gateway_requests", DAY)
    assert [f["expectation"] for f in report["failures"]] == ["expect_column_max_to_be_between"]


@dg.asset(key="gateway_requests", partitions_def=quality.DAILY, backfill_policy=dg.BackfillPolicy.single_run())
def planted_gateway_requests() -> None:
    """Stands for an ingestion that wrote a bad partition (planted by the test)."""


def test_bad_partition_fails_blocking_check_and_stops_the_marts(tmp_path: Path) -> None:
    lake_root = tmp_path / "lake"
    lake.write_table(lake_root, "gateway_requests", DAY, _bad_partition())
    for table in ("billing_line_items", "gpu_hourly", "fleet_inventory"):
        lake.ensure_table(lake_root, table)
    check = next(c for c in quality.LAKE_CHECKS if "gateway_requests_expectations" in str(c.check_keys))
    storage = StorageResource(landing=str(tmp_path / "landing"), lake=str(lake_root),
                              warehouse=str(tmp_path / "warehouse.duckdb"))
    result = dg.materialize(
        [planted_gateway_requests, check, warehouse_assets()],
        partition_key=DAY.isoformat(),
        resources={"storage": storage, "dbt": dbt_resource()},
        raise_on_error=False,
    )
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "gateway_requests_expectations"
    ]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    failures = evaluation.metadata["failures"].value[0]["failures"]
    assert {f["expectation"] for f in failures} == {
        "expect_column_values_to_not_be_null", "expect_column_values_to_be_between",
    }
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"gateway_requests"}, materialized
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_every_mart_carries_the_freshness_policy() -> None:
    storage = StorageResource(landing="landing", lake="lake", warehouse="warehouse.duckdb")
    defs = quality.with_mart_freshness(
        dg.Definitions(assets=[warehouse_assets()], resources={"storage": storage, "dbt": dbt_resource()})
    )
    graph = defs.resolve_asset_graph()
    marts = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "marts"]
    assert marts
    assert all(graph.get(k).freshness_policy == quality.MART_FRESHNESS for k in marts)


@pytest.mark.parametrize("table", sorted(quality.SUITES))
def test_each_lake_table_has_a_check_and_ingestion_critical_ones_block(table: str) -> None:
    check = next(c for c in quality.LAKE_CHECKS if f"{table}_expectations" in str(c.check_keys))
    (spec,) = check.check_specs
    assert spec.blocking == (table in ("billing_line_items", "gateway_requests"))
    suite = quality.SUITES[table]
    assert set(suite.key_columns) <= set(LAKE_TABLES[table])

def test_bill_partition_checks_currency_codes_and_money_as_sql(tmp_path: Path) -> None:
    from decimal import Decimal

    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    lines = pl.DataFrame([
        {"source": "cur", "source_line_id": f"l{i}", "provider": "AWS", "charge_period_start": start,
         "charge_category": "Usage", "billing_currency": currency, "effective_cost": Decimal(cost),
         "billed_cost": Decimal(cost)}
        for i, (currency, cost) in enumerate([("USD", "1.50"), ("usd", "2.00"), ("EURO", "3.00"),
                                              ("EUR", "2000000000000.00")])
    ])
    lake.write_table(tmp_path, "billing_line_items", DAY, lines)
    report = quality.validate_partition(tmp_path, "billing_line_items", DAY)
    assert (report["rows"], report["success"]) == (4, False)
    failures = {f["expectation"]: f for f in report["failures"]}
    assert set(failures) == {"unexpected_rows_expectation", "expect_column_values_to_be_between"}
    # "usd" and "EURO" are not three capital letters; 2e12 is past the trillion limit, on
    # both money columns (two between-expectations fail: the dict keeps one), line l3.
    assert failures["unexpected_rows_expectation"]["observed_value"] == "2"
    assert failures["expect_column_values_to_be_between"]["unexpected_count"] == 1
    assert failures["expect_column_values_to_be_between"]["sample_keys"] == ["cur|l3"]


def test_an_empty_partition_fails_only_against_a_week_that_had_rows(tmp_path: Path) -> None:
    # A source the deployment does not use (nothing this day, nothing the week before).
    lake.write_table(tmp_path, "gateway_requests", DAY, pl.DataFrame(schema=LAKE_TABLES["gateway_requests"]))
    quiet = quality.validate_partition(tmp_path, "gateway_requests", DAY)
    assert (quiet["rows"], quiet["success"], quiet["expectations"]) == (0, True, 1)
    # The same empty day after a week of 1,000 requests a day: the gateway stopped writing.
    for i in range(1, 8):
        day = DAY - timedelta(days=i)
        lake.write_manifest(tmp_path, "gateway_requests", day, {
            "table_name": "gateway_requests", "partition_date": day, "written_at": datetime.now(UTC),
            "source_files": "[]", "rows_read": 1000, "rows_written": 1000, "rows_quarantined": 0,
        })
    stopped = quality.validate_partition(tmp_path, "gateway_requests", DAY)
    (failure,) = stopped["failures"]
    assert (failure["expectation"], failure["arguments"]["min_value"], failure["observed_value"]) == (
        "expect_table_row_count_to_be_between", "200", "0")
