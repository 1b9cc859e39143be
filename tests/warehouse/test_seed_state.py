"""The daily build loads the seeds (and runs their tests) only when they changed, and
reuses the project's parse made for its warehouse."""

from __future__ import annotations

import os
import shutil
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
    # The kept parse is marked as made for this warehouse: a code location loading with it
    # named in the environment does not parse the project again.
    kept = wh.DBT_PROJECT_DIR / "target" / wh.PARSED_FOR_FILE
    assert kept.read_text() == str(warehouse.resolve())
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


def test_the_project_is_parsed_at_load_for_a_warehouse_its_parse_did_not_see(
        tmp_path: Path, monkeypatch) -> None:
    project = tmp_path / "dbt"
    shutil.copytree(wh.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("warehouse-*", "logs"))
    os.utime(project / "target" / "manifest.json")  # fresher than every project file
    monkeypatch.setattr(wh, "DBT_PROJECT_DIR", project)
    parses: list[tuple[list[str], str]] = []

    class Cli:
        def __init__(self, **_: object) -> None:
            pass

        def cli(self, args: list[str], target_path: Path) -> Cli:
            parses.append((args, os.environ["INFERLEDGER_WAREHOUSE"]))
            return self

        def wait(self) -> None:
            pass

    monkeypatch.setattr(wh, "DbtCliResource", Cli)
    (project / "target" / wh.PARSED_FOR_FILE).write_text(str(tmp_path / "a.duckdb"))
    load = wh.dbt_project.__wrapped__

    monkeypatch.delenv("INFERLEDGER_WAREHOUSE", raising=False)
    load()  # no warehouse named: the kept parse stands
    monkeypatch.setenv("INFERLEDGER_WAREHOUSE", str(tmp_path / "a.duckdb"))
    load()  # the warehouse it was made for
    assert parses == []

    monkeypatch.setenv("INFERLEDGER_WAREHOUSE", str(tmp_path / "x" / ".." / "b.duckdb"))
    load()  # another warehouse: parsed here, with the path as the build will name it
    resolved = str((tmp_path / "b.duckdb").resolve())
    assert parses == [(["parse", "--quiet"], resolved)]
    assert (project / "target" / wh.PARSED_FOR_FILE).read_text() == resolved
    load()
    assert len(parses) == 1
