"""The demo company's GPU telemetry: DCGM long CSV, one gzip file per host and UTC day.

`gpu_telemetry/dcgm/YYYY-MM-DD/<hostname>.csv.gz`, one sample a minute for every GPU of
every running instance, six DCGM fields. Load follows the gateway writer's request volume:
a deployment's GPUs are as busy as its share of expected requests per minute over its
GPU count, so the marts see busy time and tokens move together; the spare node (no
deployment) idles at 2-5 %. One GPU's energy counter restarts mid-month (a driver reload),
and one host-day is written as Prometheus text instead, to exercise that reader.
"""

from __future__ import annotations

import gzip
import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.demo.gateway import deployment_share, expected_requests_per_minute
from pipelines.demo.world import Instance, World

HEADER = ["timestamp", "Hostname", "gpu", "UUID", "modelName", "GPU_I_PROFILE", "GPU_I_ID",
          "namespace", "pod", "container", "metric", "value"]
# modelName -> (framebuffer MiB, idle W, max W)
GPU_SPECS = {
    "NVIDIA H100 80GB HBM3": (81559, 70.0, 700.0),
    "NVIDIA L40S": (46068, 35.0, 350.0),
}
_DEFAULT_SPEC = (81559, 60.0, 400.0)
# DCGM field, HELP text, Prometheus type, decimals written
FIELDS = [
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "gauge", 0),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.", "gauge", 6),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "Ratio of cycles the tensor (HMMA) pipe is active.",
     "gauge", 6),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "gauge", 0),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "gauge", 3),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).",
     "counter", 0),
]
DRIVER_VERSION = "550.90.07"


def gpu_uuid(hostname: str, index: int) -> str:
    """A stable, UUID-shaped GPU id for a host's n-th GPU."""
    h = hashlib.sha256(f"{hostname}/{index}".encode()).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def write_telemetry(world: World, landing: Path) -> dict:
    """Write every host-day of DCGM samples; returns files, sample count and the planted reset."""
    landing = Path(landing)
    reset_day = world.day_list[len(world.day_list) // 2]
    reset_host = next((i for i in world.instances if i.gpus > 1), world.instances[0])
    reset = {"hostname": reset_host.hostname, "gpu_uuid": gpu_uuid(reset_host.hostname, 0),
             "ts": datetime(reset_day.year, reset_day.month, reset_day.day, 3, 17,
                            tzinfo=UTC)}
    prom_host_day = (next((i for i in world.instances if i.deployment is None),
                          world.instances[-1]).hostname, world.start)
    counters: dict[str, float] = {}  # energy counter per GPU, carried from day to day
    files, samples, writes = [], 0, []
    with ThreadPoolExecutor(max_workers=2) as pool:  # zlib releases the GIL
        for day in world.day_list:
            busy_by_deployment = _deployment_busy(world, day)
            for inst in world.instances:
                if not world.instance_active(inst, day):
                    continue
                frame = _host_day(world, inst, day, busy_by_deployment, counters, reset)
                folder = landing / "gpu_telemetry" / "dcgm" / day.isoformat()
                folder.mkdir(parents=True, exist_ok=True)
                if (inst.hostname, day) == prom_host_day:
                    path = folder / f"{inst.hostname}.prom"
                    path.write_text(_prometheus_text(frame))
                else:
                    path = folder / f"{inst.hostname}.csv.gz"
                    writes.append(pool.submit(_write_gz, path, frame.write_csv()))
                files.append(path.relative_to(landing).as_posix())
                samples += frame.height
        for w in writes:
            w.result()
    return {"files": files, "samples": samples, "counter_reset": reset}


def _write_gz(path: Path, text: str) -> None:
    path.write_bytes(gzip.compress(text.encode(), compresslevel=1))


def _deployment_busy(world: World, day: date) -> dict[str | None, np.ndarray]:
    """Per deployment, the busy fraction of each minute of the day for one of its GPUs."""
    per_minute = expected_requests_per_minute(world, day)
    shares = deployment_share(world)
    out: dict[str | None, np.ndarray] = {}
    for name, share in shares.items():
        gpus_now = sum(i.gpus for i in world.instances
                       if i.deployment == name and world.instance_active(i, day))
        gpus_base = sum(i.gpus for i in world.instances
                        if i.deployment == name and i.first_day == 0) or gpus_now
        if not gpus_now:
            continue
        # The busiest ordinary weekday minute (diurnal 1.45 x weekday 1.1) runs at ~90 %.
        reference = world.requests_per_day / 1440 * 1.45 * 1.1 * share / gpus_base
        out[name] = np.clip(0.05 + 0.85 * per_minute * share / gpus_now / reference, 0.02, 0.98)
    return out


def _host_day(world: World, inst: Instance, day: date, busy_by_deployment: dict,
              counters: dict[str, float], reset: dict) -> pl.DataFrame:
    rng = np.random.default_rng([world.seed, world.day_index(day),
                                 int(hashlib.sha256(inst.hostname.encode()).hexdigest()[:8], 16)])
    fb_total, idle_w, max_w = GPU_SPECS.get(inst.gpu_model, _DEFAULT_SPEC)
    shape = (inst.gpus, 1440)
    if inst.deployment is None or inst.deployment not in busy_by_deployment:
        util = rng.uniform(2.0, 5.0, shape)
        busy = util / 100 * rng.uniform(0.4, 0.8, shape)
        fb = np.full(shape, 512.0) + rng.integers(0, 64, shape)
    else:
        busy = np.clip(busy_by_deployment[inst.deployment] + rng.normal(0, 0.03, shape), 0.01, 0.99)
        # GPU_UTIL counts any kernel running in the sample period, so it reads above busy time.
        util = np.clip(busy * 100 * 1.12 + 3, 0, 100)
        # vLLM reserves ~90 % of the framebuffer for weights and KV cache at start-up.
        fb = np.full(shape, fb_total * 0.9) + rng.integers(-256, 256, shape)
    tensor = busy * rng.uniform(0.55, 0.7, shape)
    power = idle_w + (max_w - idle_w) * busy ** 0.9 + rng.normal(0, 4, shape)
    energy = _energy_counter(inst, day, power, counters, reset)

    uuids = [gpu_uuid(inst.hostname, g) for g in range(inst.gpus)]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    stamps = [(start + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in range(1440)]
    values = [util, busy, tensor, fb, power, energy]
    blocks = []
    for (field, _, _, decimals), value in zip(FIELDS, values):
        v = pl.Series(value.ravel())
        text = (v.round(0).cast(pl.Int64) if decimals == 0 else v.round(decimals)).cast(pl.String)
        blocks.append(pl.DataFrame({"_gpu": np.repeat(np.arange(inst.gpus), 1440),
                                    "_minute": np.tile(np.arange(1440), inst.gpus),
                                    "metric": field, "value": text}))
    # Empty labels are written as empty CSV fields (null), as the exporter leaves them blank.
    ns, pod, container = (("inference", f"{inst.deployment}-{inst.hostname.split('.')[0]}", "vllm")
                          if inst.deployment else (None, None, None))
    return (
        pl.concat(blocks)
        .sort("_minute", "_gpu", maintain_order=True)
        .with_columns(
            pl.lit(pl.Series(stamps)).gather(pl.col("_minute")).alias("timestamp"),
            pl.lit(inst.hostname).alias("Hostname"),
            pl.col("_gpu").cast(pl.String).alias("gpu"),
            pl.lit(pl.Series(uuids)).gather(pl.col("_gpu")).alias("UUID"),
            pl.lit(inst.gpu_model).alias("modelName"),
            pl.lit(None, pl.String).alias("GPU_I_PROFILE"),
            pl.lit(None, pl.String).alias("GPU_I_ID"),
            pl.lit(ns, pl.String).alias("namespace"),
            pl.lit(pod, pl.String).alias("pod"),
            pl.lit(container, pl.String).alias("container"),
        )
        .select(HEADER)
    )


def _energy_counter(inst: Instance, day: date, power: np.ndarray, counters: dict[str, float],
                    reset: dict) -> np.ndarray:
    """Cumulative mJ per GPU and minute, continuing yesterday's counter; one GPU restarts."""
    per_minute_mj = power * 60 * 1000
    out = np.empty_like(per_minute_mj)
    for g in range(inst.gpus):
        uuid = gpu_uuid(inst.hostname, g)
        # A GPU has been up a while before the month starts: the counter does not start at 0.
        base = counters.get(uuid, 3.6e9 * (5 + g))
        series = base + np.cumsum(per_minute_mj[g])
        if uuid == reset["gpu_uuid"] and reset["ts"].date() == day:
            at = reset["ts"].hour * 60 + reset["ts"].minute
            series[at:] = np.cumsum(per_minute_mj[g, at:])
        out[g] = series
        counters[uuid] = float(series[-1])
    return out


def _prometheus_text(frame: pl.DataFrame) -> str:
    """The same samples as dcgm-exporter exposition lines with millisecond timestamps."""
    ms = (pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC")
          .dt.epoch("ms").cast(pl.String))
    def label(name: str, column: str) -> list[pl.Expr]:
        return [pl.lit(f'{name}="'), pl.col(column).fill_null(""), pl.lit('"')]

    lines = frame.with_columns(pl.concat_str([
        pl.col("metric"), pl.lit("{"), *label("gpu", "gpu"), pl.lit(","), *label("UUID", "UUID"),
        pl.lit(',device="nvidia'), pl.col("gpu"), pl.lit('",'), *label("modelName", "modelName"),
        pl.lit(","), *label("Hostname", "Hostname"),
        pl.lit(f',DCGM_FI_DRIVER_VERSION="{DRIVER_VERSION}",'), *label("container", "container"),
        pl.lit(","), *label("namespace", "namespace"), pl.lit(","), *label("pod", "pod"),
        pl.lit("} "), pl.col("value"), pl.lit(" "), ms,
    ]).alias("line"))
    out = []
    for field, help_text, kind, _ in FIELDS:
        out += [f"# HELP {field} {help_text}", f"# TYPE {field} {kind}"]
        out += lines.filter(pl.col("metric") == field)["line"].to_list()
    return "\n".join(out) + "\n"
