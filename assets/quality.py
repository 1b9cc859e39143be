"""Data quality of the lake as Dagster asset checks (Great Expectations), and mart freshness.

One GX Core suite per lake table runs on each day partition the run wrote: keys present and
unique, ranges (tokens >= 0, costs finite), allowed values (charge categories, currencies,
statuses), the row count against the trailing week's manifests, and freshness (the data
reaches the end of its day). GX runs the suite as SQL on DuckDB over the partition's
Parquet files (duckdb-engine), so it never holds a partition in memory; its import takes
seconds, so it is imported inside the check, with an ephemeral context (nothing is written
to disk).

The suites of the tables every cost depends on (the bill and the gateway requests) are
blocking: a failed partition stops the dbt models downstream in the same run, so a bad
partition never reaches the marts. dbt tests reach Dagster as asset checks through
dagster-dbt; every mart also carries a freshness policy (`with_mart_freshness`).
"""

import statistics
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from assets.partitions import DAILY, days_in_window
from assets.resources import StorageResource
from connectors import lake

CHARGE_CATEGORIES = ["Usage", "Purchase", "Tax", "Credit", "Adjustment"]
GATEWAY_STATUSES = ["success", "failure"]
TOKEN_COLUMNS = [
    "input_uncached_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
]
# Finite money: anything beyond a trillion in one line is a parsing error, not a bill.
MONEY_LIMIT = 1e12
# A day's row count outside [LOW x, HIGH x] the trailing week's median is suspicious.
ROW_COUNT_LOW, ROW_COUNT_HIGH = 0.2, 5.0
TRAILING_DAYS = 7
SAMPLE_KEYS = 5

# A check partitioned like its asset validates exactly the days a run wrote; the parameter
# is marked preview in Dagster 1.13 and we rely on it knowingly.
warnings.filterwarnings("ignore", message="Specifying a partitions_def", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", message="Function `Definitions.map_resolved_asset_specs`", category=dg.PreviewWarning)
# Marts are rebuilt daily by the 06:00 UTC schedule: warn after 26 hours, fail after 30.
MART_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=30), warn_window=timedelta(hours=26)
)


@dataclass(frozen=True)
class Suite:
    """What one lake table must satisfy; expectations are built lazily (GX imports late)."""

    table: str
    key_columns: list[str]
    unique_columns: list[str]
    timestamp_column: str
    # Hours before the end of its day the newest row must reach (None: no freshness rule).
    fresh_within_hours: float | None
    blocking: bool
    extra: Callable[[Any], list[Any]] = field(default=lambda gxe: [])


def _billing_extra(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="charge_category", value_set=CHARGE_CATEGORIES),
        # GX has no regex for the duckdb dialect: the rows whose currency is not three
        # capital letters, as SQL (braces doubled: GX formats the query).
        gxe.UnexpectedRowsExpectation(
            unexpected_rows_query="select * from {batch} where not regexp_full_match(billing_currency, '[A-Z]{{3}}')",
            description="billing_currency is an ISO 4217 code (three capital letters)",
        ),
        *[
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=-MONEY_LIMIT, max_value=MONEY_LIMIT)
            for c in ("billed_cost", "effective_cost")
        ],
    ]


def _gateway_extra(gxe: Any) -> list[Any]:
    return [
        *[gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in TOKEN_COLUMNS],
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=GATEWAY_STATUSES),
        gxe.ExpectColumnValuesToBeBetween(
            column="gateway_reported_cost", min_value=0, max_value=MONEY_LIMIT
        ),
    ]


def _gpu_extra(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeBetween(column="busy_fraction", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="energy_wh", min_value=0),
    ]


SUITES = {
    "billing_line_items": Suite(
        "billing_line_items",
        key_columns=["source", "source_line_id", "provider", "charge_period_start", "charge_category",
                     "billing_currency", "effective_cost"],
        unique_columns=["source", "source_line_id"],
        timestamp_column="charge_period_start",
        fresh_within_hours=None,  # daily FOCUS lines start at midnight: presence is the rule
        blocking=True,
        extra=_billing_extra,
    ),
    "gateway_requests": Suite(
        "gateway_requests",
        key_columns=["request_id", "ts_start", "status", "model_served"],
        unique_columns=["request_id"],
        timestamp_column="ts_start",
        fresh_within_hours=6,
        blocking=True,
        extra=_gateway_extra,
    ),
    "gpu_hourly": Suite(
        "gpu_hourly",
        key_columns=["hour_start", "hostname", "gpu_uuid"],
        unique_columns=["hour_start", "hostname", "gpu_uuid", "mig_instance_id"],
        timestamp_column="hour_start",
        fresh_within_hours=6,
        blocking=False,
        extra=_gpu_extra,
    ),
    "gpu_samples": Suite(
        "gpu_samples",
        key_columns=["ts", "hostname", "metric"],
        unique_columns=[],  # two exporters may report the same sample; dedup is downstream
        timestamp_column="ts",
        fresh_within_hours=6,
        blocking=False,
    ),
    "fleet_inventory": Suite(
        "fleet_inventory",
        key_columns=["hostname", "provider", "resource_id"],
        unique_columns=["hostname", "resource_id", "valid_from"],
        timestamp_column="valid_from",
        fresh_within_hours=None,  # a snapshot of the inventory, not events of the day
        blocking=False,
    ),
}


def trailing_row_counts(lake_root: Path, table: str, day: date) -> list[int]:
    """Rows written on the days of the week before `day`, from the ingestion manifests."""
    counts = []
    for i in range(1, TRAILING_DAYS + 1):
        path = lake.partition_dir(lake_root, f"_manifests/{table}", day - timedelta(days=i)) / "part-0.parquet"
        if path.exists():
            counts.append(int(pl.read_parquet(path).get_column("rows_written").sum()))
    return counts


def _expectations(suite: Suite, day: date, history: list[int], rows: int) -> list[Any]:
    import great_expectations.expectations as gxe

    if rows == 0:
        # Nothing arrived: only the row count can say whether that is wrong (a source that
        # delivered in the trailing week and stopped), not a source the deployment does not
        # use (no history: a bill-only day passes).
        floor = int(statistics.median(history) * ROW_COUNT_LOW) if history else 0
        return [gxe.ExpectTableRowCountToBeBetween(min_value=floor)]
    out: list[Any] = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in suite.key_columns]
    if len(suite.unique_columns) == 1:
        # Pass or fail needs only the distinct count (a 10 M-request day: ~3 CPU s against ~6
        # for the per-row uniqueness); a failure is run again as ExpectColumnValuesToBeUnique
        # for its count and keys (_for_detail).
        out.append(gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column=suite.unique_columns[0], min_value=1.0))
    elif suite.unique_columns:
        out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=suite.unique_columns))
    if history:
        median = statistics.median(history)
        out.append(gxe.ExpectTableRowCountToBeBetween(
            min_value=int(median * ROW_COUNT_LOW), max_value=int(median * ROW_COUNT_HIGH) + 1
        ))
    else:
        out.append(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    if suite.fresh_within_hours is not None:
        day_end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        out.append(gxe.ExpectColumnMaxToBeBetween(
            column=suite.timestamp_column,
            min_value=day_end - timedelta(hours=suite.fresh_within_hours),
            max_value=day_end,
        ))
    return out + suite.extra(gxe)


def _for_detail(config: Any) -> Any:
    """The expectation that reports a failed one's offending rows: a unique proportion
    below 1 as the per-row uniqueness (its count and the duplicated keys)."""
    import great_expectations.expectations as gxe

    if config.type == "expect_column_proportion_of_unique_values_to_be_between":
        return gxe.ExpectColumnValuesToBeUnique(column=config.kwargs["column"])
    return config.to_domain_obj()


def _gx_reads_duckdb() -> None:
    """Let GX's SQL engine run on DuckDB (duckdb-engine), once per process.

    GX 1.24's SqlAlchemyExecutionEngine.execute_query closes its connection before the
    caller fetches the rows. Other drivers buffer them; duckdb-engine's cursor is gone with
    its connection, so every metric comes back empty and each expectation fails with "list
    index out of range" (great_expectations issue #10738). For DuckDB engines only, the rows
    are fetched while the connection is open; every other engine keeps GX's own method.
    """
    from great_expectations.execution_engine.sqlalchemy_execution_engine import (
        SqlAlchemyExecutionEngine,
    )

    original = SqlAlchemyExecutionEngine.execute_query
    if getattr(original, "fetches_before_close", False):
        return

    def execute_query(self: Any, query: Any) -> Any:
        if self.engine.dialect.name != "duckdb":
            return original(self, query)
        with self.get_connection() as connection:
            return self._execute_query_with_recovery(connection, query).freeze()()

    execute_query.fetches_before_close = True  # type: ignore[attr-defined]
    SqlAlchemyExecutionEngine.execute_query = execute_query


def _sample_key(row: dict[str, Any], columns: list[str]) -> str:
    return "|".join("null" if row.get(c) is None else str(row.get(c)) for c in columns)


# GX probes at import for the back ends it can run expectations on and imports those that
# are installed. dbt-spark brings pyspark here: ~0.5 s of the ~4 s GX import (CPU, in every
# process that runs a check) for an engine these suites never use: they run on DuckDB. No
# code of ours imports pyspark in this process (dbt runs in its own), so GX is imported
# with it hidden. (The BigQuery client stays: the GCP billing reader may be importing it
# in the other ingestion thread at that moment.)
_GX_HIDDEN = ("pyspark",)


def _import_gx() -> None:
    if "great_expectations" in sys.modules:
        return
    hidden = [name for name in _GX_HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import great_expectations
        import great_expectations.expectations  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def validate_partition(lake_root: Path, table: str, day: date) -> dict[str, Any]:
    """Run the table's suite on one day partition; returns a summary a person can act on.

    GX evaluates the suite as SQL on DuckDB over the partition's Parquet files: each
    expectation is a scan of the columns it names, so a day of 10 M requests or 35 M
    telemetry samples is checked in seconds and in little memory (the pandas engine held
    the whole partition as Python objects: 23 s and 6.5 GB for the 10 M requests alone).
    The suite runs first for pass or fail only; the expectations that failed run again for
    their counts and the keys of up to 20 offending rows.
    """
    _import_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _gx_reads_duckdb()
    suite = SUITES[table]
    files = lake.written_partition_files(lake_root, table, day)
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_sql(f"lake_{table}", connection_string="duckdb:///:memory:")
        .add_query_asset(name=f"{table}_{day.isoformat()}",
                         query=f"select * from read_parquet([{listed}], union_by_name = true)")
        .add_batch_definition_whole_table("partition")
        .get_batch()
    )
    rows = pl.scan_parquet(files).select(pl.len()).collect().item()  # from the footers
    expectations = _expectations(suite, day, trailing_row_counts(lake_root, table, day), rows)
    gx_suite = gx.ExpectationSuite(name=f"{table}_partition")
    for expectation in expectations:
        gx_suite.add_expectation(expectation)
    result = batch.validate(gx_suite, result_format="BOOLEAN_ONLY")
    failures = []
    key_columns = suite.unique_columns or suite.key_columns
    failed = [r.expectation_config for r in result.results if not r.success]
    if failed:
        detail = gx.ExpectationSuite(name=f"{table}_failed",
                                     expectations=[_for_detail(c) for c in failed])
        details = batch.validate(detail, result_format={
            "result_format": "SUMMARY", "unexpected_index_column_names": key_columns})
        for r in details.results:
            if r.success:
                # A unique proportion with no values to count (every key null) fails, and the
                # per-row uniqueness finds nothing: the not-null expectation says it.
                continue
            kwargs = {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"}
            failures.append({
                "expectation": r.expectation_config.type,
                "arguments": {k: str(v) for k, v in kwargs.items()},
                "unexpected_count": r.result.get("unexpected_count"),
                "observed_value": str(r.result["observed_value"]) if "observed_value" in r.result else None,
                "sample_keys": [_sample_key(row, key_columns)
                                for row in (r.result.get("partial_unexpected_index_list") or [])[:SAMPLE_KEYS]],
            })
    return {"table": table, "day": day.isoformat(), "rows": rows, "success": result.success,
            "expectations": len(result.results), "failures": failures}


def _check_days(context: dg.AssetCheckExecutionContext) -> list[date]:
    window = DAILY.time_window_for_partition_key
    keys = context.partition_key_range
    return days_in_window(window(keys.start).start, window(keys.end).end)


def build_lake_check(table: str) -> dg.AssetChecksDefinition:
    """The GX suite of one lake table as a (blocking, where ingestion-critical) asset check."""
    suite = SUITES[table]

    @dg.asset_check(
        asset=table,
        name=f"{table}_expectations",
        blocking=suite.blocking,
        partitions_def=DAILY,
        description=f"Great Expectations suite on each day partition of {table}: keys not null "
        "and unique, ranges, allowed values, row count against the trailing week, freshness."
        + (" Blocking: a failure stops the dbt models downstream." if suite.blocking else ""),
    )
    def _check(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        reports = [validate_partition(storage.lake_path, table, day) for day in _check_days(context)]
        failed = [r for r in reports if not r["success"]]
        return dg.AssetCheckResult(
            passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if not failed else "; ".join(
                f"{r['day']}: " + ", ".join(f"{f['expectation']}({f['arguments'].get('column', '')}) "
                                            f"x{f['unexpected_count']}" for f in r["failures"])
                for r in failed
            )[:2000],
            metadata={
                "partitions": dg.MetadataValue.int(len(reports)),
                "failed_partitions": dg.MetadataValue.int(len(failed)),
                "rows_validated": dg.MetadataValue.int(sum(r["rows"] for r in reports)),
                "failures": dg.MetadataValue.json([{"day": r["day"], "failures": r["failures"]} for r in failed]),
            },
        )

    return _check


LAKE_CHECKS = [build_lake_check(table) for table in SUITES]


def with_mart_freshness(defs: dg.Definitions) -> dg.Definitions:
    """Every mart (the dbt `marts` group) carries the daily freshness policy."""
    return defs.map_resolved_asset_specs(
        func=lambda spec: dg.apply_freshness_policy(spec, MART_FRESHNESS),
        selection=dg.AssetSelection.groups("marts"),
    )
