"""Four partition runs of the warehouse requested at once against one DuckDB file all succeed.

DuckDB lets one process write a file at a time. In a deployment the `duckdb_warehouse`
pool (size 1, dagster.yaml) serializes the writers; here the runs are started together in
threads with no pool limit, so what keeps them apart is dbt-duckdb's `retries` in the
profile: a dbt that finds the file locked waits and tries again instead of failing.
Slow (four dbt builds that mostly wait on each other; minutes on 2 busy cores): `make bench`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.ingestion import INGESTION_ASSETS
from assets.warehouse import warehouse_assets
from pipelines.config import Settings
from pipelines.definitions import resources
from pipelines.demo.generate import generate
from pipelines.runner import QUIET_RUN_CONFIG

START = date(2024, 6, 3)
DAYS = [START + timedelta(days=i) for i in range(4)]


@pytest.mark.slow
def test_four_partition_runs_at_once_all_succeed_without_lock_errors(tmp_path: Path) -> None:
    generate(tmp_path / "landing", seed=5, start=START, days=len(DAYS), requests_per_day=120, gpus=9)
    settings = Settings(landing=str(tmp_path / "landing"), lake=str(tmp_path / "lake"),
                        warehouse=str(tmp_path / "warehouse.duckdb"))
    res = resources(settings)
    ingested = dg.materialize(INGESTION_ASSETS, resources=res, run_config=QUIET_RUN_CONFIG, tags={
        "dagster/asset_partition_range_start": DAYS[0].isoformat(),
        "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
    })
    assert ingested.success

    def build(day: date) -> tuple[bool, list[str]]:
        # Closed in the thread that opened it (its SQLite storage is bound to that thread).
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([warehouse_assets()], resources=res, instance=instance,
                                    partition_key=day.isoformat(), run_config=QUIET_RUN_CONFIG,
                                    raise_on_error=False)
            return result.success, [e.message for e in result.all_events if e.is_failure]

    with ThreadPoolExecutor(max_workers=len(DAYS)) as pool:
        outcomes = list(pool.map(build, DAYS))
    assert [ok for ok, _ in outcomes] == [True] * 4, [errors for _, errors in outcomes]
    assert not any("lock" in (m or "").lower() for _, errors in outcomes for m in errors)
    with closing(duckdb.connect(settings.warehouse, read_only=True)) as con:
        built_days = con.execute(
            "select distinct usage_date from billing_reconciliation_daily order by 1").fetchall()
    assert [d for (d,) in built_days] == DAYS
