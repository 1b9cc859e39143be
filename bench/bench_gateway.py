"""A production day of LiteLLM spend logs through the connector into the lake, against a
bare polars read of the same files.

    .venv/bin/python bench/bench_gateway.py --requests 10000000 --files 10

Generates a day of N requests as F gzip JSONL files (vectorized, one child process per
file), shaped like `LiteLLM_SpendLogs` rows (the demo writer's columns: nested metadata
with usage details, request tags, hashed key, empty bodies); 0.1 % of each file repeats
request ids of the file before it, as overlapping exports do. Then, each in its own child
process so that its peak RSS (resource.getrusage RUSAGE_CHILDREN) is its own:

- **connector**: `litellm.iter_litellm` over the day (DuckDB's JSON reader streams two
  files at a time in batches, ahead of polars' validation; bounded memory), every batch's rows and quarantine written as Parquet parts of
  the day's lake partition, swapped into place at the end; checks rows_read == written + quarantined, the duplicates, and
  the token total against what was generated;
- **bare read**: `polars.read_ndjson` of each file in turn (schema inferred, all fields),
  nothing else: the reference the issue names;
- **DuckDB parse alone**: the connector's own reader (`litellm._stream`, two files at a
  time as the connector reads them), every batch handed to polars and dropped: the floor
  under the connector (inflate + JSON parse).

Prints a markdown table with wall and CPU seconds of each child (CPU time is what to
compare on a machine other jobs share). Targets: >= 500,000 rows/s, <= 2x the bare read,
peak < 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DAY = date(2026, 10, 1)
DAY_START_US = 1_790_812_800_000_000  # 2026-10-01T00:00:00Z
DUPLICATE_SHARE = 0.001
TARGET_ROWS_PER_S = 500_000
TARGET_RATIO = 2.0
TARGET_PEAK_MB = 4096
# (model_group, model, provider, api_base): self-hosted deployments and hosted APIs.
ROUTES = [
    ("llama-3.1-70b-instruct", "meta-llama/Llama-3.1-70B-Instruct", "hosted_vllm",
     "http://10.0.12.4:8000/v1"),
    ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "hosted_vllm", "http://10.0.12.9:8000/v1"),
    ("gpt-4o", "gpt-4o-2024-08-06", "openai", "https://api.openai.com/v1"),
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai", "https://api.openai.com/v1"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "anthropic",
     "https://api.anthropic.com/v1/messages"),
]
FEATURES = ["chat-assistant", "doc-summarize", "code-review", "search-rerank"]


def generate_file(path: str, index: int, rows: int, first_id: int) -> dict:
    """One file of `rows` spend-log rows; returns its token totals and duplicate count."""
    import hashlib

    import numpy as np
    import polars as pl

    rng = np.random.default_rng(index)
    dups = int(rows * DUPLICATE_SHARE) if index > 0 else 0
    # Ids: this file's own, then repeats of the first ids of the file before it (files
    # start `2 * rows` ids apart).
    own = np.arange(first_id, first_id + rows - dups)
    earlier = np.arange(first_id - 2 * rows, first_id - 2 * rows + dups)
    ids = np.concatenate([own, earlier]).astype(np.int64)
    route = rng.integers(0, len(ROUTES), rows)
    prompt = np.clip(rng.lognormal(np.log(1020), 0.99, rows), 20, 120_000).astype(np.int64)
    completion = np.clip(rng.lognormal(np.log(129), 0.86, rows), 1, 8_000).astype(np.int64)
    cached = np.where((route >= 2) & (rng.random(rows) < 0.3), prompt // 2, 0)
    start_us = DAY_START_US + (ids * 8_639 % 86_400_000) * 1000
    latency_us = (150_000 + completion * 15_000).astype(np.int64)
    keys = [hashlib.sha256(f"sk-team-{t}".encode()).hexdigest() for t in range(5)]
    pick = pl.Series(route, dtype=pl.Int64)
    frame = pl.DataFrame({
        "_id": ids, "_route": pick, "_start": start_us, "_latency": latency_us,
        "prompt_tokens": prompt, "completion_tokens": completion, "_cached": cached,
        "_customer": rng.integers(0, 500, rows), "_feature": rng.integers(0, 4, rows),
        "_key": rng.integers(0, 5, rows),
    })

    def lookup(values: list[str], by: str) -> pl.Expr:
        return pl.lit(pl.Series(values)).get(pl.col(by))

    ts = pl.col("_start").cast(pl.Datetime("us", "UTC"))
    iso = "%Y-%m-%dT%H:%M:%S%.3fZ"
    df = frame.select(
        pl.format("chatcmpl-{}", pl.col("_id").hash(seed=7).cast(pl.String) + "-"
                  + pl.col("_id").cast(pl.String)).alias("request_id"),
        pl.lit("acompletion").alias("call_type"),
        lookup(keys, "_key").alias("api_key"),
        (pl.col("prompt_tokens") * 2.5e-6 + pl.col("completion_tokens") * 1e-5)
        .round(9).alias("spend"),
        (pl.col("prompt_tokens") + pl.col("completion_tokens")).alias("total_tokens"),
        "prompt_tokens", "completion_tokens",
        ts.dt.strftime(iso).alias("startTime"),
        (ts + pl.duration(microseconds=pl.col("_latency"))).dt.strftime(iso).alias("endTime"),
        (ts + pl.duration(microseconds=pl.col("_latency") // 4)).dt.strftime(iso)
        .alias("completionStartTime"),
        lookup([r[1] for r in ROUTES], "_route").alias("model"),
        lookup([hashlib.sha256(r[0].encode()).hexdigest() for r in ROUTES], "_route")
        .alias("model_id"),
        lookup([r[0] for r in ROUTES], "_route").alias("model_group"),
        lookup([r[2] for r in ROUTES], "_route").alias("custom_llm_provider"),
        lookup([r[3] for r in ROUTES], "_route").alias("api_base"),
        pl.lit("").alias("user"),
        pl.format("cust_{}", pl.col("_customer")).alias("end_user"),
        pl.lit("team-platform").alias("team_id"),
        pl.lit("False").alias("cache_hit"),
        pl.lit("Cache OFF").alias("cache_key"),
        pl.lit("").alias("requester_ip_address"),
        pl.lit("success").alias("status"),
        pl.lit("{}").alias("messages"),
        pl.lit("{}").alias("response"),
        pl.concat_list(pl.format("feature:{}", lookup(FEATURES, "_feature")),
                       pl.lit("env:prod")).alias("request_tags"),
        pl.struct(
            lookup(keys, "_key").alias("user_api_key"),
            pl.lit("team-platform").alias("user_api_key_team_id"),
            pl.format("cust_{}", pl.col("_customer")).alias("user_api_key_end_user_id"),
            pl.struct(
                pl.struct(pl.col("_cached").alias("cached_tokens")).alias("prompt_tokens_details"),
                pl.struct(pl.lit(0).alias("reasoning_tokens")).alias("completion_tokens_details"),
            ).alias("additional_usage_values"),
        ).alias("metadata"),
    )
    df.write_ndjson(path, compression="gzip", compression_level=1)
    own_rows = frame.head(rows - dups)
    return {"rows": rows, "duplicates": dups, "bytes": os.path.getsize(path),
            "uncached": int((own_rows["prompt_tokens"] - own_rows["_cached"]).sum()),
            "output": int(own_rows["completion_tokens"].sum())}


def generate(workdir: Path, requests: int, files: int, workers: int) -> dict:
    per_file = requests // files
    folder = workdir / "landing" / "gateway_logs" / "litellm" / "2026" / "10" / "01"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder / f"spend_logs-{i:03d}.jsonl.gz"), i, per_file,
             i * per_file * 2) for i in range(files)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        done = list(pool.map(generate_file, *zip(*jobs)))
    return {"files": files, "rows": sum(d["rows"] for d in done),
            "duplicates": sum(d["duplicates"] for d in done),
            "bytes": sum(d["bytes"] for d in done),
            "uncached": sum(d["uncached"] for d in done),
            "output": sum(d["output"] for d in done)}


def run_connector(workdir: Path) -> dict:
    import polars as pl

    from connectors import lake
    from connectors.landing import LocalStore
    from connectors.litellm import iter_litellm
    from connectors.schemas import QUARANTINE

    store = LocalStore(workdir / "landing")
    keys = [o.key for o in store.list("gateway_logs/litellm")]
    root = workdir / "lake"
    rows = lake.PartitionWriter(root, "gateway_requests", DAY)
    bad = lake.PartitionWriter(root, "_quarantine/gateway_requests", DAY, QUARANTINE)
    started = time.perf_counter()
    read = written = quarantined = uncached = output = 0
    for part in iter_litellm(store, keys):
        read += part.rows_read
        written += part.rows_written
        quarantined += part.rows_quarantined
        uncached += int(part.rows["input_uncached_tokens"].sum())
        output += int(part.rows["output_tokens"].sum())
        rows.write(part.rows)
        bad.write(part.quarantine)
    rows.commit()
    bad.commit()
    seconds = time.perf_counter() - started
    lake_rows = pl.scan_parquet(root / "gateway_requests" / "*" / "*.parquet").select(
        pl.len()).collect().item()
    return {"seconds": seconds, "rows_read": read, "rows_written": written,
            "rows_quarantined": quarantined, "lake_rows": lake_rows,
            "uncached": uncached, "output": output}


def run_bare(workdir: Path) -> dict:
    import polars as pl

    files = sorted((workdir / "landing").rglob("*.jsonl.gz"))
    started = time.perf_counter()
    rows = 0
    for f in files:
        rows += pl.read_ndjson(f).height
    return {"seconds": time.perf_counter() - started, "rows_read": rows}


def run_duckdb_floor(workdir: Path) -> dict:
    """The connector's own parse, nothing else: DuckDB's JSON reader over each file with the
    connector's projection, two files at a time as the connector reads them, every batch
    handed to polars. The floor under the connector."""
    from connectors.landing import LocalStore
    from connectors.litellm import _parsed_files, _prefetched

    store = LocalStore(workdir / "landing")
    keys = [o.key for o in store.list("gateway_logs/litellm")]
    started = time.perf_counter()
    # Local files: nothing is downloaded into the spool folder.
    files = _parsed_files(store, keys, spool=workdir)
    rows = sum(batch.height for _, _, batches in _prefetched(files) for batch in batches)
    return {"seconds": time.perf_counter() - started, "rows_read": rows}


def measure(kind: str, workdir: Path) -> dict:
    """Run one measurement in a child and add the child's peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--run", kind, "--workdir", str(workdir)],
                         check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["peak_mb"] = usage.ru_maxrss / 1024
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--workers", type=int, default=min(10, os.cpu_count() or 1))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--run", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        # Every reader runs with the product's process settings (polars' allocator,
        # configured by `connectors` before polars loads), the bare read included.
        import connectors  # noqa: F401

        run = {"connector": run_connector, "bare": run_bare, "duckdb_floor": run_duckdb_floor}
        print(json.dumps(run[args.run](args.workdir)))
        return
    if args.measure:
        print(json.dumps(measure(args.measure, args.workdir)))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="inferledger-bench-gateway-"))
    try:
        started = time.perf_counter()
        generated = generate(workdir, args.requests, args.files, args.workers)
        gen_s = time.perf_counter() - started
        # Each measurement from its own parent process, so RUSAGE_CHILDREN is its alone.
        results = {}
        for kind in KINDS:
            # The files just generated, and the previous run's lake, are flushed first: the
            # kernel would otherwise write them back during the next measurement.
            os.sync()
            out = subprocess.run([sys.executable, __file__, "--measure", kind, "--workdir",
                                  str(workdir)], check=True, capture_output=True, text=True)
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        report(generated, gen_s, results)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


KINDS = ["bare", "duckdb_floor", "connector"]


def report(generated: dict, gen_s: float, results: dict) -> None:
    c, b, f = results["connector"], results["bare"], results["duckdb_floor"]
    rows = generated["rows"]
    ok_balance = c["rows_read"] == c["rows_written"] + c["rows_quarantined"] == rows
    ok_dups = c["rows_quarantined"] == generated["duplicates"] and c["lake_rows"] == c[
        "rows_written"]
    ok_tokens = (c["uncached"], c["output"]) == (generated["uncached"], generated["output"])
    ratio = c["seconds"] / b["seconds"]
    cpu_ratio = c["cpu_seconds"] / b["cpu_seconds"]
    print(f"cpus {os.cpu_count()}; {rows:,} requests in {generated['files']} files, "
          f"{generated['bytes'] / 1e9:.2f} GB gzip, generated in {gen_s:.0f} s")
    print("| run | wall s | rows/s | CPU s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in (("bare polars.read_ndjson", b), ("DuckDB parse alone (the connector's floor)", f),
                    ("connector -> lake", c)):
        print(f"| {name} | {r['seconds']:.1f} | {rows / r['seconds']:,.0f} "
              f"| {r['cpu_seconds']:.1f} | {r['peak_mb']:,.0f} |")
    print(f"connector / bare: wall {ratio:.2f}, CPU {cpu_ratio:.2f} (target <= {TARGET_RATIO}; "
          "CPU time is the fairer figure on a shared machine)")
    print(f"balance {ok_balance}, duplicates counted once {ok_dups}, tokens exact {ok_tokens}")
    passed = (rows / c["seconds"] >= TARGET_ROWS_PER_S and ratio <= TARGET_RATIO
              and c["peak_mb"] < TARGET_PEAK_MB and ok_balance and ok_dups and ok_tokens)
    print("PASS" if passed else "FAIL")


if __name__ == "__main__":
    main()
