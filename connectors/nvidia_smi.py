"""`nvidia-smi --query-gpu=... --format=csv` output -> gpu_samples.

What a logging loop such as `nvidia-smi --query-gpu=timestamp,name,pci.bus_id,uuid,index,
utilization.gpu,memory.used,power.draw --format=csv -l 15` writes::

    timestamp, name, pci.bus_id, uuid, index, utilization.gpu [%], memory.used [MiB], power.draw [W]
    2026/10/01 12:00:00.123, NVIDIA H100 80GB HBM3, 00000000:18:00.0, GPU-..., 0, 87 %, 40211 MiB, 512.34 W

Fields are separated by ", "; units sit in the header (`utilization.gpu [%]`) and, unless
`nounits` was given, after each value; a field the GPU cannot report is `[N/A]` or
`[Not Supported]` (kept as a null sample). Timestamps are the host's local time without a
zone, so the caller says which zone the host ran in. The loop repeats the header when it
is restarted into the same file; repeated headers are skipped. nvidia-smi does not print
the host name: the caller gives it (by default the file name without its extensions).

A sample is one value of one metric column on one line: a line with a bad timestamp
quarantines each of its samples, with the line number, so counts balance per sample.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from connectors.dcgm import NA_STRINGS, gunzip_if_compressed
from connectors.result import ParseResult, SourceFormatError, split_valid
from connectors.schemas import GPU_SAMPLES, QUARANTINE, conform, empty

SOURCE = "nvidia_smi"
# nvidia-smi query field -> (canonical metric, unit)
METRICS: dict[str, tuple[str, str]] = {
    "utilization.gpu": ("gpu_util_pct", "%"),
    "memory.used": ("fb_used_mib", "MiB"),
    "power.draw": ("power_w", "W"),
    "power.draw.instant": ("power_w", "W"),
    "power.draw.average": ("power_w_avg1s", "W"),
    "utilization.memory": ("mem_copy_util_pct", "%"),
    "temperature.gpu": ("gpu_temp_c", "C"),
    "clocks.sm": ("sm_clock_mhz", "MHz"),
    # What nvidia-smi 580 (an H200) prints in the header when asked for clocks.sm.
    "clocks.current.sm": ("sm_clock_mhz", "MHz"),
}
# Asked for with power.draw, the instant reading keeps a metric of its own: on Ampere and
# newer, power.draw is the one-second average (an H200 on driver 580 printed the same
# number for power.draw and power.draw.average), and two power_w samples of one GPU at
# one time would be averaged together.
_POWER_INSTANT = ("power_w_instant", "W")
# Identity columns (not samples) -> gpu_samples column.
IDENTITY = {"name": "gpu_model", "uuid": "gpu_uuid", "index": "gpu_index"}
_NOT_SAMPLES = {"timestamp", "pci.bus_id", "driver_version", "serial", *IDENTITY}
_NA = [*NA_STRINGS, "[Unknown Error]", "[GPU is lost]"]


def read_nvidia_smi_csv(
    data: bytes | Path,
    *,
    source_file: str,
    timezone: str = "UTC",
    hostname: str | None = None,
) -> ParseResult:
    """Parse nvidia-smi CSV; local timestamps are read in `timezone` (an IANA name)."""
    raw = gunzip_if_compressed(Path(data).read_bytes() if isinstance(data, Path) else data,
                               source_file)
    text = raw.decode("utf-8", errors="replace")
    lines = (pl.DataFrame({"line": [text]}).select(pl.col("line").str.split("\n"))
             .explode("line").with_row_index("_row_number", offset=1)
             .with_columns(pl.col("line").str.strip_chars())
             .filter(pl.col("line") != ""))
    if lines.height == 0:
        return ParseResult(empty(GPU_SAMPLES), empty(QUARANTINE), 0, [source_file])
    header = lines["line"][0]
    columns = [c.strip() for c in header.split(",")]
    fields = [c.split(" [", 1)[0].strip() for c in columns]
    units = [c.split(" [", 1)[1].rstrip("]") if " [" in c else None for c in columns]
    missing = [f for f in ("timestamp", "uuid") if f not in fields]
    if missing:
        raise SourceFormatError(
            f"{source_file}: nvidia-smi CSV lacks {missing} in its header {header!r}; log with "
            "--query-gpu=timestamp,name,uuid,index,utilization.gpu,memory.used,power.draw "
            "--format=csv")
    body = lines.filter(pl.col("line") != header)  # the header again after a restart
    cells = body.with_columns(
        pl.col("line").str.split_exact(",", len(fields) - 1).alias("_cells")
    ).unnest("_cells")
    names = {f"field_{i}": f for i, f in enumerate(fields)}
    cells = cells.rename(names).with_columns(
        [pl.col(f).str.strip_chars() for f in fields])
    local = pl.col("timestamp").str.to_datetime("%Y/%m/%d %H:%M:%S%.f", strict=False,
                                                time_unit="us")
    host = hostname or source_file.rsplit("/", 1)[-1].split(".", 1)[0]
    cells = cells.with_columns(
        local.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC").alias("ts"),
        pl.lit(host).alias("hostname"),
        *[pl.col(f).alias(col) for f, col in IDENTITY.items() if f in fields],
    )
    sample_fields = [f for f in fields if f not in _NOT_SAMPLES]
    long = cells.unpivot(
        on=sample_fields, index=["_row_number", "line", "timestamp", "ts", "hostname",
                                 *[c for f, c in IDENTITY.items() if f in fields]],
        variable_name="_field", value_name="_text")
    unit_of = dict(zip(fields, units))
    known = dict(METRICS)
    if "power.draw" in sample_fields:
        known["power.draw.instant"] = _POWER_INSTANT
    mapping = pl.DataFrame({
        "_field": sample_fields,
        "metric": [known.get(f, (f.replace(".", "_"), None))[0] for f in sample_fields],
        "unit": [known[f][1] if f in known else unit_of[f] for f in sample_fields],
    })
    long = long.join(mapping, on="_field", how="left", maintain_order="left")
    value = pl.col("_text")
    is_na = value.is_null() | value.is_in(_NA)
    # "87 %", "40211 MiB", "512.34 W": drop the unit the header names, then read the number.
    number = value.str.replace(r"\s*[A-Za-z%]+$", "").cast(pl.Float64, strict=False)
    long = long.with_columns(is_na.alias("_is_na"), number.alias("_number"))
    reason = pl.coalesce(
        pl.when(pl.col("ts").is_null()).then(pl.format(
            "line {}: unparseable timestamp '{}' (expected YYYY/MM/DD HH:MM:SS.mmm, local "
            "time in {})", pl.col("_row_number"), pl.col("timestamp"), pl.lit(timezone))),
        pl.when(pl.col("gpu_uuid").is_null() | (pl.col("gpu_uuid") == "")).then(
            pl.format("line {}: missing GPU uuid", pl.col("_row_number"))),
        pl.when(~pl.col("_is_na") & pl.col("_number").is_null()).then(pl.format(
            "line {}: unparseable {} value '{}'", pl.col("_row_number"), pl.col("_field"),
            value)),
    )
    good, quarantined = split_valid(long, reason, source=SOURCE, source_file=source_file,
                                    keep_raw=["_field", "_text", "timestamp"])
    rows = good.with_columns(
        pl.when(pl.col("_is_na")).then(None).otherwise(pl.col("_number")).alias("value"),
        pl.col("gpu_index").cast(pl.Int32, strict=False),
        pl.lit(SOURCE).alias("source"),
        pl.lit(source_file).alias("source_file"),
    )
    rows = conform(rows.select([c for c in GPU_SAMPLES if c in rows.columns]), GPU_SAMPLES)
    result = ParseResult(rows=rows, quarantine=quarantined, rows_read=long.height,
                         files=[source_file])
    result.check_balance()
    return result


def looks_like_nvidia_smi(head: bytes) -> bool:
    """Whether a CSV's first line is an nvidia-smi --query-gpu header."""
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    return first.startswith("timestamp, ") or ", utilization.gpu" in first
