"""The dbt project as Dagster assets: staging, intermediate and marts, one run per window.

The partition window reaches SQL only as `min_date` / `max_date` (half-open), which this
asset passes as INFERLEDGER_MIN_DATE / INFERLEDGER_MAX_DATE rather than `--vars`, so that
dbt can reuse its parse of the project from one run to the next (a changed var makes it
re-parse everything). A range of partitions is one dbt invocation (single-run backfill
policy), so a 30-day backfill costs one dbt start-up, not thirty. Every asset here writes the DuckDB
warehouse, so all of them share one concurrency pool of size 1.
"""


import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from packaging import version

from assets.dbt_launcher import LAUNCHER, PYTHON_ENV
from assets.partitions import DAILY, dbt_vars_for_window
from assets.resources import StorageResource
from connectors.lake_remote import is_remote

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"
WAREHOUSE_POOL = "duckdb_warehouse"
# dbt as the pipeline starts it (assets/dbt_launcher.py): the dbt installed beside this
# interpreter, whether or not the venv is on PATH, ready-imported when a run started one.
DBT_EXECUTABLE = str(LAUNCHER)
os.environ[PYTHON_ENV] = sys.executable
# A day's build: seeds, models and their data tests (limited to the window). The unit tests
# check the SQL, not the day's data: they run in CI (tests/warehouse), not every day.
DAILY_BUILD_ARGS = ("build", "--exclude-resource-type", "unit_test")

# dbt asks the network for its version and sends usage stats; neither is allowed here.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DBT_VERSION_CHECK", "false")


# Lake tables whose ingestion asset is not named after the table: lake/fx_rates is written by
# `lake_fx_rates` (the asset `fx_rates` is the dbt seed it starts from).
LAKE_SOURCE_ASSETS = {"fx_rates": "lake_fx_rates"}


class InferledgerDbtTranslator(DagsterDbtTranslator):
    """Lake sources map onto the ingestion assets; models group by layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        name = dbt_resource_props["name"]
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(LAKE_SOURCE_ASSETS.get(name, name))
        return dg.AssetKey(name)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "ingestion"
        fqn = dbt_resource_props.get("fqn", [])
        return "marts" if "marts" in fqn else "warehouse"


def _manifest_is_stale(project: DbtProject) -> bool:
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    # The project's own files only: target/ holds every run's artifacts and is not walked.
    folders = [DBT_PROJECT_DIR / d for d in ("models", "macros", "seeds", "tests")]
    sources = [p for d in folders for ext in ("*.sql", "*.yml", "*.csv") for p in d.rglob(ext)]
    sources += [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    return any(p.stat().st_mtime > built for p in sources if p.exists())


# Beside the kept partial_parse.msgpack: the warehouse path the profile named when it was made.
PARSED_FOR_FILE = "partial_parse.warehouse"


def _parsed_for_path(project: DbtProject) -> Path:
    return project.project_dir / project.target_path / PARSED_FOR_FILE


def _parsed_for(project: DbtProject) -> str | None:
    path = _parsed_for_path(project)
    return path.read_text() if path.exists() else None


def _record_parsed_for(project: DbtProject, warehouse: str) -> None:
    path = _parsed_for_path(project)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # processes loading at once
    staged.write_text(warehouse)
    os.replace(staged, path)


@cache
def dbt_project() -> DbtProject:
    """The dbt project, parsed at load when its manifest is missing or older than the
    project's files, or when the kept parse saw another warehouse than INFERLEDGER_WAREHOUSE.

    dbt re-parses the whole project when the profile differs from its saved parse's, and the
    warehouse path is part of the profile: a run on a warehouse the kept parse did not see
    parsed everything inside its build (a production day: 5.8 s against 1.6 s from the kept
    parse, the warehouse step 25.1 s against 17.7 s). With the warehouse named in the
    environment, as a deployment names it, that parse happens here, when the code location
    loads, and the runs reuse it.
    """
    project = DbtProject(project_dir=DBT_PROJECT_DIR)
    named = os.environ.get("INFERLEDGER_WAREHOUSE")
    if named:
        # As the warehouse asset hands it to dbt, so that the profile is the same.
        os.environ["INFERLEDGER_WAREHOUSE"] = named = str(Path(named).resolve())
    if _manifest_is_stale(project) or (named and _parsed_for(project) != named):
        # Parsing reads the profile, which names the lake and warehouse; any path will do.
        os.environ.setdefault("INFERLEDGER_LAKE", str(Path.cwd() / "data" / "lake"))
        os.environ.setdefault("INFERLEDGER_WAREHOUSE", str(Path.cwd() / "data" / "warehouse.duckdb"))
        DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE).cli(
            ["parse", "--quiet"], target_path=project.target_path
        ).wait()
        _record_parsed_for(project, os.environ["INFERLEDGER_WAREHOUSE"])
    return project


def load_manifest(path: Path) -> dict[str, Any]:
    """The parsed dbt manifest; parsed once per version of the file (the warehouse and the
    export assets of one run both read it: 1.5 MB of JSON). Only the newest versions are
    kept: a long-lived code server would otherwise hold every manifest it ever parsed."""
    return _parsed_manifest(Path(path), Path(path).stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _parsed_manifest(path: Path, _mtime_ns: int) -> dict[str, Any]:
    return json.loads(path.read_text())


def dbt_storage_env(lake: str, local_copy: Path, warehouse: str | Path) -> dict[str, str]:
    """The lake and warehouse as the dbt project reads them (INFERLEDGER_LAKE and
    INFERLEDGER_WAREHOUSE). Set before the code location loads (the CLI does), the project
    is parsed for this warehouse then rather than in the first run's build."""
    return {"INFERLEDGER_LAKE": dbt_lake_location(lake, local_copy),
            "INFERLEDGER_WAREHOUSE": str(Path(warehouse).resolve())}


def dbt_lake_location(lake: str, local_copy: Path, env: dict[str, str] | None = None) -> str:
    """The lake as the dbt target reads it. DuckDB reads the local folder (an S3 lake's copy,
    pulled when the run started: this environment has no httpfs). Spark on a cluster reads
    an S3 lake itself: INFERLEDGER_SPARK_LAKE, else the lake's s3a:// form (hadoop-aws; EMR
    reads s3://, so set the variable there)."""
    env = os.environ if env is None else env
    if is_remote(lake) and env.get("DBT_TARGET") == "spark":
        return env.get("INFERLEDGER_SPARK_LAKE") or "s3a://" + lake.removeprefix("s3://")
    return str(local_copy.resolve())


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
        os.environ.update(dbt_storage_env(storage.lake, storage.lake_path, storage.warehouse))
        window = context.partition_time_window
        window_env = {f"INFERLEDGER_{name.upper()}": value for name, value in
                      dbt_vars_for_window(window.start, window.end).items()}
        warehouse = Path(storage.warehouse)
        seeds = seed_fingerprint()
        # A whole build skips seeds already loaded; a selection (a seed picked in the UI to
        # reload, say) runs as selected.
        full_build = not context.is_subset
        skip_seeds = full_build and seeds_loaded(warehouse, seeds)
        args = [*DAILY_BUILD_ARGS] + (["--exclude", "resource_type:seed"] if skip_seeds else [])
        rebuild_changed_marts(context, dbt, project, warehouse)
        os.environ.update(window_env)
        try:
            invocation = dbt.cli(args, context=context)
            yield from invocation.stream()
        finally:
            for name in window_env:
                os.environ.pop(name, None)
        if full_build and not skip_seeds:
            record_seeds(warehouse, seeds)
        keep_partial_parse(invocation.target_path, project)
        prune_run_targets(Path(invocation.target_path).parent)

    return _warehouse


def rebuild_changed_marts(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                          project: DbtProject, warehouse: Path) -> None:
    """Rebuild, over every day of the lake, the marts whose columns a new release changed,
    and build those it added (changed_marts).

    The marts are incremental with `on_schema_change: fail`: a mart whose contract gained a
    column or changed a type cannot take the day's rows, and altering its table in place
    would leave the days already built computed the old way. So before the day's build, a
    mart whose table no longer matches its contract is rebuilt from the lake with
    `--full-refresh`, run window unset, together with the tables and views it reads (the
    other marts it reads already hold every day). Runs once: afterwards the table matches.
    DuckDB target only; on Spark, rebuild with `dbt build --full-refresh` (docs/SCALE.md).
    """
    if os.environ.get("DBT_TARGET", "duckdb") != "duckdb" or not warehouse.exists():
        return
    manifest = load_manifest(project.manifest_path)
    changed = changed_marts(manifest, warehouse)
    if not changed:
        return
    for mart, differences in changed.items():
        what = "it is new in this release" if differences == ["new mart"] else \
            f"its columns changed in this release ({'; '.join(differences)})"
        context.log.warning(f"{mart}: {what}; building it from the lake over every day")
    selection = full_history_selection(manifest, changed)
    target = project.target_path / f"warehouse-rebuild-{context.run.run_id[:8]}"
    dbt.cli(["run", "--full-refresh", "--select", " ".join(selection)], target_path=target).wait()


def _incremental_marts(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {uid: node for uid, node in manifest["nodes"].items()
            if node["resource_type"] == "model"
            and node["config"].get("materialized") == "incremental"
            and node["config"].get("contract", {}).get("enforced")}


def changed_marts(manifest: Mapping[str, Any], warehouse: Path) -> dict[str, list[str]]:
    """Marts built in this warehouse whose table's columns differ from their contract, and
    marts new to a warehouse built before: mart name -> what differs. DuckDB itself spells
    the contract's types (`string` is VARCHAR), so a match is exact and a rebuilt mart
    never shows as changed again."""
    import duckdb

    changed: dict[str, list[str]] = {}
    marts = list(_incremental_marts(manifest).values())
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [dict(con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [node["schema"], node["alias"]]).fetchall()) for node in marts]
        built_before = any(tables)
        for node, have in zip(marts, tables, strict=True):
            if not have:
                # New in this release. In a warehouse that holds days already, a build of
                # the run window alone would leave it without them (and what reads its
                # history, wrong): it is built over every day. A new warehouse's build
                # creates it with the rest.
                if built_before:
                    changed[node["name"]] = ["new mart"]
                continue
            contract = [(c["name"], c["data_type"]) for c in node["columns"].values()]
            spelled = con.sql("select " + ", ".join(f'cast(null as {t}) as "{n}"' for n, t in contract))
            want = {n: str(t) for n, t in zip(spelled.columns, spelled.types, strict=True)}
            differences = [f"{n} {have[n]} -> {t}" for n, t in want.items() if n in have and have[n] != t]
            differences += [f"new column {n}" for n in want if n not in have]
            differences += [f"column {n} dropped" for n in have if n not in want]
            if differences:
                changed[node["name"]] = differences
    return changed


def full_history_selection(manifest: Mapping[str, Any], marts: Iterable[str]) -> list[str]:
    """The marts and every model upstream of them but the other incremental marts, by name."""
    nodes = manifest["nodes"]
    incremental = _incremental_marts(manifest)
    todo = [uid for uid, node in incremental.items() if node["name"] in set(marts)]
    chosen = set(todo)
    while todo:
        for parent in nodes[todo.pop()]["depends_on"]["nodes"]:
            if parent.startswith("model.") and parent not in chosen and parent not in incremental:
                chosen.add(parent)
                todo.append(parent)
    return sorted(nodes[uid]["name"] for uid in chosen)


SEED_STATE_TABLE = "inferledger_seed_state"


def seed_fingerprint() -> str:
    """A hash of the seeds as dbt would load them: their CSVs, their .yml and the project file."""
    digest = hashlib.sha256()
    files = sorted((DBT_PROJECT_DIR / "seeds").glob("*.*")) + [DBT_PROJECT_DIR / "dbt_project.yml"]
    for path in files:
        if path.suffix in (".csv", ".yml"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def seeds_loaded(warehouse: Path, fingerprint: str) -> bool:
    """Whether the warehouse holds these seeds, loaded and tested by an earlier build.

    Seeds are reference data that change with a deploy or an edit, not with the day: the
    daily build loads them, and runs their 46 tests, only when they changed (or the
    warehouse is new), which saves ~56 of its ~200 dbt nodes.
    """
    if not warehouse.exists():
        return False
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        if not table_exists(con, SEED_STATE_TABLE):
            return False
        rows = con.sql(f"select fingerprint from {SEED_STATE_TABLE}").fetchall()
    return rows == [(fingerprint,)]


def table_exists(con: Any, table: str) -> bool:
    """Whether the DuckDB connection's database has this table."""
    return con.sql("select count(*) from information_schema.tables where table_name = ?",
                   params=[table]).fetchall()[0][0] > 0


def record_seeds(warehouse: Path, fingerprint: str) -> None:
    import duckdb

    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"create or replace table {SEED_STATE_TABLE} as select ? as fingerprint",
                    [fingerprint])


def keep_partial_parse(run_target: Path, project: DbtProject) -> None:
    """Make this run's parse of the project the one the next run starts from.

    dagster-dbt copies the project's target/partial_parse.msgpack into each run's own target
    folder. The copy made by `dbt parse` at load time saw another lake and warehouse path
    (the profile), so every run would re-parse the whole project; after one run, the next
    reuses its parse and re-reads only changed files.
    """
    made = Path(run_target) / "partial_parse.msgpack"
    if not made.exists():
        return
    kept = project.project_dir / project.target_path / "partial_parse.msgpack"
    staged = kept.with_suffix(".msgpack.tmp")
    shutil.copyfile(made, staged)
    os.replace(staged, kept)
    _record_parsed_for(project, os.environ["INFERLEDGER_WAREHOUSE"])


class WarehouseDbtResource(DbtCliResource):
    """dagster-dbt's dbt CLI resource without two start-up costs it pays on every run.

    Before it starts dbt, `DbtCliResource.cli` runs `dbt --version` in a subprocess to learn
    which engine is installed (about 4 s here: a second Python importing dbt), then loads
    dbt's macros in this process to build an adapter, which it only uses to fetch row counts
    and column metadata on request (about 4 s more). The dbt beside this interpreter is the
    dbt-core package installed with it, and we fetch no metadata, so neither is needed.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None


# dagster-dbt gives every run its own target folder (manifest, run results, logs: ~10 MB);
# the newest are kept for inspection, the older removed so a daily pipeline's disk stays flat.
KEPT_RUN_TARGETS = 10


def prune_run_targets(target_root: Path, keep: int = KEPT_RUN_TARGETS) -> None:
    runs = sorted((p for p in target_root.glob("warehouse-*") if p.is_dir()),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in runs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def dbt_resource() -> DbtCliResource:
    return WarehouseDbtResource(project_dir=dbt_project(), dbt_executable=DBT_EXECUTABLE)
