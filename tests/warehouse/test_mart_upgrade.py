"""A release that changes a mart's columns, or adds one: the daily run builds that mart over every day.

gpu_rates_daily's instance and GPU hours were whole-hour counts (BIGINT) and are now the
hours the bill says ran (DECIMAL). A warehouse built by the older release holds the old
table; an incremental mart with `on_schema_change: fail` cannot take the new day's rows,
and converting the column in place would leave the older days computed the old way. The
warehouse asset rebuilds the mart from the lake over every day, and the BI export writes
every day of it again.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb

from assets import warehouse as wh
from assets.exports import export_parquet, exports_dir, marts_export_asset
from assets.resources import StorageResource
from tests.warehouse.conftest import Warehouse

DAYS = (date(2026, 10, 1), date(2026, 10, 2))
RATES = "select usage_date, instance_hours, gpu_hours, effective_usd_per_gpu_hour from gpu_rates_daily order by 1"


def _lake(w: Warehouse) -> None:
    # Each day: an 8-GPU p5.48xlarge runs hour 10 whole (98.32, on demand) and is stopped a
    # quarter of the way into hour 11 (24.58): 1.25 instance-hours, 10 GPU-hours, 122.90, a
    # GPU-hour at 12.29. Counting the partial hour whole would make it 16 GPU-hours at 7.68.
    lines = []
    for day in DAYS:
        for hour, quantity, cost in ((10, "1", "98.32"), (11, "0.25", "24.58")):
            lines.append(w.bill_line(f"{day}-{hour}", w.utc(day, hour), 1, cost, list_cost=cost,
                                     instance_type="p5.48xlarge", resource_id="i-1",
                                     region="us-east-1", consumed=(quantity, "Hrs")))
    w.write("billing_line_items", lines)
    w.finish_lake()
    w.write("fleet_inventory", [w.inventory_row("h1", "AWS", "i-1", "chat")], day=DAYS[0])


def _column_types(warehouse: Path) -> dict[str, str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(con.execute("select column_name, data_type from information_schema.columns "
                                "where table_name = 'gpu_rates_daily'").fetchall())


def _exported(lake: Path) -> list[tuple]:
    files = sorted((exports_dir(lake) / "gpu_rates_daily").glob("month=*/*.parquet"))
    with duckdb.connect() as con:
        types = {r[0] for r in con.execute("select duckdb_type from parquet_schema(?) where name = 'gpu_hours'",
                                           [[str(f) for f in files]]).fetchall()}
        rows = con.execute(f"select usage_date, gpu_hours from read_parquet({[str(f) for f in files]}) "
                           "order by 1").fetchall()
    return [(len(files), types), *rows]


def test_a_mart_whose_columns_changed_is_rebuilt_over_every_day(tmp_path: Path) -> None:
    w = Warehouse(tmp_path)
    _lake(w)
    storage = StorageResource(landing=str(tmp_path / "landing"), lake=str(w.lake), warehouse=str(w.path))
    resources = {"storage": storage, "dbt": wh.dbt_resource()}
    assets = [wh.warehouse_assets(), marts_export_asset()]

    def run(first: date, last: date) -> None:
        dg.materialize(assets, resources=resources, tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()})

    new_rates = [(d, Decimal("1.25"), Decimal(10), Decimal("12.29")) for d in DAYS]
    run(*DAYS)
    with duckdb.connect(str(w.path), read_only=True) as con:
        assert con.sql(RATES).fetchall() == new_rates

    # What the older release left: whole hours as BIGINT, in the warehouse and the exports.
    with duckdb.connect(str(w.path)) as con:
        con.execute("update gpu_rates_daily set instance_hours = 2, gpu_hours = 16, "
                    "effective_usd_per_gpu_hour = 7.68125")
        for column in ("instance_hours", "gpu_hours"):
            con.execute(f"alter table gpu_rates_daily alter {column} type bigint")
    export_parquet(w.path, exports_dir(w.lake), ["gpu_rates_daily"])
    assert _exported(w.lake) == [(2, {"BIGINT"}), (DAYS[0], 16), (DAYS[1], 16)]
    manifest = json.loads(wh.dbt_project().manifest_path.read_text())
    assert wh.changed_marts(manifest, w.path) == {
        "gpu_rates_daily": ["instance_hours BIGINT -> DECIMAL(38,6)", "gpu_hours BIGINT -> DECIMAL(38,6)"]}

    # The next daily run (the second day only) rebuilds the mart over both days.
    run(DAYS[1], DAYS[1])
    with duckdb.connect(str(w.path), read_only=True) as con:
        assert con.sql(RATES).fetchall() == new_rates
    assert {k: _column_types(w.path)[k] for k in ("instance_hours", "gpu_hours")} == {
        "instance_hours": "DECIMAL(38,6)", "gpu_hours": "DECIMAL(38,6)"}
    assert _exported(w.lake) == [(2, {"DECIMAL(38,6)"}), (DAYS[0], Decimal(10)), (DAYS[1], Decimal(10))]
    assert wh.changed_marts(manifest, w.path) == {}  # rebuilt once, never again


def test_a_rebuild_takes_the_tables_a_mart_reads_but_not_other_marts() -> None:
    manifest = json.loads(wh.dbt_project().manifest_path.read_text())
    rates = wh.full_history_selection(manifest, ["gpu_rates_daily"])
    assert rates == ["gpu_rates_daily", "hour_offsets", "int_billing_line_items_scoped", "int_gpu_instance_hours",
                     "int_in_scope_costs_hourly", "stg_lake__billing_line_items", "stg_lake__fleet_inventory",
                     "stg_lake__fx_rates"]
    customers = wh.full_history_selection(manifest, ["customer_costs_daily"])
    assert "customer_costs_daily" in customers and "fct_inference_costs_hourly" not in customers


def test_a_mart_new_in_a_release_is_built_over_every_day(tmp_path: Path) -> None:
    """supplier_spend_daily came after warehouses held days: the daily run of the second day
    builds it over both, so the trailing 30 days of supplier_concentration count the first."""
    w = Warehouse(tmp_path)
    _lake(w)
    storage = StorageResource(landing=str(tmp_path / "landing"), lake=str(w.lake), warehouse=str(w.path))
    resources = {"storage": storage, "dbt": wh.dbt_resource()}

    def run(first: date, last: date) -> None:
        dg.materialize([wh.warehouse_assets()], resources=resources, tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()})

    spend = "select usage_date, supplier, spend_usd from supplier_spend_daily where dimension = 'cloud_provider' order by 1"
    trailing = ("select usage_date, total_spend_usd from supplier_concentration "
                "where period_type = 'trailing_30d' and dimension = 'cloud_provider' order by 1")
    run(*DAYS)
    with duckdb.connect(str(w.path), read_only=True) as con:
        assert con.sql(spend).fetchall() == [(d, "AWS", Decimal("122.90")) for d in DAYS]
        assert con.sql(trailing).fetchall() == [(DAYS[0], Decimal("122.90")), (DAYS[1], Decimal("245.80"))]
    # What the release before left: no such table.
    with duckdb.connect(str(w.path)) as con:
        con.execute("drop table supplier_spend_daily")
    manifest = json.loads(wh.dbt_project().manifest_path.read_text())
    assert wh.changed_marts(manifest, w.path) == {"supplier_spend_daily": ["new mart"]}

    run(DAYS[1], DAYS[1])
    with duckdb.connect(str(w.path), read_only=True) as con:
        assert con.sql(spend).fetchall() == [(d, "AWS", Decimal("122.90")) for d in DAYS]
        assert con.sql(trailing).fetchall() == [(DAYS[0], Decimal("122.90")), (DAYS[1], Decimal("245.80"))]
    assert wh.changed_marts(manifest, w.path) == {}
    # A warehouse without marts yet builds it with the rest, for the run window only.
    duckdb.connect(str(tmp_path / "new.duckdb")).close()
    assert wh.changed_marts(manifest, tmp_path / "new.duckdb") == {}
