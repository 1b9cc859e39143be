"""One production day end to end, as the product runs it, against a DuckDB lower bound.

    .venv/bin/python bench/bench_pipeline.py                      # the full day (scale 1)
    .venv/bin/python bench/bench_pipeline.py --scale 0.01 --history 1,30,90

A production day at scale 1: 10,000,000 LiteLLM spend-log requests (gzip JSONL), 1,000 GPUs
x 6 DCGM fields every 15 s (gzip long CSV, 34.6 million samples), 1,000,000 CUR 2.0 lines
(Parquet + Manifest.json), and the fleet inventory tying the bill's GPU instances to the
DCGM hosts and the gateway's self-hosted deployments. The generators are those of
bench_gateway.py, bench_dcgm.py and bench_cur.py; `--scale` multiplies every volume.

Measured, each in its own child process so its peak RSS (VmHWM) is its own:

- **pipeline**: `pipelines.runner.run_range` for the day: ingestion (the four ingestion
  assets, then their lake checks: the five GX suites), then the warehouse (dbt build:
  models, dbt tests, conservation), anomalies and the marts export. Wall time and peak RSS
  per stage (the peak is reset between stages). The code location loads first, untimed, with
  the storage named in the environment as a deployment names it: dbt's parse of the project
  for a new warehouse happens there (once per warehouse), and its time is printed beside
  the day.
- **lower bound**: one DuckDB query over the same lake computing the per-model daily
  aggregates the marts carry (requests, token buckets, GPU hours, energy, GPU cost).
- **day N+1 after N days of history** (`--history`): the lake is given N earlier days
  (copies of the day with their timestamps shifted), the marts are built over them, then
  the day is run again through run_range, twice (`--samples`), each time beside a run of
  day 1 on a new lake and warehouse: this host's speed drifts by 10-20 % over minutes, so
  the two sides are timed side by side and the fastest of each compared.

Targets (issue 9), at scale 1 on 2 cores: end to end <= 120 s, <= 6 GB peak, <= 3x the lower
bound; day N+1 after 90 days within 10 % of day 1. Prints a markdown report; `--results`
also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

DAY = date(2026, 10, 1)
FULL = {"requests": 10_000_000, "gpus": 1000, "bill_lines": 1_000_000}
DEPLOYMENTS = ["llama-3.1-70b-instruct", "qwen2.5-7b-instruct"]  # bench_gateway's self-hosted routes
EXPORT = "bench-cur2"
TARGETS = {"end_to_end_s": 120.0, "peak_mb": 6144.0, "ratio": 3.0, "history_growth": 0.10}
# Lake tables dbt reads, and the column that dates each row (shifted to make history).
HISTORY_TABLES = {
    "billing_line_items": ["billing_period_start", "charge_period_start", "charge_period_end"],
    "gateway_requests": ["ts_start", "ts_end"],
    "gpu_hourly": ["hour_start"],
    "fleet_inventory": [],
}


# ---------------------------------------------------------------- generation (parent)

def generate_landing(landing: Path, scale: float, workers: int) -> dict:
    """The day in the vendors' formats, at `scale` of a production day."""
    import bench_dcgm
    import bench_gateway

    work = landing.parent
    requests = max(1000, int(FULL["requests"] * scale))
    files = max(1, min(10, requests // 200_000))
    gpus = max(bench_dcgm.GPUS_PER_HOST, int(FULL["gpus"] * scale))
    bill_lines = max(1000, int(FULL["bill_lines"] * scale))
    gateway = bench_gateway.generate(work, requests, files, workers)
    telemetry = bench_dcgm.generate(work, gpus, 15, workers)
    bill = write_cur_day(landing, bill_lines)
    inventory = write_inventory(landing, telemetry["hosts"])
    return {"requests": gateway["rows"], "gateway_files": files, "gpus": telemetry["gpus"],
            "samples": telemetry["samples"], "bill_lines": bill, "inventory_rows": inventory}


def write_cur_day(landing: Path, rows: int) -> int:
    """bench_cur's CUR 2.0 lines, moved onto the day's 24 hours, with their manifest."""
    import polars as pl
    from bench_cur import generate_cur2

    frame = generate_cur2(rows)
    day_start = datetime(DAY.year, DAY.month, DAY.day)
    hour = pl.int_range(pl.len(), dtype=pl.Int64) * 24 // pl.len()
    start = pl.lit(day_start) + pl.duration(hours=hour)
    frame = frame.with_columns(
        line_item_usage_start_date=start,
        line_item_usage_end_date=start + pl.duration(hours=1),
        bill_billing_period_start_date=pl.lit(datetime(DAY.year, DAY.month, 1)),
        bill_billing_period_end_date=pl.lit(datetime(DAY.year, DAY.month + 1, 1)),
        bill_invoice_id=pl.lit(f"{DAY:%Y-%m}-INV-1"),
        identity_time_interval=pl.format(
            "{}/{}", start.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            (start + pl.duration(hours=1)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")),
    )
    period = f"{DAY:%Y-%m}"
    data_key = f"{EXPORT}/data/BILLING_PERIOD={period}/{EXPORT}-00001.snappy.parquet"
    manifest_key = f"{EXPORT}/metadata/BILLING_PERIOD={period}/{EXPORT}-Manifest.json"
    data = landing / "aws_cur" / data_key
    data.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(data, compression="snappy")
    manifest = {
        "exportName": EXPORT,
        "executionId": f"{EXPORT}-{period}-1",
        "billingPeriod": {"start": f"{period}-01T00:00:00.000Z",
                          "end": f"{DAY.year}-{DAY.month + 1:02d}-01T00:00:00.000Z"},
        "dataFiles": [f"s3://bench-bucket/cur/{data_key}"],
        "columns": [{"name": n, "type": "string"} for n in frame.columns],
    }
    path = landing / "aws_cur" / manifest_key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2))
    return frame.height


def write_inventory(landing: Path, hosts: int) -> int:
    """The DCGM hosts as the bill's p5.48xlarge instances (i-0, i-5, ...), two deployments."""
    import polars as pl

    k = pl.int_range(hosts, dtype=pl.Int64)
    inventory = pl.select(
        hostname=pl.format("gpu-host-{}", k.cast(pl.String).str.zfill(4)),
        provider=pl.lit("AWS"),
        resource_id=pl.format("i-{}", (k * 5).cast(pl.String)),
        deployment=pl.when(k % 2 == 0).then(pl.lit(DEPLOYMENTS[0])).otherwise(pl.lit(DEPLOYMENTS[1])),
        valid_from=pl.lit("2026-01-01T00:00:00Z"),
        valid_to=pl.lit(None, dtype=pl.String),
    )
    (landing / "inventory").mkdir(parents=True, exist_ok=True)
    inventory.write_csv(landing / "inventory" / "fleet.csv")
    return inventory.height


# ---------------------------------------------------------------- measured children

def _peak_mb() -> float:
    """This process's peak RSS since start or the last reset (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s() -> float:
    """CPU seconds of this process (all its threads) and of its finished children (dbt)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reset_peak() -> None:
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def child_pipeline(work: Path) -> dict:
    """run_range over the day; ingestion and the rest timed and peaked separately."""
    from assets.warehouse import dbt_storage_env
    from pipelines.config import Settings

    settings = Settings(landing=str(work / "landing"), lake=str(work / "lake"),
                        warehouse=str(work / "warehouse.duckdb"))
    # Storage named in the environment, as a deployment names it: the code location, loaded
    # by the import below and not timed, parses the dbt project for this warehouse (once per
    # new warehouse; the day's build then reuses that parse, as every later day's does).
    os.environ.update(dbt_storage_env(settings.lake, settings.lake_path, settings.warehouse))
    loading = time.perf_counter()
    from pipelines.runner import run_range
    load_s = time.perf_counter() - loading  # reported beside the day, not in it
    marks: dict[str, float] = {}
    started, cpu_started, epoch = time.perf_counter(), _cpu_s(), time.time()

    def ingested(_days: list[date]) -> None:
        marks["ingest_s"] = time.perf_counter() - started
        marks["ingest_cpu_s"] = _cpu_s() - cpu_started
        marks["ingest_peak_mb"] = _peak_mb()
        _reset_peak()

    import dagster as dg

    instance, telemetry = dg.DagsterInstance.ephemeral(), dg.DagsterInstance.ephemeral()
    run_range(settings, DAY, DAY, on_chunk=ingested, instance=instance, telemetry_instance=telemetry)
    total = time.perf_counter() - started
    # The profile: wall seconds of every step (asset) of every run, and when each ran in
    # seconds from the start (which steps overlapped, which waited).
    steps, timeline = {}, {}
    for on in (instance, telemetry):
        for run in on.get_runs():
            for stat in on.get_run_step_stats(run.run_id):
                if stat.start_time and stat.end_time:
                    steps[stat.step_key] = round(stat.end_time - stat.start_time, 1)
                    timeline[stat.step_key] = (round(stat.start_time - epoch, 1),
                                               round(stat.end_time - epoch, 1))
    cpu = _cpu_s() - cpu_started
    return {"load_s": load_s, "ingest_s": marks["ingest_s"], "ingest_peak_mb": marks["ingest_peak_mb"],
            "warehouse_s": total - marks["ingest_s"], "warehouse_peak_mb": _peak_mb(),
            "total_s": total, "steps": steps, "timeline": timeline, "ingest_cpu_s": marks["ingest_cpu_s"],
            "warehouse_cpu_s": cpu - marks["ingest_cpu_s"], "cpu_s": cpu}


LOWER_BOUND_SQL = """
with requests as (
    select coalesce(model_served, model_requested) as model,
           coalesce(deployment, model_served) as deployment,
           count(*) as requests,
           sum(input_uncached_tokens) as input_uncached, sum(cache_read_tokens) as cache_read,
           sum(cache_write_tokens) as cache_write, sum(output_tokens) as output
    from read_parquet('{lake}/gateway_requests/*/*.parquet', hive_partitioning = true)
    where date = '{day}' and status = 'success'
    group by all
),
inventory as (
    select distinct hostname, resource_id, deployment
    from read_parquet('{lake}/fleet_inventory/*/*.parquet', hive_partitioning = true)
    where date = '{day}'
),
gpus as (
    select inventory.deployment, count(*) as gpu_hours, sum(busy_fraction) as busy_hours,
           sum(energy_wh) as energy_wh
    from read_parquet('{lake}/gpu_hourly/*/*.parquet', hive_partitioning = true) as gpu
    join inventory using (hostname)
    where date = '{day}'
    group by all
),
cost as (
    select inventory.deployment, sum(effective_cost) as gpu_cost
    from read_parquet('{lake}/billing_line_items/*/*.parquet', hive_partitioning = true) as bill
    join inventory using (resource_id)
    where date = '{day}' and charge_category = 'Usage'
    group by all
)
select requests.*, gpus.gpu_hours, gpus.busy_hours, gpus.energy_wh, cost.gpu_cost,
       cost.gpu_cost / nullif(input_uncached + cache_read + output, 0) * 1e6 as cost_per_1m_tokens
from requests
left join gpus using (deployment)
left join cost using (deployment)
"""


# The same per-model daily aggregates straight from the vendors' files the pipeline read:
# one DuckDB query that parses the gzip JSONL, the gzip DCGM CSV and the CUR Parquet, keeps
# one copy of each request id, and joins through the inventory. No validation, quarantine,
# allocation or lake: what any pipeline over these inputs must at least do.
LOWER_BOUND_RAW_SQL = """
with spend_logs as (
    select request_id, coalesce(nullif(model_group, ''), model) as model, prompt_tokens,
           completion_tokens,
           coalesce(metadata.additional_usage_values.prompt_tokens_details.cached_tokens, 0)
               as cached
    from read_json('{landing}/gateway_logs/litellm/**/*.jsonl.gz',
                   format = 'newline_delimited',
                   columns = {{request_id: 'VARCHAR', model: 'VARCHAR', model_group: 'VARCHAR',
                              prompt_tokens: 'BIGINT', completion_tokens: 'BIGINT',
                              startTime: 'TIMESTAMPTZ', status: 'VARCHAR',
                              metadata: 'STRUCT(additional_usage_values STRUCT(prompt_tokens_details STRUCT(cached_tokens BIGINT)))'}})
    where startTime::date = '{day}' and status = 'success'
    qualify row_number() over (partition by request_id) = 1
),
requests as (
    select model as deployment, count(*) as requests,
           sum(prompt_tokens - cached) as input_uncached, sum(cached) as cache_read,
           sum(completion_tokens) as output
    from spend_logs group by all
),
inventory as (
    select hostname, resource_id, deployment
    from read_csv('{landing}/inventory/*.csv', header = true)
),
samples as (
    select Hostname as hostname, UUID as uuid, timestamp::timestamptz as ts, metric,
           value::double as value
    from read_csv('{landing}/gpu_telemetry/**/*.csv.gz', header = true,
                  columns = {{timestamp: 'VARCHAR', Hostname: 'VARCHAR', gpu: 'VARCHAR',
                             UUID: 'VARCHAR', modelName: 'VARCHAR', GPU_I_PROFILE: 'VARCHAR',
                             GPU_I_ID: 'VARCHAR', namespace: 'VARCHAR', pod: 'VARCHAR',
                             container: 'VARCHAR', metric: 'VARCHAR', value: 'VARCHAR'}})
    where metric in ('DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION')
),
gpu_hours as (
    select hostname, uuid, date_trunc('hour', ts) as hour,
           avg(value) filter (where metric = 'DCGM_FI_DEV_GPU_UTIL') / 100 as busy,
           (max(value) filter (where metric = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION')
            - min(value) filter (where metric = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION'))
               / 3.6e6 as energy_wh
    from samples where ts::date = '{day}' group by all
),
gpus as (
    select inventory.deployment, count(*) as gpu_hours, sum(busy) as busy_hours,
           sum(energy_wh) as energy_wh
    from gpu_hours join inventory using (hostname) group by all
),
cost as (
    select inventory.deployment, sum(line_item_unblended_cost::decimal(38, 12)) as gpu_cost
    from read_parquet('{landing}/aws_cur/**/*.parquet') as bill
    join inventory on bill.line_item_resource_id = inventory.resource_id
    where line_item_usage_start_date::date = '{day}' and line_item_line_item_type = 'Usage'
    group by all
)
select requests.*, gpus.gpu_hours, gpus.busy_hours, gpus.energy_wh, cost.gpu_cost,
       cost.gpu_cost / nullif(input_uncached + cache_read + output, 0) * 1e6 as cost_per_1m_tokens
from requests
left join gpus using (deployment)
left join cost using (deployment)
"""


def child_lower_bound(work: Path) -> dict:
    """Both lower bounds: the query over the lake, and the query over the raw files."""
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect()
    rows = con.sql(LOWER_BOUND_SQL.format(lake=work / "lake", day=DAY.isoformat())).fetchall()
    lake_s = time.perf_counter() - started
    lake_peak = _peak_mb()
    _reset_peak()
    started = time.perf_counter()
    raw = con.sql(LOWER_BOUND_RAW_SQL.format(landing=work / "landing", day=DAY.isoformat())).fetchall()
    return {"total_s": lake_s, "peak_mb": lake_peak, "rows": len(rows),
            "raw_s": time.perf_counter() - started, "raw_peak_mb": _peak_mb(), "raw_rows": len(raw)}


def make_history(work: Path, days: int, have: int = 0) -> None:
    """Copies of the day's lake partitions moved `have + 1..days` days back, timestamps
    shifted (the `have` days nearer the day are there from the previous history)."""
    import polars as pl

    from connectors.lake import replace_partition

    for table, columns in HISTORY_TABLES.items():
        day_frame = pl.read_parquet(work / "lake" / table / f"date={DAY}" / "*.parquet")
        for back in range(have + 1, days + 1):
            shift = timedelta(days=back)
            moved = day_frame.with_columns([pl.col(c) - shift for c in columns])
            if table == "billing_line_items":
                # Line ids are unique per line: a copied day is new lines, not restated ones.
                moved = moved.with_columns(pl.format("{}-h{}", "source_line_id", pl.lit(back)).alias("source_line_id"))
            if table == "gateway_requests":
                moved = moved.with_columns(pl.format("{}-h{}", "request_id", pl.lit(back)).alias("request_id"))
            replace_partition(work / "lake", table, DAY - shift, moved)


def build_history_marts(work: Path, days: int, have: int = 0) -> None:
    """The marts of the history days not built yet (`have + 1..days` back), in one dbt
    run, their exports and the anomaly detector's kept hourly token sums, as the daily
    runs that built those days would have left them (set-up, not measured). dbt runs in a
    separate process: dbt-duckdb keeps its connection, and with it the file lock, for its
    process."""
    env = {**os.environ, "INFERLEDGER_LAKE": str(work / "lake"),
           "INFERLEDGER_WAREHOUSE": str(work / "warehouse.duckdb"),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}
    first, end = DAY - timedelta(days=days), DAY - timedelta(days=have)
    window = {"min_date": first.isoformat(), "max_date": end.isoformat()}
    subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "run", "--quiet",
         "--project-dir", str(REPO / "dbt"), "--profiles-dir", str(REPO / "dbt"),
         "--target-path", str(work / "dbt-target"), "--log-path", str(work / "dbt-logs"),
         "--vars", json.dumps(window)],
        check=True, env=env, cwd=REPO,
    )
    from assets.exports import _mart_keys, publish_exports

    marts = [k.path[-1] for k in _mart_keys()]
    new_days = [first + timedelta(days=i) for i in range((end - first).days)]
    publish_exports(work / "warehouse.duckdb", work / "lake", marts, days=new_days)
    # A daily run leaves the published file and a spare that the next run brings level in
    # place (assets.exports.refresh_snapshot). The backfill's export above left a spare that
    # misses it, so the last history day's run is published too: day N+1 then refreshes the
    # spare as every later day does, instead of copying the whole file as only the first
    # run after a backfill does.
    publish_exports(work / "warehouse.duckdb", work / "lake", marts, days=[DAY - timedelta(days=1)])
    # The hourly token sums each day's anomaly run keeps (assets.anomalies.hourly_tokens):
    # the run of the last history day keeps its lookback, and the days before it are gone
    # (kept, day N+1's run would first drop 55 of them, as no daily run does).
    import duckdb

    from assets.anomalies import HOURLY_LOOKBACK_DAYS, hourly_tokens

    keep_from = max(first, DAY - timedelta(days=HOURLY_LOOKBACK_DAYS + 1))
    if keep_from < end:
        with duckdb.connect(str(work / "warehouse.duckdb")) as con:
            hourly_tokens(con, work / "lake", keep_from, end, recompute_from=keep_from, keep=True)


def _day1_control(work: Path) -> dict:
    """Day 1 again, from the start: the same landing, a new lake and a new warehouse."""
    again = work / "day1-control"
    shutil.rmtree(again, ignore_errors=True)
    again.mkdir()
    (again / "landing").symlink_to(work / "landing")
    try:
        return _child("pipeline", again)
    finally:
        shutil.rmtree(again, ignore_errors=True)


def _child(kind: str, work: Path) -> dict:
    """Run one measurement in a fresh interpreter, so its peak memory is its own."""
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false",
           "DAGSTER_HOME": str(work / "dagster_home")}
    Path(env["DAGSTER_HOME"]).mkdir(exist_ok=True)
    # What the previous step wrote (the generated day, the pipeline's lake and warehouse) is
    # flushed to disk first: the kernel would otherwise write it back during this
    # measurement, charging one step's I/O to the next.
    os.sync()
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--workdir", str(work)],
                         check=True, capture_output=True, text=True, env=env, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB, {platform.system()} {platform.release()}; load average {load} at the end"


def _cpu(run: dict, stage: str) -> str:
    """CPU seconds of a stage and how many of the cores it kept busy on average."""
    cpu, wall = run.get(f"{stage}_cpu_s" if stage else "cpu_s"), run[f"{stage}_s" if stage else "total_s"]
    return "" if cpu is None else f"{cpu:.1f} ({cpu / wall:.2f})"


def _totals(runs: list[dict]) -> str:
    return ", ".join(f"{r['total_s']:.1f}" for r in runs)


def report(scale: float, generated: dict, gen_s: float, day1: dict, bound: dict,
           history: dict[int, list[dict]], controls: dict[int, list[dict]] | None = None) -> str:
    ratio = day1["total_s"] / bound["raw_s"]
    peak = max(day1["ingest_peak_mb"], day1["warehouse_peak_mb"])
    lines = [
        f"## Run of {datetime.now():%Y-%m-%d %H:%M} (scale {scale:g})", "",
        f"Machine: {machine()}.", "",
        (f"Generated in {gen_s:.1f} s: {generated['requests']:,} requests in {generated['gateway_files']} "
         f"files, {generated['gpus']:,} GPUs ({generated['samples']:,} DCGM samples), "
         f"{generated['bill_lines']:,} CUR lines, {generated['inventory_rows']} inventory rows."), "",
        "| stage | wall s | CPU s (cores busy) | peak RSS MB |", "| --- | --- | --- | --- |",
        f"| ingestion (4 assets) and lake checks (5 GX suites) | {day1['ingest_s']:.1f} | {_cpu(day1, 'ingest')} | {day1['ingest_peak_mb']:,.0f} |",
        f"| warehouse (dbt build), anomalies, export | {day1['warehouse_s']:.1f} | {_cpu(day1, 'warehouse')} | {day1['warehouse_peak_mb']:,.0f} |",
        f"| **end to end** | **{day1['total_s']:.1f}** | {_cpu(day1, '')} | **{peak:,.0f}** |",
        f"| DuckDB lower bound: one query over the raw files | {bound['raw_s']:.1f} | | {bound['raw_peak_mb']:,.0f} |",
        f"| DuckDB query over the lake (after ingestion) | {bound['total_s']:.2f} | | {bound['peak_mb']:,.0f} |",
        "",
        (f"Before the day, not in it: the code location loaded in {day1['load_s']:.1f} s, with dbt's "
         "parse of the project for this new warehouse (once per warehouse, as a deployment loads it)."
         if "load_s" in day1 else ""),
        "",
        "Steps (wall s): " + ", ".join(f"{k} {v:g}" for k, v in sorted(
            day1.get("steps", {}).items(), key=lambda kv: -kv[1])) + ".",
        "",
        "When each step ran (s from the start): " + ", ".join(
            f"{k} {a:g}-{b:g}" for k, (a, b) in sorted(
                day1.get("timeline", {}).items(), key=lambda kv: kv[1][0])) + ".",
        "",
        (f"End to end / raw-file lower bound: **{ratio:.2f}x** (target <= {TARGETS['ratio']:g}x: "
         f"{'met' if ratio <= TARGETS['ratio'] else 'missed'}); "
         f"warehouse stage / lake query: {day1['warehouse_s'] / bound['total_s']:.0f}x. "
         f"End to end target <= {TARGETS['end_to_end_s']:g} s: "
         f"{'met' if day1['total_s'] <= TARGETS['end_to_end_s'] else 'missed'}; "
         f"peak target <= {TARGETS['peak_mb']:,.0f} MB: {'met' if peak <= TARGETS['peak_mb'] else 'missed'}."),
    ]
    if history:
        controls = controls or {days: [day1] for days in history}
        lines += ["", ("| history (days) | day N+1 runs s | day 1 beside them s | fastest N+1 / fastest day 1 "
                       "| ingestion s | warehouse s | anomalies s | export s | vs day 1 |"),
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        worst = -1.0
        for days, runs in history.items():
            best = min(runs, key=lambda r: r["total_s"])
            first = min(controls[days], key=lambda r: r["total_s"])
            growth = best["total_s"] / first["total_s"] - 1
            worst = max(worst, growth)
            steps = best["steps"]
            lines.append(
                f"| {days} | {_totals(runs)} | {_totals(controls[days])} | {best['total_s']:.1f} / {first['total_s']:.1f} "
                f"| {best['ingest_s']:.1f} | {best['warehouse_s']:.1f} | {steps.get('cost_anomalies', 0):g} "
                f"(day 1 {first['steps'].get('cost_anomalies', 0):g}) | {steps.get('marts_export', 0):g} "
                f"(day 1 {first['steps'].get('marts_export', 0):g}) | {growth:+.0%} |")
        verdict = "met" if worst <= TARGETS["history_growth"] else "missed"
        lines += ["", (f"Day N+1 within {TARGETS['history_growth']:.0%} of day 1 (the fastest of each, run "
                       f"side by side): {verdict} (at most {worst:+.1%}).")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of a production day")
    parser.add_argument("--history", default="1,30,90", help="days of history before day N+1; '' for none")
    parser.add_argument("--samples", type=int, default=0,
                        help="runs of each day N+1, each beside a run of day 1 on a new lake and "
                        "warehouse; the fastest of each compared (default 2)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--results", type=Path, help="append the report to this markdown file")
    parser.add_argument("--child", choices=["pipeline", "lower_bound"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        measure = child_pipeline if args.child == "pipeline" else child_lower_bound
        print(json.dumps(measure(args.workdir)))
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        started = time.perf_counter()
        generated = generate_landing(work / "landing", args.scale, args.workers)
        gen_s = time.perf_counter() - started
        print(f"generated in {gen_s:.1f} s: {generated}", flush=True)
        history_days = [int(d) for d in args.history.split(",") if d]
        samples = args.samples or (2 if history_days else 1)
        day1 = _child("pipeline", work)
        print(f"day 1: {day1}", flush=True)
        bound = _child("lower_bound", work)
        print(f"lower bound: {bound}", flush=True)
        history: dict[int, list[dict]] = {}
        controls: dict[int, list[dict]] = {}
        have = 0
        for days in history_days:
            # History grows in place: the day's partitions are copied have+1..days back, and
            # the marts of those days built.
            make_history(work, days, have)
            build_history_marts(work, days, have)
            have = days
            history[days], controls[days] = [], []
            # This host's speed drifts by 10-20 % over minutes, the size of the target: each
            # day N+1 is paired with a day 1 run next to it (a new lake and warehouse on the
            # same landing), and the fastest of each side are compared.
            for k in range(samples):
                history[days].append(_child("pipeline", work))
                print(f"after {days} days of history, run {k + 1}: {history[days][-1]}", flush=True)
                controls[days].append(_day1_control(work))
                print(f"day 1 beside it, run {k + 1}: {controls[days][-1]}", flush=True)
        text = report(args.scale, generated, gen_s, day1, bound, history, controls)
        print(text)
        if args.results:
            with args.results.open("a") as out:
                out.write("\n" + text)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
