"""The minute downsample of gpu_samples (issue 4), from frames and from lazy Parquet scans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from connectors import dcgm
from connectors.dcgm import (
    downsample_hourly,
    downsample_hourly_and_minutely,
    downsample_minutely,
)
from connectors.schemas import GPU_MINUTELY, GPU_SAMPLES, conform

T0 = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
M1 = T0 + timedelta(minutes=1)
BASE_MJ = 1_000_000_000
STEP_MJ = 5_400_000  # 360 W for 15 s = 5,400 J = 1.5 Wh


def _sample(second: int, metric: str, value: float | None, *, uuid: str = "GPU-A",
            mig: str | None = None, profile: str | None = None,
            pod: str | None = "vllm-a-1") -> dict:
    return {"ts": T0 + timedelta(seconds=second), "hostname": "gpu-host-1", "gpu_uuid": uuid,
            "gpu_index": 0, "gpu_model": "NVIDIA H100 80GB HBM3", "mig_profile": profile,
            "mig_instance_id": mig, "k8s_namespace": "inference", "k8s_pod": pod,
            "source": "dcgm", "metric": metric, "value": value}


def _samples() -> pl.DataFrame:
    a = []
    # GPU A, minute 0: four scrapes 15 s apart; gr_engine_active has a DCGM blank (null).
    for i, (util, gr, power, fb) in enumerate(
            [(80, 0.5, 300, 1000), (90, 0.7, 360, 1000), (100, None, 420, 2000),
             (70, 0.6, 360, 2000)]):
        a += [_sample(15 * i, "gpu_util_pct", util), _sample(15 * i, "gr_engine_active", gr),
              _sample(15 * i, "power_w", power), _sample(15 * i, "fb_used_mib", fb),
              _sample(15 * i, "energy_mj", BASE_MJ + i * STEP_MJ)]
    # Minute 1: the pod is unknown on the first row, then changes; the counter resets to
    # 3.6e6 mJ (1 Wh) at 00:01:15; an unknown field at 00:01:30 is a scrape too.
    a += [_sample(60, "gpu_util_pct", 40, pod=None), _sample(60, "power_w", 500, pod=None),
          _sample(60, "energy_mj", BASE_MJ + 4 * STEP_MJ, pod=None),
          _sample(75, "gpu_util_pct", 60, pod="vllm-a-2"), _sample(75, "power_w", 300),
          _sample(75, "energy_mj", 3_600_000, pod="vllm-a-2"),
          _sample(90, "dcgm_fi_dev_sm_clock", 1980, pod="vllm-a-2")]
    # A 3g.40gb MIG instance of GPU B with power every 30 s and no energy counter.
    b = {"uuid": "GPU-B", "mig": "1", "profile": "3g.40gb", "pod": "vllm-b-1"}
    a += [_sample(0, "gpu_util_pct", 30, **b), _sample(0, "power_w", 200, **b),
          _sample(30, "power_w", 400, **b), _sample(60, "power_w", 600, **b)]
    return conform(pl.DataFrame(a), GPU_SAMPLES)


def _row(table: pl.DataFrame, minute: datetime, uuid: str) -> dict:
    rows = table.filter((pl.col("minute_start") == minute) & (pl.col("gpu_uuid") == uuid))
    assert rows.height == 1
    return rows.row(0, named=True)


def test_minute_rows_average_the_minute_and_take_counter_deltas() -> None:
    minutely = downsample_minutely(_samples())
    assert minutely.schema == pl.Schema(GPU_MINUTELY)
    assert minutely.height == 4
    a0 = _row(minutely, T0, "GPU-A")
    assert a0["samples"] == 4
    assert a0["gpu_util_pct_avg"] == pytest.approx(85.0)  # (80 + 90 + 100 + 70) / 4
    assert a0["busy_fraction"] == pytest.approx(0.6)  # gr 0.5, 0.7, 0.6; the blank skipped
    assert a0["power_w_avg"] == pytest.approx(360.0)
    assert a0["fb_used_mib_avg"] == pytest.approx(1500.0)
    # Three deltas of 5.4e6 mJ end in minute 0: 16.2e6 mJ = 4.5 Wh.
    assert a0["energy_wh"] == pytest.approx(4.5)
    assert (a0["gpu_fraction"], a0["k8s_pod"], a0["gpu_index"]) == (1.0, "vllm-a-1", 0)

    a1 = _row(minutely, M1, "GPU-A")
    assert a1["samples"] == 3  # 00:01:00, 00:01:15 and the sm_clock scrape at 00:01:30
    assert a1["gpu_util_pct_avg"] == pytest.approx(50.0)
    assert a1["busy_fraction"] == pytest.approx(0.5)  # no gr_engine_active: util / 100
    assert a1["power_w_avg"] == pytest.approx(400.0)
    # The delta ending at 00:01:00 (1.5 Wh) belongs to minute 1, and after the reset the
    # new reading counts whole (3.6e6 mJ = 1 Wh).
    assert a1["energy_wh"] == pytest.approx(2.5)
    assert a1["k8s_pod"] == "vllm-a-2"  # the first non-null pod of the minute
    assert a1["fb_used_mib_avg"] is None

    # No counter: mean power x the time the power samples cover (30 s each, the median
    # interval): minute 0 has two samples (300 W x 1 min), minute 1 one (600 W x 0.5 min).
    b0, b1 = _row(minutely, T0, "GPU-B"), _row(minutely, M1, "GPU-B")
    assert b0["energy_wh"] == pytest.approx(300 / 60)
    assert b1["energy_wh"] == pytest.approx(600 * 0.5 / 60)
    assert b0["gpu_fraction"] == pytest.approx(3 / 7)
    assert (b0["mig_instance_id"], b0["mig_profile"]) == ("1", "3g.40gb")
    assert b0["busy_fraction"] == pytest.approx(0.3)
    assert b1["busy_fraction"] is None and b1["gpu_util_pct_avg"] is None


def test_minutes_add_up_to_the_hour() -> None:
    hourly, minutely = downsample_hourly_and_minutely(_samples())
    assert hourly.equals(downsample_hourly(_samples()))
    assert minutely.equals(downsample_minutely(_samples()))
    energy = dict(minutely.group_by("gpu_uuid").agg(pl.col("energy_wh").sum()).iter_rows())
    assert energy == pytest.approx({"GPU-A": 7.0, "GPU-B": 10.0})
    assert dict(hourly.select("gpu_uuid", "energy_wh").iter_rows()) == pytest.approx(energy)
    assert dict(hourly.select("gpu_uuid", "samples").iter_rows()) == {"GPU-A": 7, "GPU-B": 3}


def test_lazy_scan_of_parts_read_in_small_batches_gives_the_same_minutes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples()
    # Two parts, GPU A's readings split between them; batches far smaller than a part.
    samples.slice(0, 13).write_parquet(tmp_path / "part-00000.parquet")
    samples.slice(13).write_parquet(tmp_path / "part-00001.parquet")
    monkeypatch.setattr(dcgm, "BATCH_ROWS", 4)
    lazy = downsample_minutely(pl.scan_parquet(tmp_path / "*.parquet"))
    assert lazy.equals(downsample_minutely(samples))
    assert _row(lazy, T0, "GPU-A")["energy_wh"] == pytest.approx(4.5)


def test_fed_part_by_part_as_written_gives_the_same_tables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    samples = _samples()
    # Parts as a day's files are written: GPU A's minute 0 split over three of them, the
    # energy reset in another, and each part read in batches smaller than itself.
    monkeypatch.setattr(dcgm, "BATCH_ROWS", 3)
    fed = dcgm.HourlyAndMinutely()
    for offset, length in [(0, 7), (7, 9), (16, 1), (17, 0), (17, 100)]:
        fed.add(samples.slice(offset, length))
    hourly, minutely = fed.finish()
    monkeypatch.setattr(dcgm, "BATCH_ROWS", 4_000_000)
    assert hourly.equals(downsample_hourly(samples))
    assert minutely.equals(downsample_minutely(samples))
    # The hand-computed figures of test_minutes_add_up_to_the_hour.
    assert dict(hourly.select("gpu_uuid", "energy_wh").iter_rows()) == pytest.approx(
        {"GPU-A": 7.0, "GPU-B": 10.0})
    assert dict(hourly.select("gpu_uuid", "samples").iter_rows()) == {"GPU-A": 7, "GPU-B": 3}
    assert _row(minutely, M1, "GPU-A")["k8s_pod"] == "vllm-a-2"


def test_nothing_fed_gives_empty_tables() -> None:
    hourly, minutely = dcgm.HourlyAndMinutely().finish()
    assert hourly.height == minutely.height == 0
    assert minutely.schema == pl.Schema(GPU_MINUTELY)


def test_empty_samples_give_an_empty_table() -> None:
    empty = downsample_minutely(pl.DataFrame(schema=GPU_SAMPLES).lazy())
    assert empty.height == 0 and empty.schema == pl.Schema(GPU_MINUTELY)
