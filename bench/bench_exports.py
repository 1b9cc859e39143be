"""The BI export of a day late in a month with history, against the first day of the month.

    .venv/bin/python bench/bench_exports.py              # production volume
    .venv/bin/python bench/bench_exports.py --scale 0.1

Every daily run ends with `assets.exports.publish_exports`: the run's marts as Parquet for
BI tools, and the `marts.duckdb` snapshot. The pipeline benchmark (bench_pipeline.py)
builds its history backwards from the first of a month at 1 % of a production day, so the
month being exported never holds more than one day there, and the snapshot stays small.
This benchmark measures what it cannot: the marts at production volume (1 M bill lines and
240 k hourly cost rows a day, the shapes of the dbt contracts in the manifest), exported on
the 1st of October with nothing before it, and again on the 31st after the 30 days before
it and `--history-days` more in earlier months (set up by one export of every day, then the
daily run of the 30th, timed too: the first run after such a backfill copies the snapshot).
A day's export must cost the same whichever day of the month it is and however much
history there is.

Prints wall seconds and the exported rows of each case.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIRST = date(2026, 10, 1)
LAST = date(2026, 10, 31)
# Rows a production day adds to each mart (bench_pipeline's day at scale 1); marts not named
# here get 20 rows a day.
ROWS_PER_DAY = {
    "fct_billing_line_items": 1_000_000,
    "fct_inference_costs_hourly": 240_000,
    "cache_savings_daily": 10_000,
    "customer_costs_daily": 500,
}

_SQL_TYPES = {"string": "varchar", "text": "varchar", "timestamp": "timestamp", "date": "date",
              "boolean": "boolean", "bigint": "bigint", "int": "integer", "integer": "integer",
              "double": "double", "float": "double"}


def mart_columns() -> dict[str, list[tuple[str, str]]]:
    """Each mart's contract columns and DuckDB types, from the dbt manifest."""
    from assets.exports import _mart_keys
    from assets.warehouse import dbt_project

    manifest = json.loads(Path(dbt_project().manifest_path).read_text())
    marts = {key.path[-1] for key in _mart_keys()}
    out = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["name"] in marts:
            out[node["name"]] = [(c["name"], _sql_type(c.get("data_type") or "string"))
                                 for c in node["columns"].values()]
    return out


def _sql_type(dbt_type: str) -> str:
    t = dbt_type.lower()
    return t if t.startswith("decimal") else _SQL_TYPES.get(t, "varchar")


def _value(name: str, sql_type: str, day: date, date_column: str) -> str:
    """A value for row `i` of `day`: the date column is the day, the rest vary with i."""
    if name == date_column:
        return f"date '{day}'" if sql_type == "date" else f"timestamp '{day}' + to_hours(i % 24)"
    if sql_type == "date":
        return f"date '{day}'"
    if sql_type == "timestamp":
        return f"timestamp '{day}' + to_hours(i % 24)"
    if sql_type.startswith("decimal"):
        return f"cast((i % 100000) / 997 as {sql_type})"
    if sql_type in ("bigint", "integer"):
        return f"cast(i % 5000 as {sql_type})"
    if sql_type == "double":
        return "(i % 1000) / 7.0"
    if sql_type == "boolean":
        return "i % 2 = 0"
    return f"'{name[:6]}-' || (i % 997)"


def add_days(warehouse: Path, marts: dict[str, list[tuple[str, str]]], days: list[date],
             scale: float) -> None:
    """Insert each mart's rows of `days` into the warehouse (tables created when missing)."""
    import duckdb

    from assets.exports import _date_column

    with duckdb.connect(str(warehouse)) as con:
        for mart, columns in marts.items():
            con.execute(f"create table if not exists {mart} ("
                        + ", ".join(f'"{c}" {t}' for c, t in columns) + ")")
            dated = _date_column([(c, t.upper()) for c, t in columns])
            rows = max(1, int(ROWS_PER_DAY.get(mart, 20) * scale))
            for day in days:
                if dated is None and day != days[0]:
                    continue
                values = ", ".join(_value(c, t, day, dated[0] if dated else "") for c, t in columns)
                con.execute(f"insert into {mart} select {values} from range({rows}) as r(i)")


def timed_export(warehouse: Path, lake: Path, marts: list[str], days: list[date] | None) -> dict:
    from assets.exports import publish_exports

    started = time.perf_counter()
    result = publish_exports(warehouse, lake, marts, days)
    seconds = time.perf_counter() - started
    assert not result.mismatches, result.mismatches
    return {"seconds": round(seconds, 2),
            "snapshot_mb": round(result.snapshot.stat().st_size / 1e6),
            "rows_in_window": sum(result.parquet_rows_in_window.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--history-days", type=int, default=30,
                        help="days before October as well, for the snapshot's history")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_exports_"))
    try:
        warehouse, lake = work / "warehouse.duckdb", work / "lake"
        lake.mkdir(parents=True, exist_ok=True)
        marts = mart_columns()
        names = sorted(marts)

        add_days(warehouse, marts, [FIRST], args.scale)
        first = timed_export(warehouse, lake, names, [FIRST])
        print(f"1st of the month, no history: {first}", flush=True)

        before = [FIRST - timedelta(days=d) for d in range(args.history_days, 0, -1)]
        october = [FIRST + timedelta(days=d) for d in range(1, (LAST - FIRST).days - 1)]
        add_days(warehouse, marts, before + october, args.scale)
        timed_export(warehouse, lake, names, None)  # what the earlier runs left (a backfill)
        # The first daily run after a backfill starts from a copy of marts.duckdb; from the
        # next one on, each run brings the spare file level in place.
        day30 = LAST - timedelta(days=1)
        add_days(warehouse, marts, [day30], args.scale)
        after_backfill = timed_export(warehouse, lake, names, [day30])
        print(f"30th, the run after a backfill (copies the snapshot): {after_backfill}", flush=True)
        add_days(warehouse, marts, [LAST], args.scale)
        last = timed_export(warehouse, lake, names, [LAST])
        history = len(october) + 1 + len(before)
        print(f"31st, after {len(october) + 1} days of October and {len(before)} before it: {last}")
        print("| export of one day | wall s | snapshot MB | rows of the day |")
        print("| --- | ---: | ---: | ---: |")
        print(f"| 1 October, empty history | {first['seconds']} | {first['snapshot_mb']} "
              f"| {first['rows_in_window']:,} |")
        print(f"| 30 October, {history - 1} days of history, the run after a backfill (snapshot "
              f"copied) | {after_backfill['seconds']} | {after_backfill['snapshot_mb']} "
              f"| {after_backfill['rows_in_window']:,} |")
        print(f"| 31 October, {history} days of history (spare brought level in place) "
              f"| {last['seconds']} | {last['snapshot_mb']} | {last['rows_in_window']:,} |")
        print(f"31st / 1st: {last['seconds'] / first['seconds']:.2f}x (target: about 1x)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
