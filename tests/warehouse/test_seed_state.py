"""The daily build loads the seeds (and runs their tests) only when they changed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb

from assets import warehouse as wh
from assets.resources import StorageResource
from connectors import lake

DAY = date(2026, 10, 1)
SEED_TABLES = {"api_prices", "gpu_instance_catalog", "fx_rates", "price_plans"}


def test_seed_state_is_per_fingerprint(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    assert not wh.seeds_loaded(warehouse, "abc")  # no warehouse yet
    duckdb.connect(str(warehouse)).close()
    assert not wh.seeds_loaded(warehouse, "abc")  # a warehouse that never loaded them
    wh.record_seeds(warehouse, "abc")
    assert wh.seeds_loaded(warehouse, "abc")
    assert not wh.seeds_loaded(warehouse, "abd")  # a seed changed
    wh.record_seeds(warehouse, "abd")
    assert wh.seeds_loaded(warehouse, "abd")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql(f"select count(*) from {wh.SEED_STATE_TABLE}").fetchall() == [(1,)]


def test_fingerprint_follows_the_seed_files() -> None:
    first = wh.seed_fingerprint()
    assert first == wh.seed_fingerprint() and len(first) == 64


def test_second_daily_build_skips_the_loaded_seeds(tmp_path: Path) -> None:
    lake_root = tmp_path / "lake"
    for table in ("billing_line_items", "gpu_hourly", "gateway_requests", "fleet_inventory",
                  "vllm_hourly"):
        lake.ensure_table(lake_root, table)
    warehouse = tmp_path / "warehouse.duckdb"
    storage = StorageResource(landing=str(tmp_path / "landing"), lake=str(lake_root),
                              warehouse=str(warehouse))

    def build(selection: list[str] | None = None) -> set[str]:
        result = dg.materialize([wh.warehouse_assets()], partition_key=DAY.isoformat(),
                                resources={"storage": storage, "dbt": wh.dbt_resource()},
                                selection=selection)
        return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}

    first = build()
    assert SEED_TABLES <= first and "fct_inference_costs_hourly" in first
    assert wh.seeds_loaded(warehouse, wh.seed_fingerprint())
    second = build()
    assert not SEED_TABLES & second  # the seeds were neither reloaded nor retested
    assert "fct_inference_costs_hourly" in second and "cost_per_token_daily" in second
    with duckdb.connect(str(warehouse), read_only=True) as con:
        # Still there from the first build: 13 list prices, as the seed file holds.
        assert con.sql("select count(*) from api_prices").fetchall() == [(13,)]
    # A seed picked on its own (to reload it by hand) is run, loaded or not.
    assert build(["api_prices"]) == {"api_prices"}


def test_old_run_targets_are_removed_newest_kept(tmp_path: Path) -> None:
    import os

    for i in range(13):
        run = tmp_path / f"warehouse-run{i:02d}-x"
        run.mkdir()
        (run / "manifest.json").write_text("{}")
        os.utime(run, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "partial_parse.msgpack").write_text("kept")
    wh.prune_run_targets(tmp_path, keep=10)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["partial_parse.msgpack"] + [f"warehouse-run{i:02d}-x" for i in range(3, 13)]
