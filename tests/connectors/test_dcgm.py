"""DCGM exporter telemetry: both file shapes, blanks, MIG, and the hourly downsample."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from connectors.dcgm import (
    downsample_hourly,
    read_dcgm_csv,
    read_gpu_telemetry,
    read_prometheus_text,
)
from connectors.landing import LocalStore
from connectors.result import SourceFormatError
from connectors.schemas import GPU_HOURLY, GPU_SAMPLES

FIXTURES = Path(__file__).parent.parent / "fixtures" / "telemetry"
PROM = FIXTURES / "host_a.prom"
CSV = FIXTURES / "dcgm_long.csv"
GPU_A0 = "GPU-aaaa0000-0000-0000-0000-000000000000"
GPU_B0 = "GPU-bbbb0000-0000-0000-0000-000000000000"
H0 = datetime(2026, 10, 1, 0, tzinfo=UTC)
H1 = datetime(2026, 10, 1, 1, tzinfo=UTC)


def _hour(hourly: pl.DataFrame, hour: datetime, uuid: str, mig: str | None = None) -> dict:
    rows = hourly.filter(
        (pl.col("hour_start") == hour)
        & (pl.col("gpu_uuid") == uuid)
        & (pl.col("mig_profile").is_null() if mig is None else pl.col("mig_profile") == mig)
    )
    assert rows.height == 1
    return rows.row(0, named=True)


def test_prometheus_text_maps_fields_labels_and_quarantines_broken_lines() -> None:
    result = read_prometheus_text(PROM, source_file="gpu_telemetry/host_a.prom")
    result.check_balance()
    # 7 series x 4 samples + 1 sample with lowercase labels + 3 broken lines; comments skipped.
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (32, 29, 3)
    assert result.rows.schema == pl.Schema(GPU_SAMPLES)
    counts = dict(result.rows.group_by("metric").len().iter_rows())
    assert counts == {
        "gpu_util_pct": 5, "gr_engine_active": 4, "tensor_active": 4, "fb_used_mib": 4,
        "power_w": 4, "energy_mj": 4, "dcgm_fi_dev_sm_clock": 4,  # unknown field kept
    }
    reasons = dict(result.quarantine.select("row_number", "reason").iter_rows())
    assert reasons[44].startswith("missing GPU identity")
    assert reasons[45].startswith("line is not a Prometheus sample")
    assert reasons[46].startswith("sample has no timestamp")
    lower = result.rows.filter(pl.col("gpu_uuid") == "GPU-aaaa1111-0000-0000-0000-000000000000")
    assert lower.select("hostname", "gpu_index", "value").row(0) == ("gpu-host-a", 1, 33.0)
    first = result.rows.filter(pl.col("metric") == "energy_mj").sort("ts").row(0, named=True)
    assert first["ts"] == H0 and first["value"] == 1_000_000_000 and first["unit"] == "mJ"


def test_blank_sentinel_becomes_null_and_is_kept() -> None:
    rows = read_prometheus_text(PROM, source_file="host_a.prom").rows
    gr = rows.filter(pl.col("metric") == "gr_engine_active").sort("ts")["value"].to_list()
    assert gr == [0.5, 0.7, None, 0.1]


def test_long_csv_reads_mig_instances_na_values_and_quarantines_bad_rows() -> None:
    result = read_dcgm_csv(CSV, source_file="dcgm_long.csv")
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (10, 8, 2)
    assert result.rows["value"].null_count() == 2  # `[N/A]` power and an empty utilization
    q = result.quarantine.sort("row_number")
    assert q["row_number"].to_list() == [9, 10]
    assert q["reason"][0] == "unparseable timestamp '2026-10-01T25:00:00Z' (expected ISO-8601 UTC)"
    assert q["reason"][1] == "unparseable value 'abc'"
    mig = result.rows.filter(pl.col("mig_instance_id") == "1").row(0, named=True)
    assert (mig["mig_profile"], mig["k8s_namespace"], mig["k8s_pod"], mig["k8s_container"]) == (
        "3g.40gb", "inference", "vllm-llama-0", "vllm")


def test_csv_label_variants_and_gzip_through_the_landing_store(tmp_path: Path) -> None:
    text = CSV.read_text().replace("Hostname,gpu,UUID", "hostname,gpu,uuid", 1)
    text = text.replace(",namespace,pod,", ",pod_namespace,pod_name,", 1)
    target = tmp_path / "gpu_telemetry" / "dcgm" / "2026-10-01" / "gpu-host-b.csv.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(gzip.compress(text.encode()))
    (tmp_path / "gpu_telemetry" / "host_a.prom").write_bytes(PROM.read_bytes())
    store = LocalStore(tmp_path)
    result = read_gpu_telemetry(store, [o.key for o in store.list("gpu_telemetry")])
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (42, 37, 5)
    b = result.rows.filter(pl.col("gpu_uuid") == GPU_B0)
    assert b["hostname"].unique().to_list() == ["gpu-host-b"]
    assert sorted(b["k8s_pod"].unique().to_list()) == ["vllm-llama-0", "vllm-small-0"]


def test_csv_without_uuid_column_is_a_whole_file_error() -> None:
    bad = CSV.read_text().replace("UUID", "GPU_ID", 1).encode()
    with pytest.raises(SourceFormatError, match=r"broken\.csv.*UUID"):
        read_dcgm_csv(bad, source_file="broken.csv")


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"")
    with pytest.raises(SourceFormatError, match="x.parquet"):
        read_gpu_telemetry(LocalStore(tmp_path), ["x.parquet"])


def test_downsample_hourly_energy_busy_power_and_mig_fraction() -> None:
    samples = pl.concat([
        read_prometheus_text(PROM, source_file="host_a.prom").rows,
        read_dcgm_csv(CSV, source_file="dcgm_long.csv").rows,
    ])
    hourly = downsample_hourly(samples)
    assert hourly.schema == pl.Schema(GPU_HOURLY)
    assert hourly.height == 5

    a0 = _hour(hourly, H0, GPU_A0)
    assert a0["samples"] == 3
    assert a0["gpu_util_pct_avg"] == pytest.approx(90.0)
    # gr_engine_active 0.5, 0.7 and a blank: mean of the two known values.
    assert a0["busy_fraction"] == pytest.approx(0.6)
    assert a0["power_w_avg"] == pytest.approx(600.0)
    assert a0["fb_used_mib_avg"] == pytest.approx(41000.0)
    # counter 1,000,000,000 -> 1,036,000,000 -> 1,072,000,000 mJ: 72,000,000 mJ = 20 Wh
    assert a0["energy_wh"] == pytest.approx(20.0)
    assert a0["gpu_fraction"] == 1.0

    # The counter drops to 7,200,000 mJ (driver restart): the post-reset value is the delta.
    a0_next = _hour(hourly, H1, GPU_A0)
    assert a0_next["energy_wh"] == pytest.approx(2.0)
    assert a0_next["power_w_avg"] == pytest.approx(400.0)

    # No gr_engine_active on GPU 1: busy falls back to utilization / 100.
    assert _hour(hourly, H0, "GPU-aaaa1111-0000-0000-0000-000000000000")["busy_fraction"] == (
        pytest.approx(0.33))

    mig3 = _hour(hourly, H0, GPU_B0, "3g.40gb")
    assert mig3["gpu_fraction"] == pytest.approx(3 / 7)
    assert mig3["busy_fraction"] == pytest.approx(0.3)
    assert mig3["gpu_util_pct_avg"] == pytest.approx(60.0)
    # No energy counter: 200 W x one known 60 s power sample = 200 / 60 Wh.
    assert mig3["energy_wh"] == pytest.approx(200 / 60)

    mig1 = _hour(hourly, H0, GPU_B0, "1g.10gb")
    assert mig1["gpu_fraction"] == pytest.approx(1 / 7)
    assert mig1["samples"] == 2
    assert mig1["gpu_util_pct_avg"] == pytest.approx(10.0)
    assert mig1["energy_wh"] is None and mig1["power_w_avg"] is None


@pytest.fixture(scope="module")
def demo_telemetry(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from pipelines.demo.telemetry import write_telemetry
    from pipelines.demo.world import build_world

    world = build_world(days=2, requests_per_day=200)
    landing = tmp_path_factory.mktemp("landing")
    info = write_telemetry(world, landing)
    store = LocalStore(landing)
    return world, info, read_gpu_telemetry(store, [o.key for o in store.list("gpu_telemetry")])


def test_demo_telemetry_reads_back_one_file_per_running_host_day(demo_telemetry) -> None:
    world, info, result = demo_telemetry
    expected = {(d.isoformat(), i.hostname) for d in world.day_list for i in world.instances
                if world.instance_active(i, d)}
    written = {(f.split("/")[2], f.split("/")[3].removesuffix(".gz").rsplit(".", 1)[0])
               for f in info["files"]}
    assert written == expected and len(info["files"]) == 11
    assert sum(f.endswith(".prom") for f in info["files"]) == 1
    gpu_minutes = sum(i.gpus for d in world.day_list for i in world.instances
                      if world.instance_active(i, d)) * 1440
    assert gpu_minutes == (26 + 27) * 1440
    assert result.rows_read == result.rows_written == info["samples"] == gpu_minutes * 6
    assert result.rows_quarantined == 0
    assert result.rows["gpu_uuid"].n_unique() == 27


def test_demo_telemetry_load_follows_traffic_and_energy_survives_the_reset(demo_telemetry) -> None:
    world, info, result = demo_telemetry
    hourly = downsample_hourly(result.rows)
    spare = next(i for i in world.instances if i.deployment is None)
    idle = hourly.filter(pl.col("hostname") == spare.hostname)
    assert idle["gpu_util_pct_avg"].is_between(2, 5).all()
    llama = hourly.filter(pl.col("hostname") == world.instances[0].hostname,
                          pl.col("hour_start").dt.day() == 2)
    busy = dict(llama.group_by(pl.col("hour_start").dt.hour()).agg(pl.col("busy_fraction").mean())
                .iter_rows())
    assert busy[15] > busy[3] + 0.2  # diurnal peak (15:00 UTC) vs trough (03:00 UTC)
    # After the first hour each GPU's counter deltas cover the hour: energy ~ mean power x 1 h,
    # including the hour in which the counter was reset.
    later = hourly.filter(pl.col("hour_start") > H0)
    assert ((later["energy_wh"] / later["power_w_avg"] - 1).abs() < 0.02).all()
    reset = info["counter_reset"]
    at_reset = hourly.filter(pl.col("gpu_uuid") == reset["gpu_uuid"],
                             pl.col("hour_start") == reset["ts"].replace(minute=0))
    assert at_reset.height == 1
    assert at_reset["energy_wh"][0] == pytest.approx(at_reset["power_w_avg"][0], rel=0.02)


@pytest.mark.slow
def test_demo_telemetry_month_writes_quickly(tmp_path: Path) -> None:
    import time

    from pipelines.demo.telemetry import write_telemetry
    from pipelines.demo.world import build_world

    started = time.perf_counter()
    info = write_telemetry(build_world(), tmp_path)
    assert time.perf_counter() - started < 30
    assert info["samples"] > 6_500_000


def test_damaged_gzip_is_a_whole_file_error() -> None:
    damaged = gzip.compress(CSV.read_bytes())[:40]
    with pytest.raises(SourceFormatError, match=r"day\.csv\.gz: damaged gzip"):
        read_dcgm_csv(damaged, source_file="day.csv.gz")
