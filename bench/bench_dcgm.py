"""A day of DCGM telemetry for 1,000 GPUs through the connector and the hour and minute downsamples.

    .venv/bin/python bench/bench_dcgm.py --gpus 1000 --interval 15

Generates one gzip long-CSV file per host and day (8 GPUs a host, 6 DCGM fields, a sample
every `interval` seconds: 1,000 GPUs x 6 x 5,760 = 34.6 million samples), one child process
per batch of hosts. Then, in a child process whose peak RSS is read with
resource.getrusage(RUSAGE_CHILDREN), host file by host file as the daily ingestion reads
them (`sources.telemetry_window`: `dcgm.read_gpu_telemetry_bytes` in reader threads, files
in order), the samples written as a Parquet part of the day's gpu_samples partition and fed to
`dcgm.HourlyAndMinutely` (as the daily ingestion does). Then the day's gpu_hourly and
gpu_minutely tables from its partials. Checks the sample count, one
hourly row per GPU and hour and one minute row per GPU and minute, and energy from the
counter against mean power x the period. Target: peak < 4 GB.
"""

from __future__ import annotations

import argparse
import gzip
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
DAY_START_S = 1_790_812_800
GPUS_PER_HOST = 8
TARGET_PEAK_MB = 4096
FIELDS = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
          "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE",
          "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]


def generate_host(path: str, host: int, interval: int) -> int:
    """One host's day: 8 GPUs x 6 fields; returns the number of samples."""
    import numpy as np
    import polars as pl

    steps = 86_400 // interval
    rng = np.random.default_rng(host)
    gpu = np.repeat(np.arange(GPUS_PER_HOST), steps)
    step = np.tile(np.arange(steps), GPUS_PER_HOST)
    load = np.clip(0.5 + 0.4 * np.sin(step / steps * 2 * np.pi)
                   + rng.normal(0, 0.05, step.size), 0, 1)
    power = 70 + 630 * load
    # The energy counter integrates power (mJ) from an arbitrary boot value.
    energy = (np.cumsum(power.reshape(GPUS_PER_HOST, steps) * interval * 1000, axis=1)
              .ravel() + 1e9)
    hostname = f"gpu-host-{host:04d}"
    base = pl.DataFrame({
        "timestamp": pl.Series(DAY_START_S + step * interval).cast(pl.Int64) * 1_000_000,
        "gpu": gpu,
    }).select(
        pl.col("timestamp").cast(pl.Datetime("us", "UTC")).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.lit(hostname).alias("Hostname"),
        pl.col("gpu").cast(pl.String),
        pl.format("GPU-{}-{}", pl.lit(f"{host:04d}"), pl.col("gpu")).alias("UUID"),
        pl.lit("NVIDIA H100 80GB HBM3").alias("modelName"),
        pl.lit("").alias("GPU_I_PROFILE"), pl.lit("").alias("GPU_I_ID"),
        pl.lit("inference").alias("namespace"),
        pl.format("vllm-{}-{}", pl.lit(host), pl.col("gpu") // 4).alias("pod"),
        pl.lit("vllm").alias("container"),
    )
    values = [np.round(load * 100), np.round(load, 4), np.round(load * 0.6, 4),
              np.full(step.size, 61_440.0), np.round(power, 3), np.round(energy)]
    frames = [base.with_columns(pl.lit(field).alias("metric"),
                                pl.Series("value", v).cast(pl.String))
              for field, v in zip(FIELDS, values)]
    table = pl.concat(frames)
    Path(path).write_bytes(gzip.compress(table.write_csv().encode(), compresslevel=1))
    return table.height


def generate(workdir: Path, gpus: int, interval: int, workers: int) -> dict:
    folder = workdir / "landing" / "gpu_telemetry" / "dcgm" / DAY.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    hosts = gpus // GPUS_PER_HOST
    paths = [str(folder / f"gpu-host-{h:04d}.csv.gz") for h in range(hosts)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        samples = sum(pool.map(generate_host, paths, range(hosts), [interval] * hosts))
    return {"hosts": hosts, "gpus": hosts * GPUS_PER_HOST, "samples": samples,
            "bytes": sum(os.path.getsize(p) for p in paths)}


def run_connector(workdir: Path) -> dict:
    from connectors import dcgm, lake, sources
    from connectors.landing import LocalStore

    store = LocalStore(workdir / "landing")
    root = workdir / "lake"
    samples = lake.PartitionWriter(root, "gpu_samples", DAY)
    started = time.perf_counter()
    read = written = quarantined = 0
    downsample = dcgm.HourlyAndMinutely()
    # The product's reader: files in order, the next ones inflated and parsed in threads
    # (sources.TELEMETRY_READERS) while this one is written.
    stream = sources.telemetry_window(store, [DAY])
    assert len(stream.objects) == len(store.list("gpu_telemetry"))
    for result in stream.parts:
        read += result.rows_read
        written += result.rows_written
        quarantined += result.rows_quarantined
        samples.write(result.rows)
        downsample.add(result.rows)  # as the daily ingestion does, file by file as written
        del result
    samples.commit()
    seconds = time.perf_counter() - started
    minute_started = time.perf_counter()
    day, minutely = downsample.finish()
    lake.write_table(root, "gpu_hourly", DAY, day)
    lake.write_table(root, "gpu_minutely", DAY, minutely)
    minute_seconds = time.perf_counter() - minute_started
    energy_vs_power = (day["energy_wh"] / day["power_w_avg"]).median()
    minute_energy = (minutely["energy_wh"] / (minutely["power_w_avg"] / 60)).median()
    return {"seconds": seconds, "minute_seconds": minute_seconds, "rows_read": read,
            "rows_written": written, "rows_quarantined": quarantined,
            "hourly_rows": day.height, "minute_rows": minutely.height,
            "energy_over_power_median": energy_vs_power,
            "minute_energy_over_power_median": minute_energy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=15)
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        import connectors  # noqa: F401  (the product's allocator settings, before polars loads)

        print(json.dumps(run_connector(args.workdir)))
        return
    if args.measure:
        out = subprocess.run([sys.executable, __file__, "--run", "--workdir",
                              str(args.workdir)], check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["peak_mb"] = usage.ru_maxrss / 1024
        result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(result))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="inferledger-bench-dcgm-"))
    try:
        started = time.perf_counter()
        generated = generate(workdir, args.gpus, args.interval, args.workers)
        gen_s = time.perf_counter() - started
        # Measured from its own parent process, so RUSAGE_CHILDREN is the run's alone; the
        # generated files are flushed first, not written back during the measurement.
        os.sync()
        out = subprocess.run([sys.executable, __file__, "--measure", "--workdir", str(workdir)],
                             check=True, capture_output=True, text=True)
        report(generated, gen_s, json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def report(generated: dict, gen_s: float, r: dict) -> None:
    samples = generated["samples"]
    ok = (r["rows_read"] == r["rows_written"] == samples and r["rows_quarantined"] == 0
          and r["hourly_rows"] == generated["gpus"] * 24
          and r["minute_rows"] == generated["gpus"] * 1440
          and abs(r["energy_over_power_median"] - 1) < 0.01
          and abs(r["minute_energy_over_power_median"] - 1) < 0.01)
    print(f"cpus {os.cpu_count()}; {generated['gpus']:,} GPUs, {samples:,} samples in "
          f"{generated['hosts']} files, {generated['bytes'] / 1e9:.2f} GB gzip, "
          f"generated in {gen_s:.0f} s")
    print("| run | wall s | samples/s | CPU s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    total = r["seconds"] + r["minute_seconds"]
    print(f"| read + lake + downsample partials (fed as written) | {r['seconds']:.1f} | "
          f"{samples / r['seconds']:,.0f} | | |")
    print(f"| hour and minute tables from the partials | {r['minute_seconds']:.1f} | "
          f"{samples / r['minute_seconds']:,.0f} | | |")
    print(f"| all | {total:.1f} | {samples / total:,.0f} | {r['cpu_seconds']:.1f} | "
          f"{r['peak_mb']:,.0f} |")
    print(f"hourly rows {r['hourly_rows']:,}, minute rows {r['minute_rows']:,}; energy / "
          f"(mean power x period) median {r['energy_over_power_median']:.4f} (hour), "
          f"{r['minute_energy_over_power_median']:.4f} (minute); "
          f"checks {'ok' if ok else 'FAILED'}")
    print("PASS" if ok and r["peak_mb"] < TARGET_PEAK_MB else "FAIL")


if __name__ == "__main__":
    main()
