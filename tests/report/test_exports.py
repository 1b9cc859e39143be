"""BI exports: monthly Parquet of the marts and the read-only marts.duckdb snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.exports import (
    EXPORT_CHECK,
    MARTS_INFO_TABLE,
    OPTIONAL_MARTS,
    _mart_keys,
    export_parquet,
    exports_dir,
    mart_docs,
    months_in_window,
    publish_exports,
)
from assets.warehouse import dbt_project
from pipelines.config import Settings
from pipelines.runner import run_range
from tests.report.conftest import END

# The marts DESIGN.md promises; others are exported the same way as they are added.
CORE_MARTS = {
    "billing_reconciliation_daily", "cost_per_token_daily", "customer_costs_daily",
    "fct_billing_line_items", "fct_inference_costs_hourly", "feature_costs_daily",
}


def _warehouse_marts(settings: Settings) -> set[str]:
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
    return {key.path[-1] for key in _mart_keys()} & tables | {m for m in OPTIONAL_MARTS if m in tables}


def test_months_in_window_are_the_months_the_half_open_window_touches() -> None:
    assert months_in_window(date(2026, 10, 31), date(2026, 11, 2)) == ["2026-10", "2026-11"]
    assert months_in_window(date(2026, 12, 1), date(2027, 1, 1)) == ["2026-12"]  # end exclusive
    assert months_in_window(date(2026, 1, 15), date(2026, 4, 2)) == ["2026-01", "2026-02", "2026-03", "2026-04"]


def test_each_run_exports_every_mart_as_monthly_parquet(built_bi: Settings) -> None:
    out = exports_dir(built_bi.lake)
    assert out == Path(built_bi.lake).parent / "exports" / "marts"
    marts = _warehouse_marts(built_bi)
    assert CORE_MARTS <= marts
    assert {p.name for p in out.iterdir()} == marts
    with duckdb.connect(built_bi.warehouse, read_only=True) as con:
        for mart in CORE_MARTS:
            assert sorted(p.name for p in (out / mart).iterdir()) == ["month=2026-10", "month=2026-11"], mart
            in_warehouse = con.execute(
                f"select strftime(usage_date, '%Y-%m'), count(*) from {mart} group by 1 order by 1").fetchall()
            exported = con.execute(
                "select month, count(*) from read_parquet(?, hive_partitioning = true) group by 1 order by 1",
                [str(out / mart / "*" / "*.parquet")],
            ).fetchall()
            assert exported == in_warehouse, mart
        for mart in marts - CORE_MARTS:
            rows = con.execute(f"select count(*) from {mart}").fetchall()[0][0]
            files = [str(f) for f in (out / mart).glob("*/*.parquet")]
            exported = con.execute("select count(*) from read_parquet(?)", [files]).fetchall()[0][0] if files else 0
            assert exported == rows, mart
        # Money keeps its exact type and sums to the same decimal.
        parquet = str(out / "cost_per_token_daily" / "*" / "*.parquet")
        column_type = con.execute(
            "select column_type from (describe select fully_loaded_cost from read_parquet(?))", [parquet]
        ).fetchall()[0][0]
        assert column_type == "DECIMAL(38,12)"
        exported_sum = con.execute("select sum(fully_loaded_cost) from read_parquet(?)", [parquet]).fetchall()[0][0]
        mart_sum = con.execute("select sum(fully_loaded_cost) from cost_per_token_daily").fetchall()[0][0]
        assert exported_sum == mart_sum


def test_marts_duckdb_is_a_documented_read_only_copy_of_the_marts(built_bi: Settings) -> None:
    snapshot = Path(built_bi.marts_duckdb)
    assert snapshot.stat().st_mode & 0o777 == 0o444
    docs = mart_docs(dbt_project().manifest_path)
    with duckdb.connect(str(snapshot), read_only=True) as bi, duckdb.connect(built_bi.warehouse, read_only=True) as wh:
        tables = dict(bi.execute("select table_name, comment from duckdb_tables()").fetchall())
        marts = _warehouse_marts(built_bi)
        assert set(tables) == marts | {MARTS_INFO_TABLE}
        assert tables["cost_per_token_daily"] == docs["cost_per_token_daily"].description.strip()
        comment = bi.execute(
            "select comment from duckdb_columns() where table_name = 'customer_costs_daily' "
            "and column_name = 'gross_margin'"
        ).fetchall()[0][0]
        assert comment == docs["customer_costs_daily"].columns["gross_margin"].strip() != ""
        info = dict(bi.execute(f"select mart, row_count from {MARTS_INFO_TABLE}").fetchall())
        for mart in marts:
            rows = wh.execute(f"select count(*) from {mart}").fetchall()[0][0]
            assert info[mart] == rows, mart
            assert rows > 0 or mart not in CORE_MARTS, mart
            assert bi.execute(f"select count(*) from {mart}").fetchall()[0][0] == rows


def _hand_warehouse(path: Path, rows: list[tuple[str, str]]) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create or replace table costs (usage_date date, cost decimal(38,12))")
        con.executemany("insert into costs values (?, ?)", rows)
        con.execute("create or replace table plans (plan varchar, price decimal(38,12))")
        con.execute("insert into plans values ('pro', 20)")


def test_a_rerun_replaces_only_the_months_of_its_window(tmp_path: Path) -> None:
    warehouse, out = tmp_path / "w.duckdb", tmp_path / "exports" / "marts"
    _hand_warehouse(warehouse, [("2026-09-30", "1"), ("2026-10-01", "2"), ("2026-10-02", "3")])
    assert export_parquet(warehouse, out, ["costs", "plans"]) == {"costs": 3, "plans": 1}
    september = out / "costs" / "month=2026-09" / "part-0.parquet"
    before = september.stat().st_mtime_ns
    # October is restated to one row; September disappears from the warehouse but is outside the window.
    _hand_warehouse(warehouse, [("2026-10-05", "7")])
    assert export_parquet(warehouse, out, ["costs", "plans"], months=["2026-10", "2026-11"])["costs"] == 1
    assert september.stat().st_mtime_ns == before
    with duckdb.connect() as con:
        rows = con.execute(
            "select month, sum(cost) from read_parquet(?, hive_partitioning = true) group by 1 order by 1",
            [str(out / "costs" / "*" / "*.parquet")],
        ).fetchall()
        assert [(m, str(s)) for m, s in rows] == [("2026-09", "1.000000000000"), ("2026-10", "7.000000000000")]
        # A table without a date column is exported whole, every run.
        plans = con.execute("select plan, price from read_parquet(?)", [str(out / "plans" / "month=all" / "*.parquet")])
        assert [(p, str(v)) for p, v in plans.fetchall()] == [("pro", "20.000000000000")]
    # A full export drops months the table no longer has; no staging folders are left behind.
    export_parquet(warehouse, out, ["costs"])
    assert sorted(p.name for p in (out / "costs").iterdir()) == ["month=2026-10"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["marts"]


def test_publishing_a_mart_the_warehouse_lacks_says_what_to_do(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    _hand_warehouse(warehouse, [("2026-10-01", "2")])
    with pytest.raises(ValueError, match="no table cost_per_token_daily: build the marts"):
        publish_exports(warehouse, tmp_path / "lake", ["costs", "cost_per_token_daily"])


def test_a_timestamp_mart_is_cut_into_utc_months(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table hourly (hour_start timestamptz, cost decimal(38,12))")
        con.execute(
            "insert into hourly values ('2026-09-30 23:00:00+00', 1), ('2026-10-01 00:00:00-04', 2), "
            "('2026-10-31 23:00:00+00', 3), ('2026-11-01 00:00:00+00', 4)"
        )
    result = publish_exports(warehouse, tmp_path / "lake", ["hourly"], months=["2026-10"])
    # 2026-10-01 00:00 in New York is 04:00 UTC: October holds costs 2 and 3.
    assert result.warehouse_rows_in_months == result.parquet_rows_in_months == {"hourly": 2}
    with duckdb.connect() as con:
        exported = con.execute(
            "select sum(cost) from read_parquet(?)", [str(exports_dir(tmp_path / "lake") / "hourly" / "*" / "*.parquet")]
        ).fetchall()[0][0]
    assert str(exported) == "5.000000000000"


def _snapshot_rows(snapshot: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(snapshot), read_only=True) as con:
        return [tuple(str(v) for v in row) for row in con.execute(sql).fetchall()]


def test_a_later_window_replaces_only_its_months_in_marts_duckdb(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    _hand_warehouse(warehouse, [("2026-09-29", "1"), ("2026-09-30", "2"), ("2026-10-01", "3")])
    first = publish_exports(warehouse, tmp_path / "lake", ["costs", "plans"])
    assert first.snapshot_rows == {"costs": 3, "plans": 1}
    # September is restated in the warehouse but lies outside the next window, so the snapshot
    # keeps its first copy; October is restated and November is new; plans (undated) change.
    _hand_warehouse(warehouse, [("2026-09-29", "1"), ("2026-09-30", "9"), ("2026-10-01", "30"),
                                ("2026-10-02", "4"), ("2026-11-01", "5")])
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into plans values ('team', 50)")
    second = publish_exports(warehouse, tmp_path / "lake", ["costs", "plans"], months=["2026-10", "2026-11"])
    assert second.mismatches == []
    assert second.snapshot_rows == second.warehouse_rows == {"costs": 5, "plans": 2}
    assert second.warehouse_rows_in_months == {"costs": 3, "plans": 2}
    snapshot = second.snapshot
    assert _snapshot_rows(snapshot, "select usage_date, cost from costs order by 1") == [
        ("2026-09-29", "1.000000000000"), ("2026-09-30", "2.000000000000"),  # September as first published
        ("2026-10-01", "30.000000000000"), ("2026-10-02", "4.000000000000"), ("2026-11-01", "5.000000000000"),
    ]
    assert _snapshot_rows(snapshot, "select plan, price from plans order by 1") == [
        ("pro", "20.000000000000"), ("team", "50.000000000000")]
    assert _snapshot_rows(snapshot, f"select mart, row_count from {MARTS_INFO_TABLE} order by 1") == [
        ("costs", "5"), ("plans", "2")]
    assert snapshot.stat().st_mode & 0o777 == 0o444
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "marts.duckdb", "w.duckdb"]


def test_marts_duckdb_copies_a_mart_whole_when_a_window_cannot_bring_it_level(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    _hand_warehouse(warehouse, [("2026-09-30", "2"), ("2026-10-01", "3")])
    publish_exports(warehouse, tmp_path / "lake", ["costs", "plans"])
    # A September row vanished in a run whose export never happened; `plans` gained a
    # column; `tiers` is new; `plans` leaves the export list on the last run below.
    _hand_warehouse(warehouse, [("2026-10-01", "3"), ("2026-10-02", "4")])
    with duckdb.connect(str(warehouse)) as con:
        con.execute("alter table plans add column currency varchar default 'USD'")
        con.execute("create table tiers (tier varchar)")
        con.execute("insert into tiers values ('gold'), ('silver')")
    result = publish_exports(warehouse, tmp_path / "lake", ["costs", "plans", "tiers"], months=["2026-10"])
    assert result.snapshot_rows == {"costs": 2, "plans": 1, "tiers": 2}
    assert _snapshot_rows(result.snapshot, "select usage_date, cost from costs order by 1") == [
        ("2026-10-01", "3.000000000000"), ("2026-10-02", "4.000000000000")]
    assert _snapshot_rows(result.snapshot, "select * from plans") == [("pro", "20.000000000000", "USD")]
    publish_exports(warehouse, tmp_path / "lake", ["costs", "tiers"], months=["2026-10"])
    assert _snapshot_rows(result.snapshot, "select table_name from duckdb_tables() order by 1") == [
        (MARTS_INFO_TABLE,), ("costs",), ("tiers",)]


READER = """
import json, pathlib, sys, time
import duckdb
path, stop, out, mode = sys.argv[1:5]
seen, errors, queries = set(), [], 0
held = duckdb.connect(path, read_only=True) if mode == "hold" else None
pathlib.Path(out + ".ready").touch()
while not pathlib.Path(stop).exists():
    try:
        con = held or duckdb.connect(path, read_only=True)
        rows = con.execute("select count(*), sum(fully_loaded_cost)::varchar from cost_per_token_daily").fetchall()
        refreshed = con.execute("select max(refreshed_at)::varchar from _marts_info").fetchall()[0][0]
        seen.add(refreshed)
        queries += 1
        if held is None:
            con.close()
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.05)
pathlib.Path(out).write_text(json.dumps({"queries": queries, "errors": errors[:5], "refreshes_seen": sorted(seen)}))
"""


# A second whole pipeline run (ingestion, dbt build, export): 30 to 60 s on two cores; kept
# in `make test` because it is the promise BI users rely on.
def test_bi_readers_keep_marts_duckdb_open_while_a_run_writes_the_warehouse(built_bi: Settings, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    readers = {}
    for mode in ("hold", "reopen"):
        out = tmp_path / f"{mode}.json"
        proc = subprocess.Popen([sys.executable, "-c", READER, built_bi.marts_duckdb, str(stop), str(out), mode])
        readers[mode] = (proc, out)
    try:
        deadline = time.monotonic() + 30
        while not all(Path(f"{out}.ready").exists() for _, out in readers.values()):
            assert time.monotonic() < deadline, "the BI readers did not start"
            time.sleep(0.05)
        instance = dg.DagsterInstance.ephemeral()
        report = run_range(built_bi, END, END, instance=instance)  # rebuilds the warehouse: dbt holds it
        time.sleep(0.5)  # let the reopening reader see the new snapshot
    finally:
        stop.touch()
        for proc, _ in readers.values():
            proc.wait(timeout=30)
    held, reopened = (json.loads(out.read_text()) for _, out in readers.values())
    assert held["errors"] == [] and reopened["errors"] == []
    assert held["queries"] > 10 and reopened["queries"] > 10
    # The held connection keeps its consistent snapshot; a new connection gets the new one.
    assert len(held["refreshes_seen"]) == 1
    assert len(reopened["refreshes_seen"]) == 2
    checks = instance.all_logs(report.warehouse_run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    results = {e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data.passed
               for e in checks}
    assert results[EXPORT_CHECK] is True
    assert os.path.exists(built_bi.marts_duckdb)
