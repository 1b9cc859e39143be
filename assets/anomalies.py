"""The `cost_anomalies` table: cost spikes, drifts and new spenders, with their incidents.

Daily series come from the marts (`fct_inference_costs_daily`, `cost_per_token_daily`);
hourly series from the gateway requests in the lake, priced at the rates the marts already
know (each deployment's busy cost per token of the latest earlier day), so a runaway
customer is seen within the hour instead of when the bill lands a day or two later.

The detection itself is `assets.anomaly_detection` (no Dagster there). This asset writes
the warehouse, so it shares the warehouse's concurrency pool; a run replaces the rows of
its window's days, and reruns give the same rows and dedup keys.
"""

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import duckdb
import polars as pl

from assets import anomaly_detection as ad
from assets.partitions import DAILY
from assets.resources import StorageResource
from assets.warehouse import WAREHOUSE_POOL
from connectors.planned_events import KEY as PLANNED_EVENTS_KEY
from connectors.planned_events import read_planned_events

# Enough history for 8 same-weekday points, or 5 weeks of hours, before the window.
DAILY_LOOKBACK_DAYS = 8 * 7 + 28
HOURLY_LOOKBACK_DAYS = 35
HOURLY_DIMENSIONS = ("provider", "deployment", "feature", "customer")

TABLE = "cost_anomalies"
TABLE_DDL = f"""
create table if not exists {TABLE} (
    period_start timestamptz not null,
    usage_date date not null,
    grain varchar not null,
    metric varchar not null,
    dimension varchar not null,
    key varchar not null,
    actual decimal(38, 12),
    expected decimal(38, 12),
    lower decimal(38, 12),
    upper decimal(38, 12),
    score double,
    impact_usd decimal(38, 12),
    impact_pct double,
    rule varchar not null,
    direction varchar not null,
    severity varchar not null,
    root_causes varchar not null,
    explained_by varchar,
    dedup_key varchar not null,
    status varchar not null,
    detected_at timestamptz not null
)
"""
MONEY_COLUMNS = ("actual", "expected", "lower", "upper", "impact_usd")


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def _series_sql(source: str, period: str, dimensions: dict[str, str], value: str) -> str:
    """One query for the total and one series per key of each dimension (ad.series_from_leaves
    in SQL, with grouping sets): `dimensions` maps each dimension to its column in `source`."""
    sets = ", ".join([f"({period})", *(f"({period}, {col})" for col in dimensions.values())])
    dimension = "case " + " ".join(f"when grouping({col}) = 0 then '{dim}'" for dim, col in dimensions.items()) + " else 'total' end"
    key = "case " + " ".join(f"when grouping({col}) = 0 then {col}" for col in dimensions.values()) + f" else '{ad.TOTAL_KEY}' end"
    return f"""
        select period, dimension, key, actual from (
            select {period} as period, {dimension} as dimension, {key} as key,
                   cast(sum({value}) as double) as actual
            from {source}
            group by grouping sets ({sets})
        ) series
        where key is not null and (dimension = 'total' or key <> '{ad.NOT_A_KEY}')
    """


def _that_can_alert_sql(series: str, min_span: float | None, keep: str = "dimension = 'total'") -> str:
    """`series` (period, dimension, key, actual) without the series whose values, with zero,
    span less than `min_span`: they cannot alert (ad._that_can_alert, which the detector
    applies anyway), and most series of a long lookback are such small ones. The rows
    `keep` selects stay whatever their span: the total, so the detector still sees the
    first period with data, which the history rules count from."""
    if min_span is None:
        return series
    return f"""
        select period, dimension, key, actual from (
            select *, greatest(max(actual) over keyed, 0) - least(min(actual) over keyed, 0) as span
            from ({series}) all_series
            window keyed as (partition by dimension, key)
        ) spans
        where {keep} or span >= {float(min_span)!r}
    """


def _as_observations(series: pl.DataFrame, metric: str) -> pl.DataFrame:
    return series.select(
        "period", metric=pl.lit(metric), dimension="dimension", key="key", actual="actual",
        volume=pl.lit(None, pl.Float64),
    )


DAILY_LEAF_COLUMNS = {"provider": "provider", "model": "model", "deployment": "deployment",
                      "customer": "customer_id", "feature": "feature"}


def daily_inputs(con: duckdb.DuckDBPyConnection, start: date, end: date, *, min_span: float | None = None
                 ) -> tuple[pl.DataFrame, Callable[[], pl.DataFrame]]:
    """Observations (cost per dimension, busy unit cost per model) over [start, end), and a
    function returning the leaf cells (read only when a root-cause walk needs them). Cost
    series that cannot alert at `min_span` dollars are left out (_that_can_alert_sql); the
    total and each model's cost (unit-cost causes read it) stay.

    Both come from `fct_inference_costs_daily`, which the warehouse keeps per day: reading
    84 days of the hourly fact (24 times the rows) on every run made a day's cost grow
    with its history.
    """
    costs = "(select * from fct_inference_costs_daily where usage_date >= $start and usage_date < $end and total_cost is not null) costs"
    bounds = {"start": start, "end": end}
    cost = con.sql(_that_can_alert_sql(_series_sql(costs, "usage_date", DAILY_LEAF_COLUMNS, "total_cost"),
                                       min_span, keep="dimension in ('total', 'model')"), params=bounds).pl()
    unit = con.sql(
        """
        select usage_date as period, 'unit_cost' as metric, 'model' as dimension, model as key,
               cast(sum(busy_cost) as double) * 1e6 / sum(total_tokens) as actual,
               cast(sum(total_tokens) as double) as volume
        from cost_per_token_daily
        where usage_date >= $start and usage_date < $end and busy_cost is not null
        group by all
        having sum(total_tokens) > 0
        """,
        params=bounds,
    ).pl()
    observations = pl.concat([_as_observations(cost, ad.COST), unit], how="vertical_relaxed")
    leaf_columns = ", ".join(f"{col} as {dim}" for dim, col in DAILY_LEAF_COLUMNS.items())

    def leaves() -> pl.DataFrame:
        return con.sql(
            f"select usage_date as period, {leaf_columns}, cast(sum(total_cost) as double) as value "
            f"from {costs} group by all", params=bounds).pl()

    return observations, leaves


HOURLY_TOKENS_TABLE = "anomaly_hourly_tokens"
HOURLY_SERIES_TOKENS_TABLE = "anomaly_hourly_series_tokens"
_IN_MEMORY = "_in_memory"


class HourlyTokens(NamedTuple):
    """SQL sources (with the parameters $start and $end) of a run's hourly token sums."""

    leaves: str  # period, provider, deployment, customer, feature, tokens, usage_date
    series: str  # period, usage_date, deployment, dimension, key, tokens: per deployment


def hourly_tokens(con: duckdb.DuckDBPyConnection, lake: Path, start: date, end: date, *,
                  recompute_from: date | None = None, keep: bool = False) -> HourlyTokens:
    """Successful tokens per hour and leaf over [start, end), from the gateway requests, and
    the same summed per hour, deployment and key of each dimension (what the series are
    priced from: a rate is a deployment's), as SQL sources on `con`.

    With `keep`, each day's sums are stored in HOURLY_TOKENS_TABLE and
    HOURLY_SERIES_TOKENS_TABLE, and days before `recompute_from` are read back from them
    instead of from the lake: the hourly baseline looks back 35 days, and summing 35 days of
    a 10-million-request day from the lake on every run would make a day's cost grow with
    its history. Days from `recompute_from` on (the run's window), and days not kept, are
    summed again, so a rerun for late data replaces them (a day whose leaves are kept
    without its series gets them from the kept leaves); days before `start` are dropped.
    Without `keep`, every day is summed from the lake into views on `con`.
    """
    days = _days(start, end)
    if not keep:
        leaves = _sum_hourly_tokens(lake, days)
        con.register(HOURLY_TOKENS_TABLE + _IN_MEMORY, leaves.to_arrow())
        con.register(HOURLY_SERIES_TOKENS_TABLE + _IN_MEMORY, _series_tokens(leaves).to_arrow())
        return _sources(_IN_MEMORY)
    con.execute(f"create table if not exists {HOURLY_TOKENS_TABLE} (period timestamptz, "
                "provider varchar, deployment varchar, customer varchar, feature varchar, "
                "tokens double, usage_date date)")
    con.execute(f"create table if not exists {HOURLY_SERIES_TOKENS_TABLE} (period timestamptz, "
                "usage_date date, deployment varchar, dimension varchar, key varchar, tokens double)")
    kept = [{row[0] for row in con.execute(
        f"select distinct usage_date from {table} where usage_date >= ? and usage_date < ?",
        [start, end]).fetchall()} for table in (HOURLY_TOKENS_TABLE, HOURLY_SERIES_TOKENS_TABLE)]
    # The window, and days not kept yet, are summed from the lake; the rest is read back.
    fresh = sorted(d for d in days if d not in kept[0] or recompute_from is None or d >= recompute_from)
    where = "usage_date in (select unnest(?::date[]))"
    if fresh:
        leaves = _sum_hourly_tokens(lake, fresh)
        _replace_rows(con, HOURLY_TOKENS_TABLE, where, [fresh], leaves)
        _replace_rows(con, HOURLY_SERIES_TOKENS_TABLE, where, [fresh], _series_tokens(leaves))
    # Kept leaves without their series (kept by a release before the series were): summed
    # from the kept leaves, not from the lake.
    missing = sorted(d for d in days if d in kept[0] and d not in kept[1] and d not in fresh)
    if missing:
        leaves = con.sql(f"select * from {HOURLY_TOKENS_TABLE} where {where}", params=[missing]).pl()
        _replace_rows(con, HOURLY_SERIES_TOKENS_TABLE, where, [missing],
                      _series_tokens(leaves.cast(_HOURLY_TOKENS_SCHEMA)))
    # Days before the lookback are no baseline of this run or of a later one: dropped, so
    # the tables hold the lookback, not the whole history (a backfill of older days sums
    # them from the lake again).
    for table in (HOURLY_TOKENS_TABLE, HOURLY_SERIES_TOKENS_TABLE):
        con.execute(f"delete from {table} where usage_date < ?", [start])
    return _sources("")


def _sources(suffix: str) -> HourlyTokens:
    return HourlyTokens(*(f"(select * from {table}{suffix} where usage_date >= $start and usage_date < $end)"
                          for table in (HOURLY_TOKENS_TABLE, HOURLY_SERIES_TOKENS_TABLE)))


def _series_tokens(leaves: pl.DataFrame) -> pl.DataFrame:
    """Tokens per hour, deployment and key of each dimension (`deployment` itself: one row per
    hour and deployment, which the total sums), from the leaves. A fraction of their rows,
    so a run prices 35 days of these instead of 35 days of leaves."""
    keys = ["period", "usage_date", "deployment"]
    parts = [leaves.group_by(keys).agg(pl.col("tokens").sum())
             .with_columns(dimension=pl.lit("deployment"), key=pl.col("deployment"))]
    for dim in ("provider", "feature", "customer"):
        parts.append(
            leaves.filter(pl.col(dim).is_not_null() & (pl.col(dim) != ad.NOT_A_KEY))
            .group_by(*keys, dim).agg(pl.col("tokens").sum())
            .with_columns(dimension=pl.lit(dim)).rename({dim: "key"})
        )
    return pl.concat([p.select(*keys, "dimension", "key", "tokens") for p in parts])


_HOURLY_TOKENS_SCHEMA = {"period": pl.Datetime("us", "UTC"), "provider": pl.String,
                         "deployment": pl.String, "customer": pl.String, "feature": pl.String,
                         "tokens": pl.Float64, "usage_date": pl.Date}


def _sum_hourly_tokens(lake: Path, days: list[date]) -> pl.DataFrame:
    files = [p for d in days for p in (lake / "gateway_requests" / f"date={d}").glob("*.parquet")]
    if not files:
        return pl.DataFrame(schema=_HOURLY_TOKENS_SCHEMA)
    return (
        pl.scan_parquet(files)
        .filter(pl.col("status") == "success")
        .group_by(
            pl.col("ts_start").dt.truncate("1h").alias("period"),
            "provider", "deployment", pl.col("customer_id").alias("customer"), "feature",
        )
        .agg(
            pl.sum_horizontal(
                "input_uncached_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"
            ).sum().cast(pl.Float64).alias("tokens")
        )
        .with_columns(usage_date=pl.col("period").dt.date())
        .collect()
        .cast(_HOURLY_TOKENS_SCHEMA)
        .select(list(_HOURLY_TOKENS_SCHEMA))
    )


def _utc(column: str) -> pl.Expr:
    """A timestamptz column as DuckDB hands it over (in the session's zone), in UTC."""
    return pl.col(column).dt.convert_time_zone("UTC")


def hourly_inputs(
    con: duckdb.DuckDBPyConnection, lake: Path, start: date, end: date, *,
    recompute_from: date | None = None, keep: bool = False, min_span: float | None = None,
) -> tuple[pl.DataFrame, Callable[[], pl.DataFrame]]:
    """Hourly spend per dimension from the gateway requests in the lake, priced at known
    rates, and a function returning the leaf cells (for root-cause walks). Series that
    cannot alert at `min_span` dollars are left out (_that_can_alert_sql): 35 days of hours
    of every small customer would otherwise be handed over to be dropped.

    The rate of a deployment on day d is its busy cost per token on the latest day before
    d in `cost_per_token_daily` (the first known day's rate before any exists). Token sums
    come from `hourly_tokens` (`recompute_from`, `keep`: see there). Each sum's spend is a
    decimal, so a rerun adds the same figures whatever order the sum takes.
    """
    tokens = hourly_tokens(con, lake, start, end, recompute_from=recompute_from, keep=keep)

    def priced(source: str, columns: str) -> str:
        return f"""
            with tokens as (select * from {source}),
            rates as (
                select usage_date, deployment,
                       cast(sum(busy_cost) as double) * 1e6 / sum(total_tokens) as usd_per_mtok
                from cost_per_token_daily
                where usage_date < $end and busy_cost is not null
                group by all
                having sum(total_tokens) > 0
            ),
            first_rates as (
                select deployment, arg_min(usd_per_mtok, usage_date) as first_rate from rates group by deployment
            ),
            -- One rate per day and deployment first: an as-of join of every token row costs more.
            day_rates as (
                select d.usage_date, d.deployment, coalesce(r.usd_per_mtok, f.first_rate) as usd_per_mtok
                from (select distinct usage_date, deployment from tokens) d
                asof left join rates r on d.deployment = r.deployment and d.usage_date > r.usage_date
                left join first_rates f on d.deployment = f.deployment
            ),
            priced as (
                select {columns}, cast(t.tokens * r.usd_per_mtok / 1e6 as decimal(38, 12)) as value
                from tokens t
                join day_rates r on t.usage_date = r.usage_date and t.deployment = r.deployment
                where r.usd_per_mtok is not null
            )
        """

    bounds = {"start": start, "end": end}
    series = con.sql(
        priced(tokens.series, "t.period, t.dimension, t.key") + _that_can_alert_sql(f"""
        select period, 'total' as dimension, '{ad.TOTAL_KEY}' as key, cast(sum(value) as double) as actual
        from priced where dimension = 'deployment' group by period
        union all
        select period, dimension, key, cast(sum(value) as double) as actual
        from priced where key is not null and key <> '{ad.NOT_A_KEY}' group by period, dimension, key
        """, min_span), params=bounds).pl()
    observations = _as_observations(series, ad.ESTIMATED_COST).with_columns(_utc("period"))
    columns = ", ".join(f"t.{d}" for d in ("period", *HOURLY_DIMENSIONS))

    def leaves() -> pl.DataFrame:
        return con.sql(priced(tokens.leaves, columns) + f"select {', '.join(('period', *HOURLY_DIMENSIONS))}, "
                       "cast(value as double) as value from priced", params=bounds).pl().with_columns(_utc("period"))

    return observations, leaves


def detect_window(
    con: duckdb.DuckDBPyConnection,
    lake: Path,
    start: date,
    end: date,
    *,
    daily: ad.DetectorSettings = ad.DAILY_SETTINGS,
    hourly: ad.DetectorSettings | None = ad.HOURLY_SETTINGS,
    planned: Sequence[ad.PlannedEvent] = (),
    keep_hourly_tokens: bool = False,
) -> pl.DataFrame:
    """The alerts of the days [start, end), judged against the history before them.

    `keep_hourly_tokens` (the asset's setting; it needs a writable connection) stores each
    day's hourly token sums in the warehouse and reads the history's back from there.
    """
    history_start = start - timedelta(days=DAILY_LOOKBACK_DAYS)
    observations, leaves = daily_inputs(con, history_start, end, min_span=daily.min_impact_usd)
    found = [ad.detect(observations, _days(history_start, end), settings=daily, grain="day", leaves=leaves, planned=planned)]
    if hourly is not None:
        hourly_start = start - timedelta(days=HOURLY_LOOKBACK_DAYS)
        obs_h, leaves_h = hourly_inputs(con, lake, hourly_start, end, recompute_from=start,
                                        keep=keep_hourly_tokens, min_span=hourly.min_impact_usd)
        hours = [
            datetime(d.year, d.month, d.day, h, tzinfo=UTC)
            for d in _days(hourly_start, end) for h in range(24)
        ]
        found.append(
            ad.detect(obs_h, hours, settings=hourly, grain="hour", leaves=leaves_h,
                      leaf_dimensions=HOURLY_DIMENSIONS, planned=planned)
        )
    alerts = pl.concat(found)
    return alerts.filter((pl.col("usage_date") >= start) & (pl.col("usage_date") < end))


def planned_events(storage: StorageResource) -> list[ad.PlannedEvent]:
    """The launches announced in the landing store (connectors.planned_events)."""
    rows = read_planned_events(storage.store(), ("total", *ad.LEAF_DIMENSIONS),
                               customer_salt=storage.customer_salt)
    return [ad.PlannedEvent(r["dimension"], r["key"], r["start_date"], r["end_date"],
                            r["description"]) for r in rows.iter_rows(named=True)]


def write_alerts(con: duckdb.DuckDBPyConnection, alerts: pl.DataFrame, start: date, end: date) -> None:
    """Replace the window's days in `cost_anomalies` in one transaction."""
    frame = alerts.with_columns(
        *[pl.col(c).round(12).cast(pl.Decimal(38, 12)) for c in MONEY_COLUMNS],
        detected_at=pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")),
    )
    con.execute(TABLE_DDL)
    _replace_rows(con, TABLE, "usage_date >= ? and usage_date < ?", [start, end], frame)


def _replace_rows(con: duckdb.DuckDBPyConnection, table: str, where: str, params: list,
                  frame: pl.DataFrame) -> None:
    """Delete the rows `where` selects and insert `frame` (by column name), in one transaction."""
    con.execute("begin transaction")
    try:
        con.execute(f"delete from {table} where {where}", params)
        con.register("replacement_rows", frame.to_arrow())
        con.execute(f"insert into {table} by name select * from replacement_rows")
        con.unregister("replacement_rows")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def check_result(alerts: pl.DataFrame) -> dg.AssetCheckResult:
    """Fails when a new incident needs a person: ERROR when one pages, WARN for chat."""
    new = alerts.filter(pl.col("status").is_in(ad.NOTIFY_STATUSES))
    paging = new.filter(pl.col("severity") == "critical")
    warning = new.filter(pl.col("severity") == "warning")
    top = (paging if paging.height else warning).sort("impact_usd", descending=True).head(10)
    metadata = {
        "paging_incidents": dg.MetadataValue.int(paging.height),
        "warning_incidents": dg.MetadataValue.int(warning.height),
        "grouped_or_info": dg.MetadataValue.int(new.height - paging.height - warning.height),
        "top_incidents": dg.MetadataValue.json(
            [
                {
                    "period": r["period_start"].isoformat(), "grain": r["grain"], "metric": r["metric"],
                    "dimension": r["dimension"], "key": r["key"], "rule": r["rule"],
                    "impact_usd": round(r["impact_usd"], 2), "actual": round(r["actual"], 2),
                    "expected": round(r["expected"], 2), "root_causes": json.loads(r["root_causes"]),
                    "dedup_key": r["dedup_key"],
                }
                for r in top.iter_rows(named=True)
            ]
        ),
    }
    if paging.height:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
    if warning.height:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)
    return dg.AssetCheckResult(passed=True, metadata=metadata)


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="anomalies",
    kinds={"duckdb", "polars"},
    pool=WAREHOUSE_POOL,
    deps=["fct_inference_costs_daily", "cost_per_token_daily", "gateway_requests"],
    check_specs=[
        dg.AssetCheckSpec(
            "no_unexplained_cost_anomaly", asset="cost_anomalies",
            description="Fails with ERROR when a new incident pages (an unexplained increase "
            "above the paging threshold), with WARN when one goes to chat.",
        )
    ],
    description="Cost anomalies per day (and hour) x dimension x key: robust same-weekday "
    "baseline, dollar/percentage/score thresholds, drift, root causes, dedup keys, status.",
)
def cost_anomalies(context: dg.AssetExecutionContext, storage: StorageResource):
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    planned = planned_events(storage)
    if planned:
        context.log.info(f"{len(planned)} planned event(s) from {PLANNED_EVENTS_KEY}: alerts "
                         "inside them are recorded, not paged")
    with duckdb.connect(storage.warehouse) as con:
        alerts = detect_window(con, storage.lake_path, start, end, keep_hourly_tokens=True,
                               planned=planned)
        write_alerts(con, alerts, start, end)
    yield dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(alerts.height),
            "triggered": dg.MetadataValue.int(alerts.filter(pl.col("status") == "triggered").height),
        }
    )
    yield check_result(alerts)


ANOMALY_ASSETS = [cost_anomalies]
