"""The dbt project as Dagster assets: staging, intermediate and marts, one run per window.

The partition window reaches SQL only as `--vars {min_date, max_date}` (half-open), and
a range of partitions is one dbt invocation (single-run backfill policy), so a 30-day
backfill costs one dbt start-up, not thirty. Every asset here writes the DuckDB
warehouse, so all of them share one concurrency pool of size 1.
"""


import json
import os
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from assets.partitions import DAILY, dbt_vars_for_window
from assets.resources import StorageResource

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"
WAREHOUSE_POOL = "duckdb_warehouse"
# The dbt installed beside this interpreter, whether or not the venv is on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
# A day's build: seeds, models and their data tests (limited to the window). The unit tests
# check the SQL, not the day's data: they run in CI (tests/warehouse), not every day.
DAILY_BUILD_ARGS = ("build", "--exclude-resource-type", "unit_test")

# dbt asks the network for its version and sends usage stats; neither is allowed here.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DBT_VERSION_CHECK", "false")


class InferledgerDbtTranslator(DagsterDbtTranslator):
    """Lake sources map onto the ingestion assets; models group by layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return dg.AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "ingestion"
        fqn = dbt_resource_props.get("fqn", [])
        return "marts" if "marts" in fqn else "warehouse"


def _manifest_is_stale(project: DbtProject) -> bool:
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    sources = (p for ext in ("*.sql", "*.yml", "*.csv") for p in DBT_PROJECT_DIR.rglob(ext))
    return any(p.stat().st_mtime > built for p in sources if "target" not in p.parts)


@cache
def dbt_project() -> DbtProject:
    """The dbt project, its manifest parsed when missing or older than the project's files."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR)
    if _manifest_is_stale(project):
        # Parsing reads the profile, which names the lake and warehouse; any path will do.
        os.environ.setdefault("INFERLEDGER_LAKE", str(Path.cwd() / "data" / "lake"))
        os.environ.setdefault("INFERLEDGER_WAREHOUSE", str(Path.cwd() / "data" / "warehouse.duckdb"))
        DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE).cli(
            ["parse", "--quiet"], target_path=project.target_path
        ).wait()
    return project


@cache
def warehouse_assets() -> dg.AssetsDefinition:
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=InferledgerDbtTranslator(),
        pool=WAREHOUSE_POOL,
        name="warehouse",
    )
    def _warehouse(context: dg.AssetExecutionContext, dbt: DbtCliResource, storage: StorageResource):
        # dbt reads the lake and writes the warehouse named by the storage resource.
        os.environ["INFERLEDGER_LAKE"] = str(Path(storage.lake).resolve())
        os.environ["INFERLEDGER_WAREHOUSE"] = str(Path(storage.warehouse).resolve())
        window = context.partition_time_window
        dbt_vars = dbt_vars_for_window(window.start, window.end)
        yield from dbt.cli(
            [*DAILY_BUILD_ARGS, "--vars", json.dumps(dbt_vars)], context=context
        ).stream()

    return _warehouse


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project(), dbt_executable=DBT_EXECUTABLE)
