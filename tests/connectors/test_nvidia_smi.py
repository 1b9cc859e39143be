"""nvidia-smi --query-gpu CSV: units in headers and values, [N/A], local timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from connectors.dcgm import downsample_hourly
from connectors.nvidia_smi import looks_like_nvidia_smi, read_nvidia_smi_csv
from connectors.result import SourceFormatError
from connectors.schemas import GPU_SAMPLES

HEADER = ("timestamp, name, pci.bus_id, uuid, index, utilization.gpu [%], memory.used [MiB], "
          "power.draw [W], temperature.gpu")
LINES = [
    HEADER,
    ("2026/10/01 14:00:00.123, NVIDIA H100 80GB HBM3, 00000000:18:00.0, GPU-1111, 0, 87 %, "
     "40211 MiB, 512.34 W, 61"),
    ("2026/10/01 14:00:00.125, NVIDIA H100 80GB HBM3, 00000000:2A:00.0, GPU-2222, 1, 0 %, "
     "3 MiB, [N/A], 35"),
    # The logging loop was restarted: the header again, then an invalid date and value.
    HEADER,
    ("2026/10/01 14:00:15.120, NVIDIA H100 80GB HBM3, 00000000:18:00.0, GPU-1111, 0, 91 %, "
     "40211 MiB, 530.00 W, [Not Supported]"),
    ("2026/02/30 14:00:15.121, NVIDIA H100 80GB HBM3, 00000000:2A:00.0, GPU-2222, 1, 1 %, "
     "3 MiB, 70.1 W, 35"),
    ("2026/10/01 14:00:30.120, NVIDIA H100 80GB HBM3, 00000000:18:00.0, GPU-1111, 0, lots %, "
     "40211 MiB, 500.00 W, 62"),
]
CSV = ("\n".join(LINES) + "\n").encode()


@pytest.fixture()
def result():
    return read_nvidia_smi_csv(CSV, source_file="gpu_telemetry/nvidia_smi/gpu-host-c.csv",
                               timezone="Europe/Berlin")


def test_units_na_and_repeated_header(result) -> None:
    result.check_balance()
    # 5 data lines x 4 sample columns (utilization, memory, power, temperature).
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (20, 15, 5)
    assert result.rows.schema == pl.Schema(GPU_SAMPLES)
    first = result.rows.filter(pl.col("gpu_uuid") == "GPU-1111").sort("ts")
    by_metric = {m: first.filter(pl.col("metric") == m)["value"].to_list()
                 for m in ("gpu_util_pct", "fb_used_mib", "power_w", "gpu_temp_c")}
    assert by_metric == {"gpu_util_pct": [87.0, 91.0], "fb_used_mib": [40211.0, 40211.0, 40211.0],
                         "power_w": [512.34, 530.0, 500.0], "gpu_temp_c": [61.0, None, 62.0]}
    row = first.row(0, named=True)
    assert (row["hostname"], row["gpu_model"], row["gpu_index"], row["source"]) == (
        "gpu-host-c", "NVIDIA H100 80GB HBM3", 0, "nvidia_smi")
    assert result.rows.filter(pl.col("gpu_uuid") == "GPU-2222", pl.col("metric") == "power_w"
                              )["value"].to_list() == [None]


def test_local_time_becomes_utc(result) -> None:
    # Berlin is on summer time (UTC+2) on 1 October.
    assert result.rows["ts"].min() == datetime(2026, 10, 1, 12, 0, 0, 123000, tzinfo=UTC)
    winter = read_nvidia_smi_csv(CSV.replace(b"2026/10/01", b"2026/12/01"), source_file="h.csv",
                                 timezone="Europe/Berlin")
    assert winter.rows["ts"].min().hour == 13


def test_bad_lines_are_quarantined_per_sample_with_the_line(result) -> None:
    reasons = result.quarantine.group_by("row_number", "reason").len().sort("row_number").rows()
    assert reasons[0] == (
        6, ("line 6: unparseable timestamp '2026/02/30 14:00:15.121' (expected YYYY/MM/DD "
            "HH:MM:SS.mmm, local time in Europe/Berlin)"), 4)
    assert reasons[1] == (7, "line 7: unparseable utilization.gpu value 'lots %'", 1)


def test_header_without_uuid_is_a_whole_file_error() -> None:
    with pytest.raises(SourceFormatError, match=r"h\.csv.*uuid"):
        read_nvidia_smi_csv(b"timestamp, name, utilization.gpu [%]\n", source_file="h.csv")
    assert looks_like_nvidia_smi(CSV) and not looks_like_nvidia_smi(b"timestamp,Hostname,gpu\n")


def test_downsample_reads_nvidia_smi_samples(result) -> None:
    hourly = downsample_hourly(result.rows).filter(pl.col("gpu_uuid") == "GPU-1111")
    row = hourly.row(0, named=True)
    assert row["samples"] == 3 and row["gpu_util_pct_avg"] == pytest.approx(89.0)
    assert row["busy_fraction"] == pytest.approx(0.89)


H200 = Path(__file__).resolve().parents[1] / "fixtures" / "telemetry" / "nvidia_smi_h200_driver580.csv"


def test_real_h200_capture_driver_580() -> None:
    """Five lines logged by nvidia-smi 580.159.04 on an H200 (`--format=csv,nounits -l 1`,
    its UUID replaced). That version prints clocks.sm as `clocks.current.sm`, and power.draw
    equals power.draw.average: the instant reading is a metric of its own."""
    result = read_nvidia_smi_csv(H200, source_file="gpu_telemetry/nvidia_smi/h200.csv")
    assert (result.rows_read, result.rows.height, result.quarantine.height) == (40, 40, 0)
    per_metric = (result.rows.group_by(pl.col("metric").cast(pl.String), pl.col("unit").cast(pl.String))
                  .agg(pl.len().alias("n"), pl.col("value").sum().round(2).alias("total"))
                  .sort("metric").rows())
    assert per_metric == [
        ("fb_used_mib", "MiB", 5, 0.0),
        ("gpu_temp_c", "C", 5, 185.0),
        ("gpu_util_pct", "%", 5, 0.0),
        ("mem_copy_util_pct", "%", 5, 0.0),
        ("power_w", "W", 5, 395.28),  # 79.13 + 79.05 x 3 + 79.00
        ("power_w_avg1s", "W", 5, 395.28),
        ("power_w_instant", "W", 5, 398.06),  # 79.64 + 78.69 + 79.72 x 2 + 80.29
        ("sm_clock_mhz", "MHz", 5, 1725.0),
    ]
    # One power_w sample per GPU and time.
    power = result.rows.filter(pl.col("metric") == "power_w")
    assert power.select(pl.struct("gpu_uuid", "ts").n_unique()).item() == 5
    assert result.rows["gpu_model"].cast(pl.String).unique().to_list() == ["NVIDIA H200"]
    assert result.rows["ts"].min() == datetime(2026, 11, 29, 19, 26, 20, 169000, tzinfo=UTC)
