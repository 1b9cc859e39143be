"""The demo month's planted anomalies are found on their day, and nothing else pages.

Runs on the default demo month, generated and built through the whole pipeline once per
test session (the `demo_month` fixture).
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets import anomaly_detection as ad
from assets.anomalies import cost_anomalies, detect_window
from assets.resources import StorageResource


def _labels(landing: Path) -> list[dict]:
    return json.loads((landing / "anomaly_labels.json").read_text())["anomalies"]


def _assert_labels_found_and_nothing_else_pages(alerts: pl.DataFrame, labels: list[dict]) -> None:
    daily = alerts.filter(pl.col("grain") == "day", pl.col("status").is_in(ad.NOTIFY_STATUSES))
    for label in labels:
        found = daily.filter(
            (pl.col("dimension") == label["dimension"]) & (pl.col("key") == label["key"])
            & (pl.col("usage_date") == date.fromisoformat(label["day"])) & (pl.col("direction") == "up")
        )
        assert found.height == 1, (label, daily)
        assert found.item(0, "severity") in ("critical", "warning")
    labelled = {(lb["dimension"], lb["key"], date.fromisoformat(lb["day"])) for lb in labels}
    pages = alerts.filter(pl.col("severity") == "critical", pl.col("status").is_in(ad.NOTIFY_STATUSES))
    for page in pages.iter_rows(named=True):
        assert (page["dimension"], page["key"], page["usage_date"]) in labelled, page
    # The spike and the new customer page (daily); the level shift of $45/day goes to chat.
    assert set(pages.filter(pl.col("grain") == "day").get_column("key")) == {"cust_globex", "cust_piedpiper"}


@pytest.fixture(scope="module")
def demo(demo_month: Path) -> Path:
    return demo_month


def test_demo_labels_are_detected_on_their_day_with_no_other_page(demo: Path) -> None:
    with duckdb.connect(str(demo / "warehouse.duckdb"), read_only=True) as con:
        alerts = detect_window(con, demo / "lake", date(2026, 10, 1), date(2026, 10, 31))
    _assert_labels_found_and_nothing_else_pages(alerts, _labels(demo / "landing"))
    globex = alerts.filter(pl.col("key") == "cust_globex", pl.col("grain") == "day",
                           pl.col("status") == "triggered").row(0, named=True)
    assert globex["actual"] > 4 * globex["expected"]
    # Within the first hour it is seen from the gateway logs, and what it moved (total,
    # features, deployments) is grouped under the customer's incident, never paged.
    first_hour = alerts.filter(pl.col("key") == "cust_globex", pl.col("grain") == "hour",
                               pl.col("status") == "triggered").row(0, named=True)
    assert first_hour["period_start"].hour == 0 and first_hour["usage_date"] == date(2026, 10, 11)
    grouped = alerts.filter(pl.col("explained_by") == first_hour["dedup_key"])
    assert {"total", "feature", "deployment"} <= set(grouped.get_column("dimension"))
    assert set(grouped.get_column("severity")) == {"info"}


def test_asset_writes_the_table_and_its_check_fails_with_the_pages(demo: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(demo / "warehouse.duckdb", warehouse)
    storage = StorageResource(landing=str(demo / "landing"), lake=str(demo / "lake"), warehouse=str(warehouse))
    result = dg.materialize(
        [cost_anomalies], resources={"storage": storage},
        tags={"dagster/asset_partition_range_start": "2026-10-01",
              "dagster/asset_partition_range_end": "2026-10-30"},
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["paging_incidents"].value == 3  # globex (day and hour), piedpiper
    top = check.metadata["top_incidents"].value
    assert {i["key"] for i in top} == {"cust_globex", "cust_piedpiper"}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql("select count(*), min(usage_date), max(usage_date), count(distinct dedup_key) "
                       "from cost_anomalies").fetchall()[0]
        types = dict(con.sql("select column_name, column_type from (describe cost_anomalies)").fetchall())
    assert date(2026, 10, 1) <= rows[1] and rows[2] <= date(2026, 10, 30)
    assert rows[0] > 0
    assert types["impact_usd"] == "DECIMAL(38,12)"
    # A rerun of one day replaces that day's rows with the same ones.
    before = _day(warehouse, date(2026, 10, 11))
    dg.materialize([cost_anomalies], resources={"storage": storage}, partition_key="2026-10-11")
    assert _day(warehouse, date(2026, 10, 11)) == before


def _day(warehouse: Path, day: date) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return sorted(con.execute(
            "select * exclude (detected_at) from cost_anomalies where usage_date = ?", [day]
        ).fetchall(), key=repr)


def test_hourly_token_sums_are_kept_and_only_the_window_is_summed_again(demo: Path, tmp_path: Path) -> None:
    """The asset keeps each day's hourly token sums in the warehouse: the 35-day hourly
    history is read back from there, the window is summed from the lake again, and the
    alerts are the same as when everything is summed from the lake."""
    from assets.anomalies import HOURLY_SERIES_TOKENS_TABLE, HOURLY_TOKENS_TABLE

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(demo / "warehouse.duckdb", warehouse)
    window = (date(2026, 10, 11), date(2026, 10, 12))
    columns = ["period_start", "grain", "metric", "dimension", "key", "rule", "severity", "status", "dedup_key"]
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"drop table if exists {HOURLY_TOKENS_TABLE}")
        summed = detect_window(con, demo / "lake", *window).select(columns).sort(columns)
        kept_first = detect_window(con, demo / "lake", *window, keep_hourly_tokens=True)
        per_day = dict(con.sql(f"select usage_date, sum(tokens) from {HOURLY_TOKENS_TABLE} group by 1").fetchall())
        # Tamper with a history day and a window day: the first is read back, the second redone.
        con.execute(f"update {HOURLY_TOKENS_TABLE} set tokens = 0 where usage_date in ('2026-10-05', '2026-10-11')")
        kept_again = detect_window(con, demo / "lake", *window, keep_hourly_tokens=True)
        after = dict(con.sql(f"select usage_date, sum(tokens) from {HOURLY_TOKENS_TABLE} group by 1").fetchall())
    assert kept_first.select(columns).sort(columns).equals(summed)
    lake_day = (pl.scan_parquet(demo / "lake" / "gateway_requests" / "date=2026-10-05" / "*.parquet")
                .filter(pl.col("status") == "success")
                .select(pl.sum_horizontal("input_uncached_tokens", "cache_read_tokens",
                                          "cache_write_tokens", "output_tokens").sum()).collect().item())
    assert per_day[date(2026, 10, 5)] == lake_day
    assert date(2026, 9, 6) <= min(per_day) and max(per_day) == date(2026, 10, 11)  # 35 days back
    assert after[date(2026, 10, 5)] == 0  # read back, not summed again
    assert after[date(2026, 10, 11)] == per_day[date(2026, 10, 11)]  # the window, summed again
    assert kept_again.height > 0
    # Kept leaves without their series (a warehouse from before the series were kept): the
    # series come from the kept leaves (5 October's zeroed ones), not from the lake.
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"drop table {HOURLY_SERIES_TOKENS_TABLE}")
        detect_window(con, demo / "lake", *window, keep_hourly_tokens=True)
        series = dict(con.sql(f"select usage_date, sum(tokens) from {HOURLY_SERIES_TOKENS_TABLE} "
                              "where dimension = 'deployment' group by 1").fetchall())
    assert series[date(2026, 10, 5)] == 0 and series[date(2026, 10, 4)] == per_day[date(2026, 10, 4)]
    # A run of 10 November looks back to 6 October: the days before it leave both tables.
    with duckdb.connect(str(warehouse)) as con:
        detect_window(con, demo / "lake", date(2026, 11, 10), date(2026, 11, 11), keep_hourly_tokens=True)
        left = [[d for (d,) in con.sql(f"select distinct usage_date from {table} order by 1").fetchall()]
                for table in (HOURLY_TOKENS_TABLE, HOURLY_SERIES_TOKENS_TABLE)]
    assert left == [[date(2026, 10, d) for d in range(6, 31)]] * 2


def test_a_planned_launch_in_the_landing_store_is_recorded_but_does_not_page(
        demo: Path, tmp_path: Path) -> None:
    """Pied Piper's onboarding (2026-10-21), announced in config/planned_events.csv: the
    alert is still in the table, explained by the plan; only Globex pages."""
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(demo / "warehouse.duckdb", warehouse)
    landing = tmp_path / "landing"
    (landing / "config").mkdir(parents=True)
    (landing / "config" / "planned_events.csv").write_text(
        "dimension,key,start_date,end_date,description\n"
        "customer,cust_piedpiper,2026-10-20,2026-10-22,Pied Piper onboarding\n")
    storage = StorageResource(landing=str(landing), lake=str(demo / "lake"), warehouse=str(warehouse))
    result = dg.materialize(
        [cost_anomalies], resources={"storage": storage},
        tags={"dagster/asset_partition_range_start": "2026-10-01",
              "dagster/asset_partition_range_end": "2026-10-30"},
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.metadata["paging_incidents"].value == 2  # globex, day and hour
    assert {i["key"] for i in check.metadata["top_incidents"].value} == {"cust_globex"}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        piedpiper = con.sql(
            "select usage_date, severity, explained_by from cost_anomalies where grain = 'day' "
            "and dimension = 'customer' and key = 'cust_piedpiper' and status = 'triggered'"
        ).fetchall()
    assert piedpiper == [(date(2026, 10, 21), "info", "planned: Pied Piper onboarding")]
