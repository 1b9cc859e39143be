"""DCGM through a real Prometheus server: query_range in windows, label variants, blanks,
MIG slices, counter resets, and no samples invented by Prometheus's lookback."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from connectors.dcgm import downsample_hourly
from connectors.prometheus_api import parse_query_range, read_dcgm_range
from connectors.result import SourceFormatError
from connectors.schemas import GPU_SAMPLES
from tests.support.prometheus import prometheus_server

T0 = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
STEP = 15
GPU_A = ('gpu="0",UUID="GPU-aaaa",Hostname="node-a",modelName="NVIDIA H100 80GB HBM3",'
         'pod="vllm-0",namespace="inference"')
# Older exporters: lowercase labels and pod_name.
GPU_B = 'gpu="1",uuid="GPU-bbbb",hostname="node-a",modelName="NVIDIA H100 80GB HBM3",pod_name="vllm-1"'
MIG = ('gpu="2",UUID="GPU-cccc",Hostname="node-a",modelName="NVIDIA H100 80GB HBM3",'
       'GPU_I_PROFILE="3g.40gb",GPU_I_ID="1"')
BLANK = 9223372036854775794  # DCGM_INT64_BLANK-ish sentinel


def _openmetrics() -> str:
    """30 minutes of DCGM samples every 15 s: GPU A all along, GPU B until minute 20."""
    out = []
    for i in range(120):
        ts = int(T0.timestamp()) + i * STEP
        out += [f"DCGM_FI_DEV_GPU_UTIL{{{GPU_A}}} {50 + i % 2 * 10} {ts}",
                f"DCGM_FI_DEV_POWER_USAGE{{{GPU_A}}} 600 {ts}",
                f"DCGM_FI_DEV_FB_USED{{{GPU_A}}} 40000 {ts}",
                f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{GPU_A}}} {BLANK if i == 7 else 0.5} {ts}",
                f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{GPU_A}}} 0.25 {ts}",
                # 600 W for 15 s = 9,000,000 mJ per step; the counter restarts at step 60.
                (f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{GPU_A}}} "
                 f"{(i if i < 60 else i - 60) * 9_000_000 + (0 if i < 60 else 9_000_000)} {ts}"),
                f"DCGM_FI_DEV_GPU_UTIL{{{MIG}}} 30 {ts}"]
        if i < 80:
            out.append(f"DCGM_FI_DEV_GPU_UTIL{{{GPU_B}}} 20 {ts}")
    # promtool wants each series' samples together and in time order.
    out.sort(key=lambda line: (line.rsplit(" ", 2)[0], int(line.rsplit(" ", 1)[1])))
    return "\n".join(out) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus() -> str:
    with prometheus_server(_openmetrics()) as url:
        yield url


@pytest.fixture(scope="module")
def pulled(prometheus: str):
    return read_dcgm_range(prometheus, T0, T0 + timedelta(hours=1),
                           step=timedelta(seconds=STEP), window=timedelta(minutes=10))


def test_windows_return_each_sample_once_and_no_lookback_repeats(pulled) -> None:
    pulled.check_balance()
    assert pulled.rows.schema == pl.Schema(GPU_SAMPLES)
    counts = dict(pulled.rows.group_by("gpu_uuid", "metric").len()
                  .select(pl.format("{}/{}", "gpu_uuid", "metric"), "len").iter_rows())
    # 6 windows of 10 minutes; A and the MIG slice report for 30 minutes (120 samples),
    # B for 20: Prometheus would repeat B's last sample for 5 more minutes (20 points).
    assert counts["GPU-aaaa/gpu_util_pct"] == 120
    assert counts["GPU-cccc/gpu_util_pct"] == 120
    assert counts["GPU-bbbb/gpu_util_pct"] == 80
    assert len(counts) == 8
    assert pulled.rows.height == 120 * 7 + 80
    assert pulled.rows_quarantined == 0
    assert pulled.rows["ts"].min() == T0
    assert pulled.rows["ts"].max() == T0 + timedelta(seconds=119 * STEP)
    # Window boundaries (every 10 minutes) neither drop nor repeat a sample.
    assert not pulled.rows.select("gpu_uuid", "metric", "ts").is_duplicated().any()


def test_label_variants_mig_and_blank_sentinel(pulled) -> None:
    b = pulled.rows.filter(pl.col("gpu_uuid") == "GPU-bbbb").row(0, named=True)
    assert (b["hostname"], b["gpu_index"], b["k8s_pod"]) == ("node-a", 1, "vllm-1")
    mig = pulled.rows.filter(pl.col("gpu_uuid") == "GPU-cccc").row(0, named=True)
    assert (mig["mig_profile"], mig["mig_instance_id"]) == ("3g.40gb", "1")
    gr = pulled.rows.filter(pl.col("metric") == "gr_engine_active").sort("ts")["value"]
    assert gr.null_count() == 1 and gr[7] is None and gr[8] == 0.5


def test_hourly_energy_survives_the_counter_reset(pulled) -> None:
    hourly = downsample_hourly(pulled.rows)
    a = hourly.filter(pl.col("gpu_uuid") == "GPU-aaaa").row(0, named=True)
    # 119 deltas of 9,000,000 mJ (the reset step counts its post-reset value) = 297.5 Wh.
    assert a["energy_wh"] == pytest.approx(119 * 9_000_000 / 3.6e6)
    assert a["busy_fraction"] == pytest.approx(0.5)
    assert a["gpu_util_pct_avg"] == pytest.approx(55.0)
    mig = hourly.filter(pl.col("gpu_uuid") == "GPU-cccc").row(0, named=True)
    assert mig["gpu_fraction"] == pytest.approx(3 / 7)


def test_saved_response_and_error_response(prometheus: str) -> None:
    params = urllib.parse.urlencode({"query": "DCGM_FI_DEV_POWER_USAGE",
                                     "start": T0.timestamp(), "end": T0.timestamp() + 45,
                                     "step": STEP})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}") as r:
        body = r.read()
    saved = parse_query_range(body, source_file="gpu_telemetry/prom/power.json")
    assert saved.rows["value"].to_list() == [600.0] * 4
    assert saved.rows["source_file"].unique().to_list() == ["gpu_telemetry/prom/power.json"]
    error = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"})
    with pytest.raises(SourceFormatError, match=r"x\.json.*parse error"):
        parse_query_range(error.encode(), source_file="x.json")
    with pytest.raises(SourceFormatError, match="HTTP 400"):
        read_dcgm_range(prometheus, T0, T0 + timedelta(minutes=1), fields=["not a query("])
