"""DCGM exporter series pulled from Prometheus's HTTP API (`/api/v1/query_range`) -> gpu_samples.

A day of a large fleet is too much for one response (Prometheus also refuses more than
11,000 points per series), so the range is split into windows (an hour by default) and each
DCGM field is asked for on its own. Each response is a matrix::

    {"status": "success", "data": {"resultType": "matrix", "result": [
      {"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "UUID": "GPU-...", "Hostname": "...",
                  "gpu": "0", "modelName": "NVIDIA H100 80GB HBM3", ...},
       "values": [[1790812800, "87"], [1790812815, "90"], ...]}]}}

and is decoded by polars in one pass (no Python loop over points), then mapped exactly like
the text exposition (connectors.dcgm: label spellings, blank sentinels, MIG labels).

query_range evaluates the query at every step and, between samples, repeats the last one
for up to five minutes (the lookback). Asked for `X`, it would invent samples after a GPU
stopped reporting; the query is therefore `X and (time() - timestamp(X) < step)`, which
keeps a point only when a real sample was scraped within the step before it. Window ends
are exclusive: a window asks up to one millisecond before its end, so a point on the
boundary belongs to the next window only. Saved responses (`gpu_telemetry/**/*.json`) are
read by parse_query_range.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from connectors.dcgm import LABELS, METRICS, finish_samples, gunzip_if_compressed
from connectors.result import ParseResult, SourceFormatError
from connectors.schemas import GPU_SAMPLES

DEFAULT_WINDOW = timedelta(hours=1)
_LABEL_SCHEMA = pl.Struct({"__name__": pl.String,
                           **{s: pl.String for spellings in LABELS.values() for s in spellings}})
MATRIX = pl.Struct({
    "status": pl.String,
    "error": pl.String,
    "data": pl.Struct({
        "resultType": pl.String,
        "result": pl.List(pl.Struct({"metric": _LABEL_SCHEMA,
                                     "values": pl.List(pl.List(pl.String))})),
    }),
})


def read_dcgm_range(
    base_url: str,
    start: datetime,
    end: datetime,
    *,
    step: timedelta = timedelta(seconds=15),
    window: timedelta = DEFAULT_WINDOW,
    fields: list[str] | None = None,
    timeout_s: float = 60.0,
) -> ParseResult:
    """Samples of the DCGM `fields` (default: every field in dcgm.METRICS) in [start, end)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (UTC)")
    if window < step:
        raise ValueError(f"window {window} is shorter than step {step}")
    parts = []
    for field in fields or list(METRICS):
        for lo, hi in _windows(start, end, window):
            body = _get(base_url, _query(field, step), lo, hi, step, timeout_s)
            name = f"{base_url.rstrip('/')}/api/v1/query_range?query={field}&start={lo.isoformat()}"
            parts.append(parse_query_range(body, source_file=name))
    return ParseResult.concat(parts, GPU_SAMPLES)


def parse_query_range(data: bytes | Path, *, source_file: str) -> ParseResult:
    """A query_range (matrix) or query (vector of range selectors) response -> gpu_samples."""
    raw = gunzip_if_compressed(Path(data).read_bytes() if isinstance(data, Path) else data,
                               source_file)
    try:
        doc = (pl.DataFrame({"doc": [raw.decode("utf-8", errors="replace")]})
               .select(pl.col("doc").str.json_decode(MATRIX)).unnest("doc"))
    except pl.exceptions.PolarsError as e:
        raise SourceFormatError(f"{source_file}: not a Prometheus API response ({e}); save "
                                "the JSON that /api/v1/query_range returns") from e
    status, error = doc["status"][0], doc["error"][0]
    if status != "success":
        raise SourceFormatError(f"{source_file}: Prometheus answered status {status!r}: "
                                f"{error}; fix the query or the time range and pull again")
    series = (doc.select(pl.col("data").struct.field("result").explode().alias("s"))
              .unnest("s").filter(pl.col("metric").is_not_null())
              .with_row_index("_series"))
    points = (series.explode("values").filter(pl.col("values").is_not_null())
              .unnest("metric")
              .with_row_index("_row_number", offset=1))
    parsed = points.with_columns(
        pl.col("__name__").alias("_field"),
        pl.col("values").list.get(1).alias("_value_text"),
        (pl.col("values").list.get(0).cast(pl.Float64, strict=False) * 1e6).round()
        .cast(pl.Int64).cast(pl.Datetime("us", "UTC")).alias("ts"),
        *[pl.coalesce([_blank(pl.col(s)) for s in spellings]).alias(name)
          for name, spellings in LABELS.items()],
    )
    return finish_samples(parsed, source_file, keep_raw=["_series", "_field", "_value_text"],
                          extra_reasons=[pl.when(pl.col("_field").is_null()).then(
                              pl.lit("series without __name__ (query a plain DCGM field)"))])


def _query(field: str, step: timedelta) -> str:
    seconds = step.total_seconds()
    return f"{field} and (time() - timestamp({field}) < {seconds:g})"


def _windows(start: datetime, end: datetime, window: timedelta
             ) -> list[tuple[datetime, datetime]]:
    out, lo = [], start
    while lo < end:
        hi = min(lo + window, end)
        out.append((lo, hi))
        lo = hi
    return out


def _get(base_url: str, query: str, lo: datetime, hi: datetime, step: timedelta,
         timeout_s: float) -> bytes:
    params = urllib.parse.urlencode({
        "query": query,
        "start": f"{lo.timestamp():.3f}",
        # Exclusive end: the last point asked for is just before the window's end.
        "end": f"{(hi - timedelta(milliseconds=1)).timestamp():.3f}",
        "step": f"{step.total_seconds():g}",
    })
    url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", errors="replace")[:500]
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise SourceFormatError(
            f"Prometheus at {base_url} refused query_range {query!r} for "
            f"[{lo.isoformat()}, {hi.isoformat()}): HTTP {e.code}: {detail}; use a shorter "
            "window or check the query") from e
    except urllib.error.URLError as e:
        raise ConnectionError(f"Prometheus at {base_url} cannot be reached ({e.reason}); "
                              "check the URL and that the server is up") from e


def _blank(e: pl.Expr) -> pl.Expr:
    return pl.when(e.str.strip_chars() == "").then(None).otherwise(e)

