"""BI exports: the marts as Parquet (one file a day, in month folders) and the read-only marts.duckdb snapshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
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


def test_each_run_exports_every_mart_as_monthly_parquet(built_bi: Settings) -> None:
    out = exports_dir(built_bi.lake)
    assert out == Path(built_bi.lake).parent / "exports" / "marts"
    marts = _warehouse_marts(built_bi)
    assert CORE_MARTS <= marts
    assert {p.name for p in out.iterdir()} == marts
    with duckdb.connect(built_bi.warehouse, read_only=True) as con:
        for mart in CORE_MARTS:
            assert sorted(p.name for p in (out / mart).iterdir()) == ["month=2026-10", "month=2026-11"], mart
            days = con.execute(f"select distinct usage_date from {mart} order by 1").fetchall()
            # One file a day, named by the day, in its month's folder.
            assert sorted(f.relative_to(out / mart).as_posix() for f in (out / mart).glob("*/*")) == [
                f"month={d:%Y-%m}/part-{d.isoformat()}.parquet" for (d,) in days], mart
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


def _days(first: str, last: str) -> list[date]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [a + timedelta(days=i) for i in range((b - a).days + 1)]


def test_a_rerun_replaces_only_the_days_of_its_window_and_days_out_of_date(tmp_path: Path) -> None:
    warehouse, out = tmp_path / "w.duckdb", tmp_path / "exports" / "marts"
    _hand_warehouse(warehouse, [("2026-09-29", "5"), ("2026-09-30", "1"), ("2026-10-01", "2"),
                                ("2026-10-02", "3"), ("2026-10-02", "4")])
    assert export_parquet(warehouse, out, ["costs", "plans"]) == {"costs": 5, "plans": 1}
    files = sorted(f.relative_to(out / "costs").as_posix() for f in (out / "costs").glob("*/*"))
    assert files == ["month=2026-09/part-2026-09-29.parquet", "month=2026-09/part-2026-09-30.parquet",
                     "month=2026-10/part-2026-10-01.parquet", "month=2026-10/part-2026-10-02.parquet"]
    mtime = {f: (out / "costs" / f).stat().st_mtime_ns for f in files}
    # The run of 2 October restates it to one row. Outside the window, 29 September is
    # restated with its row count unchanged (a copy keeps what was published: only the
    # window is rewritten), 30 September is gone from the warehouse (its count differs, so
    # its file goes), 1 October is untouched, and 5 October is new (its count differs).
    _hand_warehouse(warehouse, [("2026-09-29", "50"), ("2026-10-01", "2"), ("2026-10-02", "7"),
                                ("2026-10-05", "8")])
    assert export_parquet(warehouse, out, ["costs", "plans"], days=[date(2026, 10, 2)]) == {"costs": 2, "plans": 1}
    after = sorted(f.relative_to(out / "costs").as_posix() for f in (out / "costs").glob("*/*"))
    assert after == ["month=2026-09/part-2026-09-29.parquet", "month=2026-10/part-2026-10-01.parquet",
                     "month=2026-10/part-2026-10-02.parquet", "month=2026-10/part-2026-10-05.parquet"]
    for untouched in ("month=2026-09/part-2026-09-29.parquet", "month=2026-10/part-2026-10-01.parquet"):
        assert (out / "costs" / untouched).stat().st_mtime_ns == mtime[untouched]
    with duckdb.connect() as con:
        rows = con.execute(
            "select month, usage_date, sum(cost) from read_parquet(?, hive_partitioning = true) group by all order by 2",
            [str(out / "costs" / "*" / "*.parquet")],
        ).fetchall()
        assert [(m, str(d), str(s)) for m, d, s in rows] == [
            ("2026-09", "2026-09-29", "5.000000000000"), ("2026-10", "2026-10-01", "2.000000000000"),
            ("2026-10", "2026-10-02", "7.000000000000"), ("2026-10", "2026-10-05", "8.000000000000")]
        # A table without a date column is exported whole, every run.
        plans = con.execute("select plan, price from read_parquet(?)", [str(out / "plans" / "month=all" / "*.parquet")])
        assert [(p, str(v)) for p, v in plans.fetchall()] == [("pro", "20.000000000000")]
    # A full export writes every day again and drops months the table no longer has; an
    # export of the older layout (one file a month) is replaced by day files; no staging
    # folders are left behind.
    (out / "costs" / "month=2026-08").mkdir()
    (out / "costs" / "month=2026-10" / "part-0.parquet").write_bytes(
        (out / "costs" / "month=2026-10" / "part-2026-10-01.parquet").read_bytes())
    assert export_parquet(warehouse, out, ["costs"], days=[date(2026, 10, 9)]) == {"costs": 3}
    assert sorted(f.name for f in (out / "costs" / "month=2026-10").iterdir()) == [
        "part-2026-10-01.parquet", "part-2026-10-02.parquet", "part-2026-10-05.parquet"]
    _hand_warehouse(warehouse, [("2026-10-05", "8")])
    export_parquet(warehouse, out, ["costs"])
    assert sorted(f.relative_to(out / "costs").as_posix() for f in (out / "costs").glob("*/*")) == [
        "month=2026-10/part-2026-10-05.parquet"]
    assert sorted(p.name for p in (out / "costs").iterdir()) == ["month=2026-10"]
    # Beside the tree: only the footers read, kept for the next run (no staging folder).
    assert sorted(p.name for p in out.parent.iterdir()) == [".marts-footers.json", "marts"]


def test_publishing_a_mart_the_warehouse_lacks_says_what_to_do(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    _hand_warehouse(warehouse, [("2026-10-01", "2")])
    with pytest.raises(ValueError, match="no table cost_per_token_daily: build the marts"):
        publish_exports(warehouse, tmp_path / "lake", ["costs", "cost_per_token_daily"])


def test_a_timestamp_mart_is_cut_into_utc_days(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table hourly (hour_start timestamptz, cost decimal(38,12))")
        con.execute(
            "insert into hourly values ('2026-09-30 23:00:00+00', 1), ('2026-10-01 00:00:00-04', 2), "
            "('2026-10-31 23:00:00+00', 3), ('2026-11-01 00:00:00+00', 4)"
        )
    result = publish_exports(warehouse, tmp_path / "lake", ["hourly"], days=_days("2026-10-01", "2026-10-31"))
    # 2026-10-01 00:00 in New York is 04:00 UTC: October's days hold costs 2 and 3.
    assert result.warehouse_rows_in_window == result.parquet_rows_in_window == {"hourly": 2}
    assert result.warehouse_rows == result.parquet_rows == {"hourly": 4}
    out = exports_dir(tmp_path / "lake") / "hourly"
    with duckdb.connect() as con:
        per_file = con.execute(
            "select parse_filename(filename, true), sum(cost)::varchar from read_parquet(?, filename = true) group by 1 order by 1",
            [str(out / "*" / "*.parquet")]).fetchall()
    assert per_file == [("part-2026-09-30", "1.000000000000"), ("part-2026-10-01", "2.000000000000"),
                        ("part-2026-10-31", "3.000000000000"), ("part-2026-11-01", "4.000000000000")]


def _snapshot_rows(snapshot: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(snapshot), read_only=True) as con:
        return [tuple(str(v) for v in row) for row in con.execute(sql).fetchall()]


def test_a_later_window_replaces_only_its_days_in_marts_duckdb(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    _hand_warehouse(warehouse, [("2026-09-29", "1"), ("2026-09-30", "2"), ("2026-10-01", "3")])
    first = publish_exports(warehouse, tmp_path / "lake", ["costs", "plans"])
    assert first.snapshot_rows == {"costs": 3, "plans": 1}
    # 30 September is restated in the warehouse (its row count unchanged) but lies outside the
    # next window, so the snapshot keeps its first copy; 1 October is restated, 2 October and
    # 1 November are new; plans (undated) change.
    _hand_warehouse(warehouse, [("2026-09-29", "1"), ("2026-09-30", "9"), ("2026-10-01", "30"),
                                ("2026-10-02", "4"), ("2026-11-01", "5")])
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into plans values ('team', 50)")
    second = publish_exports(warehouse, tmp_path / "lake", ["costs", "plans"], days=_days("2026-10-01", "2026-10-02"))
    assert second.mismatches == []
    assert second.snapshot_rows == second.warehouse_rows == {"costs": 5, "plans": 2}
    assert second.warehouse_rows_in_window == {"costs": 2, "plans": 2}
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
    # Beside it: the file the first run published (the spare) and the log of refreshed days.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".marts.duckdb.refreshes.json", ".marts.duckdb.spare", "exports", "marts.duckdb", "w.duckdb"]


HOLD_OPEN = """
import pathlib, sys, time
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("select count(*) from costs").fetchall()
pathlib.Path(sys.argv[2] + ".ready").touch()
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.05)
"""


def test_marts_duckdb_alternates_between_two_files_brought_level_in_place(tmp_path: Path) -> None:
    warehouse, lake = tmp_path / "w.duckdb", tmp_path / "lake"
    snapshot, spare = tmp_path / "marts.duckdb", tmp_path / ".marts.duckdb.spare"

    def costs() -> list[tuple]:
        return _snapshot_rows(snapshot, "select usage_date, cost from costs order by 1")

    _hand_warehouse(warehouse, [("2026-10-01", "1")])
    publish_exports(warehouse, lake, ["costs", "plans"])
    file_a = snapshot.stat().st_ino
    # The run of 1-2 October restates the 1st (same row count) and adds the 2nd: no spare
    # yet, so it starts from a copy (file B); the first file becomes the spare.
    _hand_warehouse(warehouse, [("2026-10-01", "10"), ("2026-10-02", "2")])
    publish_exports(warehouse, lake, ["costs", "plans"], days=_days("2026-10-01", "2026-10-02"))
    file_b = snapshot.stat().st_ino
    assert file_b != file_a and spare.stat().st_ino == file_a
    # The run of the 3rd writes file A in place. A missed the previous run: the log says it
    # refreshed the 1st and the 2nd, so the restated 1st (whose row count did not change)
    # is taken again too.
    _hand_warehouse(warehouse, [("2026-10-01", "10"), ("2026-10-02", "2"), ("2026-10-03", "3")])
    third = publish_exports(warehouse, lake, ["costs", "plans"], days=[date(2026, 10, 3)])
    assert third.mismatches == []
    assert (snapshot.stat().st_ino, spare.stat().st_ino) == (file_a, file_b)
    assert costs() == [("2026-10-01", "10.000000000000"), ("2026-10-02", "2.000000000000"),
                       ("2026-10-03", "3.000000000000")]
    assert snapshot.stat().st_mode & 0o777 == spare.stat().st_mode & 0o777 == 0o444
    log = json.loads((tmp_path / ".marts.duckdb.refreshes.json").read_text())
    assert [entry["days"]["costs"] for entry in log] == [None, ["2026-10-01", "2026-10-02"], ["2026-10-03"]]
    # A BI tool still holds file B (the spare) open: the run of the 4th cannot write it, so
    # it starts from a copy of A, and A becomes the spare.
    stop = tmp_path / "stop"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(spare), str(stop)])
    try:
        deadline = time.monotonic() + 30
        while not Path(f"{stop}.ready").exists():
            assert time.monotonic() < deadline and holder.poll() is None, "the BI reader did not start"
            time.sleep(0.05)
        _hand_warehouse(warehouse, [("2026-10-01", "10"), ("2026-10-02", "2"), ("2026-10-03", "3"),
                                    ("2026-10-04", "4")])
        fourth = publish_exports(warehouse, lake, ["costs", "plans"], days=[date(2026, 10, 4)])
    finally:
        stop.touch()
        holder.wait(timeout=30)
    assert fourth.mismatches == []
    assert snapshot.stat().st_ino not in (file_a, file_b) and spare.stat().st_ino == file_a
    assert [d for d, _ in costs()] == ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.wal"))


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
    result = publish_exports(warehouse, tmp_path / "lake", ["costs", "plans", "tiers"], days=[date(2026, 10, 2)])
    assert result.snapshot_rows == {"costs": 2, "plans": 1, "tiers": 2}
    assert _snapshot_rows(result.snapshot, "select usage_date, cost from costs order by 1") == [
        ("2026-10-01", "3.000000000000"), ("2026-10-02", "4.000000000000")]
    assert _snapshot_rows(result.snapshot, "select * from plans") == [("pro", "20.000000000000", "USD")]
    publish_exports(warehouse, tmp_path / "lake", ["costs", "tiers"], days=[date(2026, 10, 2)])
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


def test_a_mart_new_to_marts_duckdb_is_copied_whole_into_each_file_once(tmp_path: Path) -> None:
    warehouse, lake = tmp_path / "w.duckdb", tmp_path / "lake"
    log_path = tmp_path / ".marts.duckdb.refreshes.json"
    _hand_warehouse(warehouse, [("2026-10-01", "1")])
    publish_exports(warehouse, lake, ["costs"])  # file A, without `usage`
    with duckdb.connect(str(warehouse)) as con:  # a release adds the mart `usage`
        con.execute("create table usage (usage_date date, tokens bigint)")
        con.execute("insert into usage values ('2026-10-01', 100), ('2026-10-02', 200)")
    # Neither file has it yet: the run of the 2nd copies it whole into file B, the run of
    # the 3rd whole into A. Each logs only its own day, not a whole copy.
    publish_exports(warehouse, lake, ["costs", "usage"], days=[date(2026, 10, 2)])
    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into usage values ('2026-10-03', 300)")
    publish_exports(warehouse, lake, ["costs", "usage"], days=[date(2026, 10, 3)])
    assert [entry["days"].get("usage") for entry in json.loads(log_path.read_text())] == [
        None, ["2026-10-02"], ["2026-10-03"]]
    # The run of the 4th brings B level by days: the 3rd (the run B missed) and the 4th. The
    # 1st, restated outside every window with its row count unchanged, keeps B's copy: a
    # whole copy (every run's, before this was fixed) would have taken 111.
    with duckdb.connect(str(warehouse)) as con:
        con.execute("update usage set tokens = 111 where usage_date = '2026-10-01'")
        con.execute("insert into usage values ('2026-10-04', 400)")
    fourth = publish_exports(warehouse, lake, ["costs", "usage"], days=[date(2026, 10, 4)])
    assert fourth.mismatches == []
    assert _snapshot_rows(fourth.snapshot, "select usage_date, tokens from usage order by 1") == [
        ("2026-10-01", "100"), ("2026-10-02", "200"), ("2026-10-03", "300"), ("2026-10-04", "400")]
    assert json.loads(log_path.read_text())[-1]["days"]["usage"] == ["2026-10-04"]


def test_published_footers_are_read_once_and_again_when_a_file_changes(tmp_path: Path) -> None:
    warehouse, out = tmp_path / "w.duckdb", tmp_path / "exports" / "marts"
    kept = tmp_path / "exports" / ".marts-footers.json"
    _hand_warehouse(warehouse, [("2026-10-01", "1"), ("2026-10-02", "2"), ("2026-10-02", "3")])
    export_parquet(warehouse, out, ["costs"])
    assert json.loads(kept.read_text())["files"] == {}  # nothing was published before it
    assert export_parquet(warehouse, out, ["costs"], days=[date(2026, 10, 3)]) == {"costs": 0}
    day1, day2 = (out / "costs" / "month=2026-10" / f"part-2026-10-0{d}.parquet" for d in (1, 2))
    footers = json.loads(kept.read_text())
    # Read by the second run: the rows of each day's file and its columns.
    assert {Path(name).name: entry[3] for name, entry in footers["files"].items()} == {
        "part-2026-10-01.parquet": 1, "part-2026-10-02.parquet": 2}
    assert footers["schemas"] == [[["duckdb_schema", None], ["usage_date", "DATE"], ["cost", "DECIMAL(38,12)"]]]
    # The next run trusts what was kept for a file that did not change: told (falsely) that
    # the 1st has 5 rows, it takes the 1st again, as for a day whose count differs.
    footers["files"][str(day1)][3] = 5
    kept.write_text(json.dumps(footers))
    before = {f: f.stat().st_ino for f in (day1, day2)}
    export_parquet(warehouse, out, ["costs"], days=[date(2026, 10, 3)])
    assert day1.stat().st_ino != before[day1] and day2.stat().st_ino == before[day2]
    # A file replaced by someone else (one row instead of two) is read again, found short,
    # and written again from the warehouse.
    shutil.copyfile(day1, day2)
    export_parquet(warehouse, out, ["costs"], days=[date(2026, 10, 3)])
    with duckdb.connect() as con:
        assert con.execute("select count(*) from read_parquet(?)", [str(day2)]).fetchall() == [(2,)]
    # Unreadable kept footers are no footers: every file is read.
    kept.write_text("{not json")
    assert export_parquet(warehouse, out, ["costs"], days=[date(2026, 10, 3)]) == {"costs": 0}
    assert len(json.loads(kept.read_text())["files"]) == 2
