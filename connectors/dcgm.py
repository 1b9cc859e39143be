"""NVIDIA DCGM exporter telemetry -> gpu_samples, and its hourly downsample -> gpu_hourly.

Two shapes are read:

* Prometheus text exposition with timestamps, as dcgm-exporter's series look when dumped
  from a scrape or a federation endpoint::

      # HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
      # TYPE DCGM_FI_DEV_GPU_UTIL gauge
      DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-...",modelName="NVIDIA L40S"} 87 1790812800000

  (timestamps in milliseconds since the epoch).
* The long CSV that DCGM pipelines dump, one sample per line::

      timestamp,Hostname,gpu,UUID,modelName,GPU_I_PROFILE,GPU_I_ID,namespace,pod,container,
        metric,value   (one header line)
      2026-10-01T00:00:00Z,ip-10-0-12-4,0,GPU-...,NVIDIA H100 80GB HBM3,,,,,,
        DCGM_FI_DEV_GPU_UTIL,87

  with ISO-8601 UTC timestamps and the DCGM field name as `metric`; plain or gzip.

Label spellings differ between exporter versions and Kubernetes setups (`Hostname` or
`hostname`, `pod` or `pod_name`, ...); every spelling in LABELS is read. DCGM writes a
"blank" sentinel (values >= 9.2e18) when a field has no value, and CSV dumps write `[N/A]`:
both become a null value, the row is kept so the gap stays visible. Unknown DCGM fields are
kept under their lowercased name: a new exporter field is data, not an error.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import polars as pl

from connectors.landing import LandingStore
from connectors.result import ParseResult, SourceFormatError, split_valid
from connectors.schemas import GPU_HOURLY, GPU_SAMPLES, QUARANTINE, TS, conform, empty

log = logging.getLogger(__name__)

SOURCE = "dcgm"

# DCGM field -> (canonical metric, unit)
METRICS: dict[str, tuple[str, str]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("gpu_util_pct", "%"),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("gr_engine_active", "ratio"),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("tensor_active", "ratio"),
    "DCGM_FI_DEV_FB_USED": ("fb_used_mib", "MiB"),
    "DCGM_FI_DEV_POWER_USAGE": ("power_w", "W"),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_mj", "mJ"),
}

# DCGM's blank sentinels (DCGM_INT64_BLANK and friends) all sit at or above this value.
BLANK_THRESHOLD = 9.2e18
# What CSV dumps write for "no value" (nvidia-smi style).
NA_STRINGS = ["", "[N/A]", "N/A", "[Not Supported]"]

# Normalized field -> the label / CSV column spellings seen in the wild, in priority order.
LABELS: dict[str, list[str]] = {
    "hostname": ["Hostname", "hostname"],
    "gpu_uuid": ["UUID", "uuid"],
    "gpu_index": ["gpu"],
    "gpu_model": ["modelName"],
    "mig_profile": ["GPU_I_PROFILE"],
    "mig_instance_id": ["GPU_I_ID"],
    "k8s_namespace": ["namespace", "pod_namespace", "exported_namespace"],
    "k8s_pod": ["pod", "pod_name", "exported_pod"],
    "k8s_container": ["container", "container_name", "exported_container"],
}

_MIG_SLICES_PER_GPU = 7  # H100 / A100: a `Ng.XXgb` profile holds N of 7 compute slices


def read_prometheus_text(data: bytes | Path, *, source_file: str) -> ParseResult:
    """Parse Prometheus text exposition (with ms timestamps) of dcgm-exporter series."""
    text = gunzip_if_compressed(_as_bytes(data), source_file).decode("utf-8", errors="replace")
    lines = (
        pl.DataFrame({"line": [text]})
        .select(pl.col("line").str.split("\n"))
        .explode("line")
        .with_row_index("_row_number", offset=1)
        .with_columns(pl.col("line").str.strip_chars())
        # Comments (# HELP / # TYPE / # EOF) and blank lines are not samples.
        .filter((pl.col("line") != "") & ~pl.col("line").str.starts_with("#"))
    )
    sample = r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$"
    line = pl.col("line")
    labels = line.str.extract(sample, 2).fill_null("")
    parsed = lines.with_columns(
        line.str.extract(sample, 1).alias("_field"),
        line.str.extract(sample, 3).alias("_value_text"),
        line.str.extract(sample, 4).alias("_ts_text"),
        *[
            _first_label(labels, spellings).alias(name)
            for name, spellings in LABELS.items()
        ],
    )
    ts = (
        pl.col("_ts_text").cast(pl.Int64, strict=False).cast(pl.Datetime("ms", "UTC")).cast(TS)
    )
    parsed = parsed.with_columns(ts.alias("ts"))
    unparseable = pl.when(pl.col("_field").is_null()).then(
        pl.lit("line is not a Prometheus sample (name{labels} value timestamp)")
    )
    no_ts = pl.when(pl.col("_ts_text").is_null()).then(
        pl.lit("sample has no timestamp; export the series with timestamps (ms)")
    )
    return finish_samples(parsed, source_file, keep_raw=["line"], extra_reasons=[unparseable, no_ts])


def read_dcgm_csv(data: bytes | Path, *, source_file: str) -> ParseResult:
    """Parse the long DCGM CSV (timestamp, labels..., metric, value), plain or gzip."""
    raw = gunzip_if_compressed(_as_bytes(data), source_file)
    if not raw.strip():
        return ParseResult(empty(GPU_SAMPLES), empty(QUARANTINE), 0, [source_file])
    df = pl.read_csv(raw, infer_schema=False, truncate_ragged_lines=False)
    missing = [c for c in ("timestamp", "metric", "value") if c not in df.columns]
    if not any(c in df.columns for c in LABELS["gpu_uuid"]):
        missing.append("UUID")
    if missing:
        raise SourceFormatError(
            f"{source_file}: DCGM CSV lacks required column(s) {missing}; expected the header "
            "timestamp,Hostname,gpu,UUID,modelName,GPU_I_PROFILE,GPU_I_ID,namespace,pod,"
            "container,metric,value (re-export with these columns)"
        )
    raw_cols = df.columns
    parsed = df.with_row_index("_row_number", offset=1).with_columns(
        pl.col("metric").str.strip_chars().alias("_field"),
        pl.col("value").alias("_value_text"),
        parse_iso_utc(pl.col("timestamp")).alias("ts"),
        *[
            pl.coalesce(
                [_blank_to_null(pl.col(c)) for c in spellings if c in df.columns]
                or [pl.lit(None, pl.String)]
            ).alias(name)
            for name, spellings in LABELS.items()
        ],
    )
    bad_ts = pl.when(pl.col("ts").is_null()).then(
        pl.format("unparseable timestamp '{}' (expected ISO-8601 UTC)", pl.col("timestamp"))
    )
    no_metric = pl.when(_blank_to_null(pl.col("_field")).is_null()).then(
        pl.lit("empty metric name")
    )
    return finish_samples(parsed, source_file, keep_raw=raw_cols, extra_reasons=[no_metric, bad_ts])


def read_gpu_telemetry(store: LandingStore, keys: list[str]) -> ParseResult:
    """Read DCGM files from the landing store, dispatching on the file extension."""
    return ParseResult.concat(
        [read_gpu_telemetry_bytes(_read(store, key), key) for key in keys], GPU_SAMPLES)


def read_gpu_telemetry_bytes(data: bytes, key: str) -> ParseResult:
    """One DCGM file (plain or gzip): Prometheus text or long CSV, by its extension."""
    name = key.rsplit("/", 1)[-1]
    if name.endswith((".prom", ".prom.gz")):
        return read_prometheus_text(data, source_file=key)
    if name.endswith((".csv", ".csv.gz")):
        return read_dcgm_csv(data, source_file=key)
    raise SourceFormatError(
        f"{key}: not a DCGM telemetry file this reader knows; expected .prom, .prom.gz,"
        " .csv or .csv.gz (move other files out of gpu_telemetry/)"
    )


def mig_gpu_fraction(profile: pl.Expr) -> pl.Expr:
    """Share of a physical GPU a MIG profile holds: `3g.40gb` -> 3/7; no profile -> 1.0.

    An unknown profile spelling yields null rather than a guess, so the cost split shows it.
    """
    slices = profile.str.extract(r"^(\d+)g\.", 1).cast(pl.Float64)
    return pl.when(profile.is_null()).then(1.0).otherwise(slices / _MIG_SLICES_PER_GPU)


def downsample_hourly(samples: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Aggregate gpu_samples to one row per hour and GPU (or MIG instance): GPU_HOURLY.

    * samples: distinct scrape timestamps in the hour.
    * busy_fraction: mean gr_engine_active where DCGM profiling is on, else gpu_util_pct/100
      (GPU_UTIL only says "a kernel ran during the interval", so it overstates busy time).
    * energy_wh: sum of the energy counter's deltas whose later sample falls in the hour; a
      drop (driver restart resets the counter) counts the post-reset value as the delta.
      Without an energy counter: power_w_avg x the hours the power samples cover.
    """
    lf = samples.lazy() if isinstance(samples, pl.DataFrame) else samples
    gpu_key = ["hostname", "gpu_uuid", "mig_instance_id"]
    lf = lf.with_columns(pl.col("ts").dt.truncate("1h").alias("hour_start"))
    keys = ["hour_start", *gpu_key]

    def avg(metric: str) -> pl.Expr:
        return pl.col("value").filter(pl.col("metric") == metric).mean()

    hourly = lf.group_by(keys).agg(
        pl.col("ts").n_unique().cast(pl.Int64).alias("samples"),
        *[pl.col(c).drop_nulls().first().alias(c)
          for c in ("gpu_index", "gpu_model", "mig_profile", "k8s_namespace", "k8s_pod")],
        avg("gpu_util_pct").alias("gpu_util_pct_avg"),
        avg("gr_engine_active").alias("_gr_active_avg"),
        avg("power_w").alias("power_w_avg"),
        avg("fb_used_mib").alias("fb_used_mib_avg"),
        pl.col("value").filter(pl.col("metric") == "power_w").count().alias("_power_samples"),
    )
    energy = (
        lf.filter((pl.col("metric") == "energy_mj") & pl.col("value").is_not_null())
        .select(*keys, "ts", "value")
        .sort([*gpu_key, "ts"])
        .with_columns(pl.col("value").diff().over(gpu_key).alias("_delta"))
        .with_columns(
            # A drop means the counter restarted from zero: the new value is what accrued.
            pl.when(pl.col("_delta") < 0).then(pl.col("value")).otherwise(pl.col("_delta"))
            .alias("_delta")
        )
        .group_by(keys)
        .agg((pl.col("_delta").sum() / 3.6e6).alias("_energy_counter_wh"),
             pl.len().alias("_energy_samples"))
    )
    # Sampling interval per GPU, to turn power samples into covered hours.
    interval = (
        lf.filter(pl.col("metric") == "power_w")
        .select(*gpu_key, "ts")
        .unique()
        .sort([*gpu_key, "ts"])
        .with_columns(pl.col("ts").diff().over(gpu_key).dt.total_microseconds().alias("_dt_us"))
        .group_by(gpu_key)
        .agg(pl.col("_dt_us").median().alias("_interval_us"))
    )
    out = (
        hourly.join(energy, on=keys, how="left", nulls_equal=True)
        .join(interval, on=gpu_key, how="left", nulls_equal=True)
        .with_columns(
            pl.coalesce(pl.col("_gr_active_avg"), pl.col("gpu_util_pct_avg") / 100)
            .alias("busy_fraction"),
            pl.when(pl.col("_energy_samples").is_not_null())
            .then(pl.col("_energy_counter_wh").fill_null(0.0))
            .otherwise(
                pl.col("power_w_avg")
                * pl.min_horizontal(
                    pl.col("_power_samples") * pl.col("_interval_us") / 3.6e9, pl.lit(1.0)
                )
            )
            .alias("energy_wh"),
            mig_gpu_fraction(pl.col("mig_profile")).alias("gpu_fraction"),
        )
        .sort(keys, nulls_last=True)
    )
    return conform(out.select([c for c in GPU_HOURLY]).collect(), GPU_HOURLY)


def finish_samples(
    parsed: pl.DataFrame, source_file: str, *, keep_raw: list[str], extra_reasons: list[pl.Expr]
) -> ParseResult:
    """Shared tail of the DCGM readers (text, CSV, Prometheus API): value parsing, metric
    mapping, validation. `parsed` holds `_row_number`, `_field`, `_value_text`, `ts` and
    the LABELS columns."""
    value_text = pl.col("_value_text").str.strip_chars()
    is_na = value_text.is_null() | value_text.is_in(NA_STRINGS)
    number = value_text.cast(pl.Float64, strict=False)
    parsed = parsed.with_columns(
        number.alias("_number"),
        is_na.alias("_is_na"),
    )
    bad_value = pl.when(~pl.col("_is_na") & pl.col("_number").is_null()).then(
        pl.format("unparseable value '{}'", pl.col("_value_text"))
    )
    no_gpu = pl.when(pl.col("gpu_uuid").is_null()).then(
        pl.lit("missing GPU identity (no UUID/uuid label)")
    )
    reason = pl.coalesce([*extra_reasons, bad_value, no_gpu])
    read = parsed.height
    good, quarantined = split_valid(
        parsed, reason, source=SOURCE, source_file=source_file, keep_raw=keep_raw
    )
    field = pl.col("_field")
    mapping = pl.DataFrame(
        {
            "_field": list(METRICS),
            "_metric": [m for m, _ in METRICS.values()],
            "_unit": [u for _, u in METRICS.values()],
        }
    )
    blank = pl.col("_number") >= BLANK_THRESHOLD
    rows = good.join(mapping, on="_field", how="left").with_columns(
        pl.coalesce(pl.col("_metric"), field.str.to_lowercase()).alias("metric"),
        pl.col("_unit").alias("unit"),
        pl.when(blank | pl.col("_is_na") | pl.col("_number").is_nan())
        .then(None)
        .otherwise(pl.col("_number"))
        .alias("value"),
        pl.col("gpu_index").cast(pl.Int32, strict=False),
        pl.lit(SOURCE).alias("source"),
        pl.lit(source_file).alias("source_file"),
    )
    rows = conform(rows.select([c for c in GPU_SAMPLES if c in rows.columns]), GPU_SAMPLES)
    nulls = rows["value"].null_count()
    if nulls:
        log.info("%s: %d sample(s) carried no value (DCGM blank / N/A), kept as null",
                 source_file, nulls)
    return ParseResult(rows=rows, quarantine=quarantined, rows_read=read, files=[source_file])


def _first_label(labels: pl.Expr, spellings: list[str]) -> pl.Expr:
    """The first of the label spellings present in a `{k="v",...}` label set, empty -> null."""
    return pl.coalesce(
        [
            _blank_to_null(labels.str.extract(rf'(?:^|,)\s*{name}="((?:[^"\\]|\\.)*)"', 1))
            for name in spellings
        ]
    )


def _blank_to_null(e: pl.Expr) -> pl.Expr:
    e = e.str.strip_chars()
    return pl.when(e == "").then(None).otherwise(e)


def parse_iso_utc(e: pl.Expr) -> pl.Expr:
    """ISO-8601 text to UTC; `Z` or an offset is honoured, a naive value is taken as UTC.

    A date alone is midnight UTC; an impossible value (`2023-02-30`) becomes null, which
    callers quarantine.
    """
    e = e.str.strip_chars().str.replace(r"^(\d{4}-\d\d-\d\d) ", "${1}T")
    aware = (
        e.str.replace(r"Z$", "+00:00")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us")
        .dt.convert_time_zone("UTC")
    )
    naive = pl.coalesce(
        e.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"),
        e.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")),
    )
    return (
        pl.when(e.str.contains(r"(Z|[+-]\d\d:?\d\d)$"))
        .then(aware)
        .otherwise(naive.dt.replace_time_zone("UTC"))
    )


def _as_bytes(data: bytes | Path) -> bytes:
    return Path(data).read_bytes() if isinstance(data, Path) else data


def gunzip_if_compressed(data: bytes, source_file: str) -> bytes:
    """Gzip is recognised by its magic bytes, whatever the file is called; damaged gzip
    data fails the file with SourceFormatError naming it."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise SourceFormatError(
            f"{source_file}: damaged gzip data ({e}); re-upload or re-export the file"
        ) from e


def _read(store: LandingStore, key: str) -> bytes:
    path = store.local_path(key)
    return path.read_bytes() if path is not None else store.read_bytes(key)


def parse_iso_utc_series(text: pl.Series) -> pl.Series:
    """parse_iso_utc for a whole column, fast on the common spelling.

    Logs write `2026-10-01T10:00:00.123Z` on nearly every row; one strptime pass reads
    those, and only the rows it could not read go through the general parser.
    """
    fast = text.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.fZ", strict=False, time_unit="us"
    ).dt.replace_time_zone("UTC")
    missed = fast.is_null() & text.is_not_null()
    if missed.any():
        where = missed.arg_true()
        slow = pl.select(parse_iso_utc(pl.lit(text.gather(where)))).to_series()
        fast = fast.scatter(where, slow)
    return fast.alias(text.name)
