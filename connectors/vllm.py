"""vLLM's Prometheus metrics -> vllm_hourly (tokens, prefill and decode time per deployment).

Read from Prometheus text exposition with timestamps (a federation dump or scrapes saved
with their time; OpenMetrics `# EOF` and comments are fine)::

    vllm:prompt_tokens_total{model_name="llama-3.1-70b-instruct",pod="vllm-0"} 1.2e6 1790812800000
    vllm:request_prefill_time_seconds_sum{model_name="llama-3.1-70b-instruct",pod="vllm-0"} 812.5 ...

The counters used (names as vLLM v0.6+ and the V1 engine export them):

* `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`: tokens processed;
* `vllm:request_success_total`: finished requests (one series per finished_reason);
* `vllm:request_prefill_time_seconds` and `vllm:request_decode_time_seconds`: histograms of
  per-request time in each phase; their `_sum` series are counters of seconds.

Every label set is its own counter (an engine, one finish reason); the deployment is the
`model_name` label. A counter's increase between two samples is assigned to the hour of the
later sample; a drop means the engine restarted and its counter began again at zero, so the
new value is what accrued (Prometheus's `increase` does the same). The first sample of a
series is its baseline. Timestamps may be seconds (OpenMetrics) or milliseconds (text
exposition); values above 1e11 are taken as milliseconds.

Lines of other metrics (gauges, histogram buckets, ...) are not rows of this reader and
are skipped; malformed lines of the metrics above are quarantined.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from connectors.dcgm import gunzip_if_compressed
from connectors.result import ParseResult, split_valid
from connectors.schemas import TS, VLLM_HOURLY, VLLM_SAMPLES, conform

SOURCE = "vllm"
COUNTERS: dict[str, str] = {
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:request_success_total": "requests",
    "vllm:request_prefill_time_seconds_sum": "prefill_seconds",
    "vllm:request_decode_time_seconds_sum": "decode_seconds",
}
_SAMPLE = r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?[\d.]+))?$"
_MS_THRESHOLD = 1e11  # unix seconds stay below this until the year 5138


def read_vllm_metrics(data: bytes | Path, *, source_file: str) -> ParseResult:
    """Counter samples (VLLM_SAMPLES) of the metrics in COUNTERS from one file."""
    raw = gunzip_if_compressed(Path(data).read_bytes() if isinstance(data, Path) else data,
                               source_file)
    line = pl.col("line")
    lines = (
        pl.DataFrame({"line": [raw.decode("utf-8", errors="replace")]})
        .select(line.str.split("\n")).explode("line")
        .with_row_index("_row_number", offset=1)
        .with_columns(line.str.strip_chars())
        .filter(line.str.starts_with("vllm:"))
        .with_columns(line.str.extract(_SAMPLE, 1).alias("_name"))
        # Names are matched with their suffix: `..._seconds_sum` only, not `_bucket`/`_count`.
        .filter(pl.col("_name").is_in(list(COUNTERS))
                | (pl.col("_name").is_null()
                   & line.str.contains(r"^vllm:\S*(_total|_seconds_sum)[{\s]")))
    )
    labels = line.str.extract(_SAMPLE, 2).fill_null("")
    ts_number = line.str.extract(_SAMPLE, 4).cast(pl.Float64, strict=False)
    parsed = lines.with_columns(
        labels.alias("series"),
        labels.str.extract(r'(?:^|,)\s*model_name="((?:[^"\\]|\\.)*)"', 1).alias("deployment"),
        line.str.extract(_SAMPLE, 3).alias("_value_text"),
        pl.when(ts_number >= _MS_THRESHOLD).then(ts_number * 1_000).otherwise(ts_number * 1e6)
        .round().cast(pl.Int64).cast(pl.Datetime("us", "UTC")).cast(TS).alias("ts"),
    ).with_columns(pl.col("_value_text").cast(pl.Float64, strict=False).alias("value"))
    reason = pl.coalesce(
        pl.when(pl.col("_name").is_null()).then(
            pl.lit("line is not a Prometheus sample (name{labels} value timestamp)")),
        pl.when(pl.col("ts").is_null()).then(
            pl.lit("sample has no timestamp; save scrapes with their time")),
        pl.when(pl.col("value").is_null() | pl.col("value").is_nan()).then(
            pl.format("unparseable value '{}'", pl.col("_value_text"))),
        pl.when(pl.col("deployment").is_null()).then(
            pl.lit("no model_name label: the deployment is unknown")),
    )
    good, quarantined = split_valid(parsed, reason, source=SOURCE, source_file=source_file,
                                    keep_raw=["line"])
    rows = good.with_columns(
        pl.col("_name").replace_strict(COUNTERS, return_dtype=pl.String).alias("metric"),
        pl.lit(source_file).alias("source_file"),
    )
    result = ParseResult(rows=conform(rows.select(list(VLLM_SAMPLES)), VLLM_SAMPLES),
                         quarantine=quarantined, rows_read=parsed.height, files=[source_file])
    result.check_balance()
    return result


def vllm_hourly(samples: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Counter samples -> VLLM_HOURLY: increases per deployment and hour, resets handled."""
    lf = samples.lazy() if isinstance(samples, pl.DataFrame) else samples
    series = ["metric", "deployment", "series"]
    deltas = (
        lf.unique(["ts", *series], keep="first")  # the same scrape read from two files
        .sort([*series, "ts"])
        .with_columns(pl.col("value").diff().over(series).alias("_diff"))
        .filter(pl.col("_diff").is_not_null())  # a series' first sample is its baseline
        .with_columns(
            (pl.col("_diff") < 0).alias("_reset"),
            pl.when(pl.col("_diff") < 0).then(pl.col("value")).otherwise(pl.col("_diff"))
            .alias("_increase"),
            pl.col("ts").dt.truncate("1h").alias("hour_start"),
        )
    )
    per_metric = deltas.group_by("hour_start", "deployment").agg(
        *[pl.col("_increase").filter(pl.col("metric") == m).sum().alias(m)
          for m in COUNTERS.values()],
        pl.col("series").filter(pl.col("metric").is_in(["prompt_tokens", "generation_tokens"]))
        .n_unique().alias("replicas"),
        pl.col("_reset").sum().alias("counter_resets"),
    )
    out = per_metric.with_columns(
        *[pl.col(m).round().cast(pl.Int64)
          for m in ("prompt_tokens", "generation_tokens", "requests")],
    ).sort("hour_start", "deployment")
    return conform(out.collect(), VLLM_HOURLY)
