"""NVIDIA DCGM exporter telemetry -> gpu_samples, and its downsamples -> gpu_hourly, gpu_minutely.

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

A host-day of 15 s samples is ~280,000 lines whose labels and timestamps repeat: text work
(timestamp parsing, label cleaning, metric mapping) is done once per distinct value and
mapped back, and the downsamples aggregate with integer keys, in batches of BATCH_ROWS.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
from isal import isal_zlib

from connectors.landing import LandingStore
from connectors.result import ParseResult, SourceFormatError, split_valid
from connectors.schemas import (
    GPU_HOURLY,
    GPU_MINUTELY,
    GPU_SAMPLES,
    LABEL,
    QUARANTINE,
    TS,
    conform,
    empty,
)

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

_MAX_DEFLATE_RATIO = 1032  # deflate's limit: no gzip member inflates more than this
_MIG_SLICES_PER_GPU = 7  # H100 / A100: a `Ng.XXgb` profile holds N of 7 compute slices

# Downsamples read the samples in batches of this many rows (a day of 1,000 GPUs at 15 s
# is 34.6 M samples), so memory stays bounded whatever the caller hands over.
BATCH_ROWS = 4_000_000
_HOUR_US = 3_600_000_000
_MINUTE_US = 60_000_000
_GPU_KEY = ["hostname", "gpu_uuid", "mig_instance_id"]
_GPU_LABELS = ["gpu_index", "gpu_model", "mig_profile", "k8s_namespace", "k8s_pod"]
# Metrics averaged per period. A sample's metric code is its metric's index here, 4 for
# the energy counter, 5 for any other metric.
_AVERAGED = ["gpu_util_pct", "gr_engine_active", "power_w", "fb_used_mib"]
_POWER, _ENERGY, _OTHER = _AVERAGED.index("power_w"), 4, 5
_MJ_PER_WH = 3.6e6


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
    sample = (r"^(?P<_field>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<_labels>.*)\})?"
              r"\s+(?P<_value_text>\S+)(?:\s+(?P<_ts_text>-?\d+))?$")
    parsed = lines.with_columns(pl.col("line").str.extract_groups(sample).alias("_m")).unnest("_m")
    # A series repeats its label set on every sample: read each distinct set once.
    label_sets = parsed.get_column("_labels").fill_null("")
    distinct = label_sets.unique().to_frame("_labels")
    labels = label_sets.to_frame("_labels").join(
        distinct.with_columns(
            _first_label(pl.col("_labels"), spellings).alias(name)
            for name, spellings in LABELS.items()
        ),
        on="_labels", how="left", maintain_order="left",
    )
    ts = (
        pl.col("_ts_text").cast(pl.Int64, strict=False).cast(pl.Datetime("ms", "UTC")).cast(TS)
    )
    parsed = parsed.drop("_labels").hstack(labels.drop("_labels")).with_columns(ts.alias("ts"))
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
    df = _read_text_csv(raw)
    missing = [c for c in ("timestamp", "metric", "value") if c not in df.columns]
    if not any(c in df.columns for c in LABELS["gpu_uuid"]):
        missing.append("UUID")
    if missing and not raw.strip():
        return ParseResult(empty(GPU_SAMPLES), empty(QUARANTINE), 0, [source_file])
    if missing:
        raise SourceFormatError(
            f"{source_file}: DCGM CSV lacks required column(s) {missing}; expected the header "
            "timestamp,Hostname,gpu,UUID,modelName,GPU_I_PROFILE,GPU_I_ID,namespace,pod,"
            "container,metric,value (re-export with these columns)"
        )
    raw_cols = df.columns
    parsed = df.with_row_index("_row_number", offset=1).with_columns(
        on_distinct(df["metric"], lambda e: e.str.strip_chars()).alias("_field"),
        pl.col("value").alias("_value_text"),
        _parse_timestamps(df["timestamp"]).alias("ts"),
        *_csv_labels(df),
    )
    bad_ts = pl.when(pl.col("ts").is_null()).then(
        pl.format("unparseable timestamp '{}' (expected ISO-8601 UTC)", pl.col("timestamp"))
    )
    no_metric = pl.when(pl.col("_field").is_null() | (pl.col("_field") == "")).then(
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
      Without an energy counter: power_w_avg x the hours the power samples cover (the GPU's
      median power sampling interval x its power samples, at most the hour).
    * gpu_index, gpu_model, mig_profile, k8s_namespace, k8s_pod: the first non-null value
      in the hour, in the order of `samples`.
    """
    return _downsample(samples, _HOURLY)[0]


def downsample_minutely(samples: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Aggregate gpu_samples to one row per minute and GPU (or MIG instance): GPU_MINUTELY.

    The columns and rules of downsample_hourly, per minute: an energy counter delta belongs
    to the minute of its later sample, and without a counter energy is power_w_avg x the
    minutes the power samples cover. `samples` may be a lazy scan of a day's gpu_samples
    Parquet parts; it is read in slices of BATCH_ROWS rows.
    """
    return _downsample(samples, _MINUTELY)[0]


def downsample_hourly_and_minutely(
    samples: pl.DataFrame | pl.LazyFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """downsample_hourly and downsample_minutely from one read of the samples (a day's
    ingestion wants both; reading the samples is most of the work)."""
    hourly, minutely = _downsample(samples, _HOURLY, _MINUTELY)
    return hourly, minutely


def finish_samples(
    parsed: pl.DataFrame, source_file: str, *, keep_raw: list[str], extra_reasons: list[pl.Expr]
) -> ParseResult:
    """Shared tail of the DCGM readers (text, CSV, Prometheus API): value parsing, metric
    mapping, validation. `parsed` holds `_row_number`, `_field`, `_value_text`, `ts` and
    the LABELS columns."""
    number, is_na = _parse_values(parsed.get_column("_value_text"))
    parsed = parsed.with_columns(number.alias("_number"), is_na.alias("_is_na"))
    bad_value = pl.when(~pl.col("_is_na") & pl.col("_number").is_null()).then(
        pl.format("unparseable value '{}'", pl.col("_value_text"))
    )
    no_gpu = pl.when(pl.col("gpu_uuid").is_null()).then(
        pl.lit("missing GPU identity (no UUID/uuid label)")
    )
    reason = pl.coalesce([*extra_reasons, bad_value, no_gpu])
    read = parsed.height
    if parsed.select(reason.is_null().all()).item():  # the usual case: nothing to split off
        good, quarantined = parsed, empty(QUARANTINE)
    else:
        good, quarantined = split_valid(
            parsed, reason, source=SOURCE, source_file=source_file, keep_raw=keep_raw
        )
    fields, field = _distinct_index(good.get_column("_field"))
    metric = fields.replace_strict({f: m for f, (m, _) in METRICS.items()},
                                   default=fields.str.to_lowercase())
    unit = fields.replace_strict({f: u for f, (_, u) in METRICS.items()}, default=None,
                                 return_dtype=pl.String)
    n = pl.col("_number")
    rows = good.with_columns(
        metric.cast(LABEL).gather(field).alias("metric"),
        unit.cast(LABEL).gather(field).alias("unit"),
        # `[N/A]` and blanks are already null numbers; DCGM's sentinels and NaN become null.
        pl.when((n >= BLANK_THRESHOLD) | n.is_nan()).then(None).otherwise(n).alias("value"),
        pl.col("gpu_index").cast(pl.Int32, strict=False),
        pl.lit(SOURCE, LABEL).alias("source"),
        pl.lit(source_file, LABEL).alias("source_file"),
    )
    rows = conform(rows.select([c for c in GPU_SAMPLES if c in rows.columns]), GPU_SAMPLES)
    nulls = rows["value"].null_count()
    if nulls:
        log.info("%s: %d sample(s) carried no value (DCGM blank / N/A), kept as null",
                 source_file, nulls)
    return ParseResult(rows=rows, quarantine=quarantined, rows_read=read, files=[source_file])


def _parse_values(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Sample values as numbers, and whether each is a "no value" spelling (NA_STRINGS).

    Nearly every value is a plain number: one cast reads those, and only the rest are
    stripped and looked at again.
    """
    number = text.cast(pl.Float64, strict=False)
    is_na = text.is_null()
    missed = number.is_null() & ~is_na
    if missed.any():
        where = missed.arg_true()
        stripped = text.gather(where).str.strip_chars()
        number = number.scatter(where, stripped.cast(pl.Float64, strict=False))
        is_na = is_na.scatter(where, stripped.is_in(NA_STRINGS))
    return number, is_na


def _read_text_csv(text: bytes) -> pl.DataFrame:
    """A CSV file with every column as text; no columns if the file is empty."""
    try:
        return pl.read_csv(text, infer_schema=False, truncate_ragged_lines=False)
    except pl.exceptions.NoDataError:
        return pl.DataFrame()


def _csv_labels(df: pl.DataFrame) -> list[pl.Series]:
    """The LABELS columns of a DCGM CSV's rows: stripped, empty -> null, the first spelling
    present, gpu_index a number (null if not one) and the rest categorical (GPU_SAMPLES).

    A file lists a GPU's samples of a metric together, so its label columns come in long
    runs of equal rows: all of that is worked out once per run, and each run's values are
    gathered to its rows (categorical codes, not text)."""
    raw = df.select(c for spellings in LABELS.values() for c in spellings if c in df.columns)
    present = [c for c in raw.columns if raw[c].null_count() < raw.height]
    if present:
        run = raw.select(pl.struct(present).rle_id()).to_series()
        heads = raw.select(present)[np.flatnonzero(np.diff(run.to_numpy(), prepend=-1))]
    else:
        run, heads = pl.Series(np.zeros(df.height, np.uint32)), pl.DataFrame({"_": [None]})

    def label(name: str, spellings: list[str]) -> pl.Expr:
        spelled = [_blank_to_null(pl.col(c)) for c in spellings if c in present]
        value = pl.coalesce(spelled) if spelled else pl.lit(None, pl.String)
        return value.cast(pl.Int32, strict=False) if name == "gpu_index" else value.cast(LABEL)

    values = heads.select(label(name, spellings).alias(name) for name, spellings in LABELS.items())
    return [values[name].gather(run) for name in LABELS]


def _parse_timestamps(text: pl.Series) -> pl.Series:
    """parse_iso_utc for a column: one strptime pass reads the usual `...T10:00:15Z`, and
    the other spellings are parsed once per distinct value."""
    fast = text.str.to_datetime(
        "%Y-%m-%dT%H:%M:%SZ", strict=False, time_unit="us", cache=False
    ).dt.replace_time_zone("UTC")
    missed = fast.is_null() & text.is_not_null()
    if missed.any():
        where = missed.arg_true()
        fast = fast.scatter(where, on_distinct(text.gather(where), parse_iso_utc))
    return fast.alias(text.name)


def on_distinct(s: pl.Series, fn: Callable[[pl.Expr], pl.Expr]) -> pl.Series:
    """fn applied to the text column `s`, computed once per distinct value (see
    _distinct_index) and mapped back to the rows; fn must map null to null."""
    values, index = _distinct_index(s)
    mapped = pl.select(fn(pl.lit(values))).to_series()
    if mapped.dtype == s.dtype and mapped.equals(values):
        return s
    return mapped.gather(index).alias(s.name)


def _distinct_index(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Values of the text column `s` to work on once each, and each row's index into them:
    its run of equal values where rows come in long runs (as a file's metric names do),
    else its distinct value. A null row gets a null value."""
    run = s.rle_id()
    if s.len() and (run[-1] + 1) * 8 <= s.len():
        return s.gather(np.flatnonzero(np.diff(run.to_numpy(), prepend=-1))), run
    distinct = s.unique().drop_nulls()
    return distinct, s.cast(pl.Enum(distinct)).to_physical()


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
    size = int.from_bytes(data[-4:], "little")  # the trailer's length, mod 2**32
    if 0 < size <= _MAX_DEFLATE_RATIO * len(data) and data.find(b"\x1f\x8b\x08", 10) < 0:
        # One member (no second gzip header): inflated into a buffer of the trailer's size
        # by ISA-L, faster than zlib (a day of DCGM CSV, 4.5 GB inflated from 0.25 GB:
        # 5.9 -> 4.6 CPU s; on less compressible text, a third of zlib's time).
        # It checks the CRC; gzip below reads anything else and names the damage.
        try:
            inflated = isal_zlib.decompress(data, 31, size)
            if len(inflated) == size:
                return inflated
        except isal_zlib.error:
            pass
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


# --- Downsampling -------------------------------------------------------------------------
#
# Every sample gets two integer keys: its GPU (a number per distinct hostname, gpu_uuid,
# mig_instance_id) and its period (microseconds since the epoch // period length). Sums and
# counts per (GPU, period) cell are then bincounts, not hash group-bys over text keys. Each
# batch leaves per-cell partials plus the rows that need the whole input (distinct scrape
# timestamps, energy counter readings, power timestamps), combined at the end.


_DOWNSAMPLED_COLUMNS = ["ts", *_GPU_KEY, *_GPU_LABELS, "metric", "value"]
_HOURLY = (_HOUR_US, "hour_start", GPU_HOURLY)
_MINUTELY = (_MINUTE_US, "minute_start", GPU_MINUTELY)


def _downsample(
    samples: pl.DataFrame | pl.LazyFrame, *periods: tuple[int, str, dict[str, pl.DataType]],
) -> list[pl.DataFrame]:
    """One table per (period length in us, start column, schema), from one read."""
    lf = samples.lazy().select(_DOWNSAMPLED_COLUMNS)
    total = lf.select(pl.len()).collect().item()
    acc = _Downsample([period_us for period_us, _, _ in periods])
    for offset in range(0, total, BATCH_ROWS):
        acc.add(lf.slice(offset, BATCH_ROWS).collect())
    return _finished(acc, periods)


def _finished(acc: _Downsample, periods: tuple[tuple[int, str, dict[str, pl.DataType]], ...]
              ) -> list[pl.DataFrame]:
    if not acc.gpus.height:
        return [empty(schema) for _, _, schema in periods]
    acc.prepare()

    def one(i: int) -> pl.DataFrame:
        _, start, schema = periods[i]
        return conform(acc.finish(i, start), schema)

    if len(periods) == 1:
        return [one(0)]
    # Each period length's table reads the shared state and writes only its own: the hour
    # and the minute tables are built side by side (numpy's sorts and polars release the
    # GIL), so a day's last step uses both cores.
    with ThreadPoolExecutor(max_workers=len(periods), thread_name_prefix="downsample") as pool:
        return list(pool.map(one, range(len(periods))))


class HourlyAndMinutely:
    """downsample_hourly_and_minutely fed part by part, as a day's samples are written:
    `add` each gpu_samples frame in the order it is written, then `finish` once.

    The day's samples are then never read back from the lake, and the work runs while the
    next file is parsed instead of after the last one. The result equals
    downsample_hourly_and_minutely over the frames concatenated in the same order."""

    def __init__(self) -> None:
        self._acc = _Downsample([_HOUR_US, _MINUTE_US])

    def add(self, samples: pl.DataFrame) -> None:
        for offset in range(0, samples.height, BATCH_ROWS):
            self._acc.add(samples.slice(offset, BATCH_ROWS).select(_DOWNSAMPLED_COLUMNS))

    def finish(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        hourly, minutely = _finished(self._acc, (_HOURLY, _MINUTELY))
        return hourly, minutely


class _Downsample:
    """Per (GPU, period) aggregates of gpu_samples for some period lengths, fed batch by
    batch. What does not depend on the period (GPU numbers, distinct scrapes, energy
    readings, power timestamps) is worked out once."""

    def __init__(self, periods_us: list[int]) -> None:
        self.periods = [_Periods(period_us) for period_us in periods_us]
        self.gpus = pl.DataFrame(schema={c: pl.String for c in _GPU_KEY})
        self.scrapes: list[tuple[np.ndarray, np.ndarray]] = []  # distinct (gpu, ts)
        self.energy: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (gpu, ts, mJ)
        self._energy_deltas: tuple[np.ndarray, ...] | None = None  # see _deltas
        self.power: list[tuple[np.ndarray, np.ndarray]] = []  # (gpu, ts)

    def add(self, df: pl.DataFrame) -> None:
        if df.get_column("ts").null_count():
            # gpu_samples always has a time; a row without one belongs to no period.
            df = df.filter(pl.col("ts").is_not_null())
        if df.height == 0:
            return
        gpu, code = self._gpu_and_metric(df)
        ts = df.get_column("ts").dt.epoch("us").to_numpy()
        value = df.get_column("value")
        known = value.is_not_null().to_numpy()
        number = value.fill_null(0.0).to_numpy()
        labels = df.select(_GPU_LABELS)
        for periods in self.periods:
            periods.add(gpu, ts, code, known, number, labels)
        self.scrapes.append(_distinct_pairs(gpu, ts))
        reading = known & (code == _ENERGY)
        self.energy.append((gpu[reading], ts[reading], number[reading]))
        self.power.append((gpu[code == _POWER], ts[code == _POWER]))

    def _gpu_and_metric(self, df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """GPU number and metric code of every row, looked up once per run of equal rows
        (a file lists a GPU's samples of one metric together)."""
        cols = [*_GPU_KEY, "metric"]
        changes = [pl.col(c).ne_missing(pl.col(c).shift()) for c in cols
                   if df.get_column(c).null_count() < df.height]
        starts = (df.select(pl.any_horizontal(changes)).to_series().to_numpy() if changes
                  else np.zeros(df.height, np.bool_))
        starts[0] = True
        run = np.cumsum(starts) - 1
        # As text: gpu_samples' labels are categorical, the GPU table's keys are text.
        heads = df.select(cols)[np.flatnonzero(starts)].with_columns(pl.col(cols).cast(pl.String))
        new = (heads.select(_GPU_KEY).unique(maintain_order=True)
               .join(self.gpus, on=_GPU_KEY, how="anti", nulls_equal=True))
        self.gpus = pl.concat([self.gpus, new])
        gpu = heads.join(self.gpus.with_row_index("_gpu"), on=_GPU_KEY, how="left",
                         nulls_equal=True, maintain_order="left").get_column("_gpu")
        code = heads.get_column("metric").replace_strict(
            [*_AVERAGED, "energy_mj"], list(range(_OTHER)), default=_OTHER, return_dtype=pl.Int64
        ).fill_null(_OTHER)
        return gpu.cast(pl.Int64).to_numpy()[run], code.to_numpy()[run]

    def prepare(self) -> None:
        """Work out once what every period length's table reads (the distinct scrapes, the
        energy counter's deltas), so that `finish` only reads shared state."""
        if len(self.scrapes) != 1:
            self.scrapes = [_distinct_pairs(*self._concat(self.scrapes))]
        self._deltas()

    def finish(self, i: int, start: str) -> pl.DataFrame:
        """The table of the i-th period length, its start column named `start` (after
        `prepare`; tables of different period lengths can be built at once)."""
        periods = self.periods[i]
        cells, labels, sums, counts = periods.merge()
        n = cells.size
        (gpu, ts), = self.scrapes
        scrapes = np.bincount(cells.find(gpu, ts // periods.period_us), minlength=n)
        energy_wh, readings = self._energy(cells, periods.period_us)
        interval_us = self._power_interval(cells.gpu[(readings == 0) & (counts[_POWER] > 0)])
        # Rows in (period, hostname, gpu_uuid, mig_instance_id) order, nulls last.
        rank = np.empty(self.gpus.height, np.int64)
        rank[self.gpus.with_row_index("_gpu").sort(_GPU_KEY, nulls_last=True)["_gpu"]] = (
            np.arange(self.gpus.height))
        order = np.argsort(_pack(cells.period, rank[cells.gpu]), kind="stable")
        averages = ["gpu_util_pct_avg", "_gr_active_avg", "power_w_avg", "fb_used_mib_avg"]
        out = pl.DataFrame({
            start: pl.Series(cells.period[order] * periods.period_us)
            .cast(pl.Datetime("us", "UTC")),
            **self.gpus[cells.gpu[order]].to_dict(),
            **labels[order].to_dict(),
            "samples": scrapes[order],
            **{name: (sums[j] / np.maximum(counts[j], 1))[order]
               for j, name in enumerate(averages)},
            **{f"_n{j}": counts[j][order] for j in range(4)},
            "_energy_counter_wh": energy_wh[order],
            "_readings": readings[order],
            "_interval_us": pl.Series(interval_us[cells.gpu[order]]).fill_nan(None),
        }).with_columns(
            # An average of no values is null, not 0.
            pl.when(pl.col(f"_n{j}") > 0).then(pl.col(name)).alias(name)
            for j, name in enumerate(averages)
        )
        covered = pl.min_horizontal(  # hours of the period the power samples cover
            pl.col(f"_n{_POWER}") * pl.col("_interval_us"), pl.lit(periods.period_us)
        ) / _HOUR_US
        return out.with_columns(
            pl.coalesce(pl.col("_gr_active_avg"), pl.col("gpu_util_pct_avg") / 100)
            .alias("busy_fraction"),
            pl.when(pl.col("_readings") > 0).then(pl.col("_energy_counter_wh"))
            .otherwise(pl.col("power_w_avg") * covered).alias("energy_wh"),
            mig_gpu_fraction(pl.col("mig_profile")).alias("gpu_fraction"),
        ).select(pl.exclude("^_.*$"))

    @staticmethod
    def _concat(parts: list) -> tuple[np.ndarray, ...]:
        return tuple(map(np.concatenate, zip(*parts, strict=True)))

    def _energy(self, cells: _Cells, period_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Wh from the energy counter's deltas per cell (by the later sample's period), and
        the number of counter readings per cell."""
        gpu, ts, delta, same_gpu = self._deltas()
        cell = cells.find(gpu, ts // period_us)
        wh = np.bincount(cell[same_gpu], delta[same_gpu], cells.size) / _MJ_PER_WH
        return wh, np.bincount(cell, minlength=cells.size)

    def _deltas(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every counter reading in (GPU, time) order, with its delta from the GPU's previous
        reading and whether it has one. The same for every period length: worked out once."""
        if self._energy_deltas is None:
            gpu, ts, mj = self._concat(self.energy)
            key = _pack(gpu, ts)
            if np.any(key[1:] < key[:-1]):  # files list a GPU's readings in time order
                order = np.argsort(key, kind="stable")
                gpu, ts, mj = gpu[order], ts[order], mj[order]
            self.energy = []
            delta = np.diff(mj, prepend=np.nan)
            # A drop means the counter restarted from zero: the new value is what accrued.
            delta = np.where(delta < 0, mj, delta)
            same_gpu = np.zeros(gpu.size, np.bool_)
            same_gpu[1:] = gpu[1:] == gpu[:-1]
            self._energy_deltas = (gpu, ts, delta, same_gpu)
        return self._energy_deltas

    def _power_interval(self, gpus: np.ndarray) -> np.ndarray:
        """Median interval (us) between a GPU's distinct power timestamps, by GPU number;
        NaN where unknown. Computed only for `gpus`, the ones without an energy counter."""
        interval = np.full(self.gpus.height, np.nan)
        wanted = np.unique(gpus)
        if wanted.size == 0:
            return interval
        gpu, ts = self._concat(self.power)
        keep = np.isin(gpu, wanted)
        gpu, ts = _distinct_pairs(gpu[keep], ts[keep])
        same_gpu = gpu[1:] == gpu[:-1]
        medians = (pl.DataFrame({"gpu": gpu[1:][same_gpu], "dt": np.diff(ts)[same_gpu]})
                   .group_by("gpu").agg(pl.col("dt").median()))
        interval[medians["gpu"].to_numpy()] = medians["dt"].to_numpy()
        return interval


class _Periods:
    """Sums, counts and first labels per (GPU, period) cell of one period length."""

    def __init__(self, period_us: int) -> None:
        self.period_us = period_us
        self.cells: list[tuple[np.ndarray, np.ndarray]] = []  # (gpu, period) per batch cell
        self.sums: list[np.ndarray] = []  # _AVERAGED x batch cells: sum of non-null values
        self.counts: list[np.ndarray] = []  # ... and their number
        self.labels: list[pl.DataFrame] = []  # first non-null _GPU_LABELS per batch cell

    def add(self, gpu: np.ndarray, ts: np.ndarray, code: np.ndarray, known: np.ndarray,
            number: np.ndarray, labels: pl.DataFrame) -> None:
        cells, cell = _Cells.of(gpu, ts // self.period_us)
        averaged = known & (code < _ENERGY)
        slot = code[averaged] * cells.size + cell[averaged]
        self.sums.append(np.bincount(slot, number[averaged], 4 * cells.size).reshape(4, -1))
        self.counts.append(np.bincount(slot, minlength=4 * cells.size).reshape(4, -1))
        self.cells.append((cells.gpu, cells.period))
        firsts = _first_non_null(labels, cell, cells.size)
        self.labels.append(_compacted(firsts.with_columns(pl.col(pl.Categorical).cast(pl.String))))

    def merge(self) -> tuple[_Cells, pl.DataFrame, list[np.ndarray], list[np.ndarray]]:
        """The batches' cells combined: cells, labels, sums and counts per _AVERAGED."""
        cells, cell = _Cells.of(*map(np.concatenate, zip(*self.cells, strict=True)))
        n = cells.size
        sums = [np.bincount(cell, np.concatenate([s[j] for s in self.sums]), n)
                for j in range(4)]
        counts = [np.bincount(cell, np.concatenate([c[j] for c in self.counts]), n)
                  for j in range(4)]
        return cells, _first_non_null(pl.concat(self.labels), cell, n), sums, counts


class _Cells:
    """The distinct (gpu, period) pairs of some rows, sorted, and a lookup of any pair."""

    def __init__(self, gpu: np.ndarray, period: np.ndarray, lut: np.ndarray | None,
                 keys: np.ndarray, base: tuple[int, int, int]) -> None:
        self.gpu, self.period, self.size = gpu, period, gpu.size
        self._lut, self._keys, self._base = lut, keys, base

    @classmethod
    def of(cls, gpu: np.ndarray, period: np.ndarray) -> tuple[_Cells, np.ndarray]:
        """The cells of these rows, and each row's cell number."""
        key, base = _pack(gpu, period, base=True)
        size = int(key.max()) + 1
        if size <= max(4 * key.size, 1 << 20):  # dense enough for a lookup table
            present = np.zeros(size, np.bool_)
            present[key] = True
            distinct = np.flatnonzero(present)
            lut = np.cumsum(present, dtype=np.int64) - 1
            cell = lut[key]
        else:
            distinct, cell = np.unique(key, return_inverse=True)
            lut = None
        g0, p0, span = base
        return cls(distinct // span + g0, distinct % span + p0, lut, distinct, base), cell

    def find(self, gpu: np.ndarray, period: np.ndarray) -> np.ndarray:
        """Cell numbers of pairs that are among the cells."""
        key = _pack_with(gpu, period, self._base)
        return self._lut[key] if self._lut is not None else np.searchsorted(self._keys, key)


def _pack(a: np.ndarray, b: np.ndarray, *, base: bool = False):
    """One int64 per (a, b) pair that sorts like the pair; with base, also (a0, b0, span)
    to unpack it: a = key // span + a0, b = key % span + b0."""
    a0, b0 = (int(a.min()), int(b.min())) if a.size else (0, 0)
    span = int(b.max()) - b0 + 1 if a.size else 1
    if a.size and (int(a.max()) - a0 + 1) * span >= 2**62:
        raise ValueError("samples span too long a time to downsample at once; pass one day "
                         "of samples at a time")
    key = _pack_with(a, b, (a0, b0, span))
    return (key, (a0, b0, span)) if base else key


def _pack_with(a: np.ndarray, b: np.ndarray, base: tuple[int, int, int]) -> np.ndarray:
    a0, b0, span = base
    key = a - a0  # one new array, the rest in place: these are batch-sized
    key *= span
    key += b
    key -= b0
    return key


def _distinct_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) pairs, sorted by a then b."""
    if a.size == 0:
        return a, b
    key, (a0, b0, span) = _pack(a, b, base=True)
    key = np.sort(key, kind="stable")  # rows come as runs in time order: a cheap merge
    keep = np.ones(key.size, np.bool_)
    np.not_equal(key[1:], key[:-1], out=keep[1:])
    key = key[keep]
    return key // span + a0, key % span + b0


def _compacted(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with its text in buffers of its own. A few rows gathered from a batch keep
    the batch's whole string buffers alive otherwise (polars' string views): a day of
    per-file label rows held ~1 GB of CSV text that way."""
    return pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))


def _first_non_null(labels: pl.DataFrame, cell: np.ndarray, n: int) -> pl.DataFrame:
    """Per cell, each column's first non-null value in row order."""
    rows = np.arange(cell.size)
    first = np.full(n, cell.size)
    np.minimum.at(first, cell, rows)
    out = labels[first]
    for name in labels.columns:
        column = labels.get_column(name)
        if out[name].null_count() == 0 or column.null_count() == column.len():
            continue
        # Some cell starts with a null here: look for its first non-null row instead.
        known = column.is_not_null().to_numpy()
        first_known = np.full(n, cell.size)
        np.minimum.at(first_known, cell[known], rows[known])
        found = first_known < cell.size
        values = column.gather(np.where(found, first_known, 0))
        out = out.with_columns(pl.when(pl.Series(found)).then(values).alias(name))
    return out
