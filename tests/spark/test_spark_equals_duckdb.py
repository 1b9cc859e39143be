"""The same dbt project on Spark and on DuckDB, over the same lake, gives the same marts.

One small generated day (the demo company: CUR and FOCUS bills, DCGM telemetry, LiteLLM
logs, the fleet inventory) is ingested through the connectors into a hive-partitioned
Parquet lake. The dbt project is then built twice over it: the `duckdb` target
(delete+insert incrementals) and the `spark` target (dbt-spark in session mode, pyspark
local, insert_overwrite incrementals partitioned by day). Every mart must hold the same rows,
every money column the same amounts to the cent.

Spark's start-up and its per-model overhead make this the slowest test of the warehouse
(tens of seconds on 2 cores); the day is kept small so the cost is Spark's, not the data's.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connectors import dcgm, lake, sources
from connectors.fx import load_fx_rates
from connectors.landing import LocalStore
from pipelines.demo.generate import generate

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt"
DAY = date(2026, 10, 1)
WINDOW = {"min_date": DAY.isoformat(), "max_date": (DAY + timedelta(days=1)).isoformat()}
MARTS = (
    "fct_billing_line_items",
    "fct_inference_costs_hourly",
    "fct_inference_costs_daily",
    "cost_per_token_daily",
    "feature_costs_daily",
    "customer_costs_daily",
    "billing_reconciliation_daily",
    "cache_savings_daily",
    "self_hosting_break_even_daily",
    "gpu_rates_daily",
    "supplier_spend_daily",
    "supplier_concentration",
)
CENT = Decimal("0.01")

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime")


def ingest_day(landing: Path, lake_root: Path, day: date) -> None:
    """What the ingestion assets write for one day, through the same connectors."""
    store = LocalStore(landing)
    fleet = sources.inventory_snapshot(store)
    lake.write_table(lake_root, "fleet_inventory", day, fleet.rows)
    deployments = frozenset(fleet.rows.get_column("deployment").drop_nulls().to_list())
    lake.write_table(lake_root, "billing_line_items", day, sources.billing_day(store, day).rows)
    lake.write_table(
        lake_root,
        "gateway_requests",
        day,
        sources.gateway_day(store, day, self_hosted_deployments=deployments).rows,
    )
    telemetry = sources.telemetry_day(store, day)
    lake.write_table(lake_root, "gpu_hourly", day, dcgm.downsample_hourly(telemetry.rows))
    from assets.prices import write_fx_rates  # the lake_fx_rates asset's writer

    write_fx_rates(lake_root, load_fx_rates(store))


def dbt_build(root: Path, target: str, env: dict[str, str]) -> None:
    """Seeds and models (the dbt tests run in the warehouse suite) on one target."""
    from dbt.cli.main import dbtRunner  # heavy: imported when the test runs

    args = [
        "build",
        "--exclude-resource-type", "test", "unit_test",
        "--target", target,
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(root / f"target-{target}"),
        "--log-path", str(root / f"logs-{target}"),
        "--vars", json.dumps(WINDOW),
        "--quiet",
    ]
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        result = dbtRunner().invoke(args)
    failures = [
        f"{r.node.name}: {r.message}"
        for r in (result.result or [])
        if str(r.status) not in ("success", "pass")
    ]
    assert result.success, f"dbt build on {target} failed: {result.exception or failures}"


def mart_rows(con: duckdb.DuckDBPyConnection, relation: str, columns: list[str]) -> list[tuple]:
    """The rows sorted by their exact columns (keys, counts, text), floats and money aside."""
    rows = con.sql(f"select {', '.join(columns)} from {relation}").fetchall()
    return sorted(rows, key=lambda row: repr([v for v in row if not isinstance(v, float | Decimal)]))


def same(expected: Any, actual: Any) -> bool:
    """Money to the cent; ratios (doubles) to 1 part in 10^4, because Spark keeps only 6
    decimals of a decimal product or quotient wider than 38 digits (a sub-cent hosted-API
    cost), which moves a ratio computed from it in its 6th significant digit."""
    if isinstance(expected, Decimal) and isinstance(actual, Decimal):
        return abs(expected - actual) < CENT / 2
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(expected, actual, rel_tol=1e-4, abs_tol=1e-9)
    return expected == actual


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spark_vs_duckdb")
    generate(root / "landing", seed=5, start=DAY, days=1, requests_per_day=300, gpus=27)
    ingest_day(root / "landing", root / "lake", DAY)
    env = {
        "INFERLEDGER_LAKE": str(root / "lake"),
        "INFERLEDGER_WAREHOUSE": str(root / "warehouse.duckdb"),
        "INFERLEDGER_SPARK_WAREHOUSE": str(root / "spark"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
    }
    dbt_build(root, "duckdb", env)
    dbt_build(root, "spark", env)
    return root


def spark_table(root: Path, name: str) -> str:
    """Spark's managed table, read back from its Parquet files (partition folders included)."""
    files = root / "spark" / "tables" / "inferledger.db" / name / "**" / "*.parquet"
    return f"read_parquet('{files}', hive_partitioning = true)"


@pytest.mark.parametrize("mart", MARTS)
def test_mart_is_the_same_on_spark_and_duckdb(built: Path, mart: str) -> None:
    with duckdb.connect(str(built / "warehouse.duckdb")) as con:
        described = con.sql(f"describe {mart}").fetchall()
        columns = [row[0] for row in described]
        # Spark stores the partition columns as folder names: cast them back to the contract.
        typed = [f"cast({name} as {dtype}) as {name}" for name, dtype, *_ in described]
        expected = mart_rows(con, mart, columns)
        actual = mart_rows(con, f"(select {', '.join(typed)} from {spark_table(built, mart)})", columns)
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual):
        differing = [
            f"{name}: duckdb {w!r}, spark {g!r}"
            for name, w, g in zip(columns, want, got)
            if not same(w, g)
        ]
        assert not differing, f"{mart} row {dict(zip(columns, want))}: {differing}"


def test_the_day_has_something_to_compare(built: Path) -> None:
    """Guards the comparison against passing on empty marts: the day's costs are there."""
    with duckdb.connect(str(built / "warehouse.duckdb")) as con:
        lines, billed, allocated = con.sql(
            "select count(*), sum(billed_in_scope), sum(allocated + idle + shared + unattributed) "
            "from billing_reconciliation_daily"
        ).fetchall()[0]
        requests = con.sql("select sum(requests) from fct_inference_costs_hourly").fetchall()[0][0]
        rated = con.sql("select count(*) from gpu_rates_daily where list_cost > 0").fetchall()[0][0]
    assert lines > 0 and requests > 0 and rated > 0
    assert billed > 0
    assert abs(billed - allocated) < CENT / 2
