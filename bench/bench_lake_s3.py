"""The lake on S3 against the lake in a folder: what publishing and pulling cost.

    .venv/bin/python bench/bench_lake_s3.py                 # 7 days of 20,000 requests
    .venv/bin/python bench/bench_lake_s3.py --days 3 --requests-per-day 5000

The demo company (pipelines.demo) is generated once and run end to end twice, through
`run_range` as the CLI runs it: with its lake in a folder, then with `INFERLEDGER_LAKE` on
S3 (moto in server mode on loopback: real HTTP, signing and ETags, but a Python server
holding objects in memory, slower than S3 for large objects). Then:

- a second machine's copy pulled from S3 (every partition downloaded);
- the same pull again, with nothing changed (one listing);
- the last day rerun on the S3 lake (each of its partitions published again);
- one large partition (`--big-rows` rows of gateway-like columns) published and pulled;
- with `--lake DIR`, an existing lake (say the production day `bench_pipeline.py --workdir`
  leaves) published partition by partition and pulled into a new copy.

Prints wall seconds for each; the marts of the two runs are compared row for row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

START = date(2026, 10, 1)
MARTS = ("fct_billing_line_items", "fct_inference_costs_hourly", "cost_per_token_daily",
         "customer_costs_daily", "feature_costs_daily", "billing_reconciliation_daily")


def _marts(warehouse: Path) -> dict[str, list[tuple]]:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {m: sorted(con.execute(f"select * from {m}").fetchall(), key=repr) for m in MARTS}


def _big_partition(rows: int):
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(3)
    return pl.DataFrame({
        "request_id": pl.Series([f"chatcmpl-{i:012d}" for i in range(rows)]),
        "customer_id": pl.Series(rng.integers(0, 500, rows)).cast(pl.String),
        "input_uncached_tokens": rng.integers(20, 120_000, rows),
        "output_tokens": rng.integers(1, 8_000, rows),
        "ts_start": pl.Series(rng.integers(0, 86_400_000_000, rows)).cast(pl.Datetime("us", "UTC")),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--requests-per-day", type=int, default=20_000)
    parser.add_argument("--big-rows", type=int, default=5_000_000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--lake", type=Path, help="an existing lake folder to publish and pull")
    args = parser.parse_args()

    from connectors import lake
    from connectors.lake_remote import S3Lake, attach, detach
    from pipelines.config import Settings
    from pipelines.demo.generate import generate
    from pipelines.runner import run_range
    from tests.support.moto_server import REGION, moto_server

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-lake-s3-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    end = START + timedelta(days=args.days - 1)
    landing = work / "landing"
    generate(landing, seed=11, start=START, days=args.days, requests_per_day=args.requests_per_day, gpus=27)
    figures: dict[str, float] = {}

    folder = Settings(landing=str(landing), lake=str(work / "a" / "lake"), warehouse=str(work / "a" / "w.duckdb"))
    t = time.perf_counter()
    run_range(folder, START, end)
    figures["run, lake in a folder"] = time.perf_counter() - t

    with moto_server() as aws:
        os.environ.update(INFERLEDGER_S3_ENDPOINT_URL=aws.endpoint, AWS_ACCESS_KEY_ID="bench",
                          AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION)
        aws.client("s3").create_bucket(Bucket="lake")
        on_s3 = Settings(landing=str(landing), lake="s3://lake/demo", warehouse=str(work / "b" / "w.duckdb"))
        t = time.perf_counter()
        run_range(on_s3, START, end)
        figures["run, lake on S3"] = time.perf_counter() - t
        same = _marts(Path(folder.warehouse)) == _marts(Path(on_s3.warehouse))

        second = S3Lake(on_s3.lake, work / "second-copy")
        t = time.perf_counter()
        pulled = second.pull()
        figures["pull into a new copy"] = time.perf_counter() - t
        t = time.perf_counter()
        level = second.pull()
        figures["pull, nothing changed"] = time.perf_counter() - t
        t = time.perf_counter()
        run_range(on_s3, end, end)
        figures["rerun of the last day, lake on S3"] = time.perf_counter() - t

        big = _big_partition(args.big_rows)
        writer = attach(S3Lake("s3://lake/big", work / "big-writer"))
        t = time.perf_counter()
        lake.replace_partition(writer.cache, "gateway_like", START, big)
        figures["write + publish one large partition"] = time.perf_counter() - t
        detach(writer)
        size = sum(f.stat().st_size for f in (writer.cache / "gateway_like").rglob("*.parquet"))
        t = time.perf_counter()
        S3Lake("s3://lake/big", work / "big-reader").pull()
        figures["pull one large partition"] = time.perf_counter() - t

        if args.lake:
            existing = S3Lake("s3://lake/existing", args.lake)
            folders = sorted({f.parent for f in args.lake.rglob("*.parquet")
                              if not any(part.startswith(".") for part in f.relative_to(args.lake).parts)})
            t = time.perf_counter()
            for folder in folders:
                existing.publish(folder)
            figures[f"publish {args.lake} ({len(folders)} partitions)"] = time.perf_counter() - t
            for marker in args.lake.rglob(".inferledger_commit"):
                marker.unlink()  # leave the folder as it was
            t = time.perf_counter()
            whole = S3Lake("s3://lake/existing", work / "existing-copy").pull()
            figures[f"pull it into a new copy ({whole.files} files, {whole.bytes / 1e6:.0f} MB)"] = (
                time.perf_counter() - t)

    print(f"\n{args.days} days of {args.requests_per_day:,} requests; {pulled.partitions} partitions, "
          f"{pulled.files} files, {pulled.bytes / 1e6:.1f} MB in the lake; marts equal: {same}; "
          f"nothing changed: {len(level.downloaded)} downloaded")
    print(f"large partition: {args.big_rows:,} rows, {size / 1e6:.0f} MB of Parquet\n")
    print("| step | wall s |\n| --- | ---: |")
    for name, seconds in figures.items():
        print(f"| {name} | {seconds:.2f} |")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
