"""Gateway logs and GPU telemetry ingested as streamed parts, routed to their own day.

A window run reads each file once, writes each day's rows as parts of that day's
partition, and records every file's first and last row time in the manifest, so a later
daily run skips a neighbouring file whose rows are all on other days and still reads one
whose rows spill across midnight.
"""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.ingestion import fleet_inventory, gateway_requests, gpu_telemetry
from assets.resources import StorageResource
from connectors import lake, litellm

D1, D2, D3 = date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)


def _request(rid: str, start: str, prompt: int, completion: int = 10) -> str:
    return json.dumps({
        "request_id": rid, "api_key": "sk-test-streamed", "spend": 0.001,
        "prompt_tokens": prompt, "completion_tokens": completion, "startTime": start,
        "endTime": start, "model": "gpt-4o", "model_group": "gpt-4o",
        "custom_llm_provider": "openai", "end_user": "cust_acme", "metadata": {},
        "messages": [{"role": "user", "content": "hello"}]})


def _write(root: Path, key: str, lines: list[str]) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.fixture()
def world(tmp_path: Path) -> dict:
    landing = tmp_path / "landing"
    # Day 1: 5 requests, the last one starting on day 2 (a file flushed after midnight).
    _write(landing, "gateway_logs/litellm/2026/10/01/a.jsonl.gz", [
        *[_request(f"d1-{i}", f"2026-10-01T{10 + i}:00:00Z", 100 * (i + 1)) for i in range(4)],
        _request("spill", "2026-10-02T00:00:00.500Z", 7000)])
    # Day 2: 3 requests, one a copy of day 1's spill (counted once), one malformed line.
    _write(landing, "gateway_logs/litellm/2026/10/02/b.jsonl.gz", [
        _request("d2-0", "2026-10-02T08:00:00Z", 20),
        _request("spill", "2026-10-02T00:00:00.500Z", 7000),
        '{"request_id": "broken", ',
        _request("d2-1", "2026-10-02T09:00:00Z", 30)])
    # Day 3: all on day 3.
    _write(landing, "gateway_logs/litellm/2026/10/03/c.jsonl.gz", [
        _request("d3-0", "2026-10-03T08:00:00Z", 5)])
    inventory = landing / "inventory" / "fleet.csv"
    inventory.parent.mkdir(parents=True)
    inventory.write_text("hostname,provider,resource_id,deployment,valid_from,valid_to\n")
    storage = StorageResource(landing=str(landing), lake=str(tmp_path / "lake"),
                              warehouse=str(tmp_path / "wh.duckdb"))
    return {"landing": landing, "lake": tmp_path / "lake", "storage": storage}


def _run(world: dict, first: date, last: date) -> None:
    tags = {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}
    result = dg.materialize([fleet_inventory, gateway_requests],
                            resources={"storage": world["storage"]}, tags=tags)
    assert result.success


def _day(world: dict, day: date) -> pl.DataFrame:
    return lake.read_partition(world["lake"], "gateway_requests", day).sort("request_id")


def _manifest(world: dict, day: date) -> dict:
    row = lake.read_partition(world["lake"], "_manifests/gateway_requests", day).row(0, named=True)
    row["source_files"] = [f["key"].rsplit("/", 1)[1] for f in json.loads(row["source_files"])]
    return row


def test_window_run_writes_parts_per_day(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm, "STREAM_BATCH_ROWS", 2)  # several parts per file
    _run(world, D1, D2)
    d1, d2 = _day(world, D1), _day(world, D2)
    assert d1["request_id"].to_list() == ["d1-0", "d1-1", "d1-2", "d1-3"]
    assert d1["input_uncached_tokens"].sum() == 100 + 200 + 300 + 400
    assert d2["request_id"].to_list() == ["d2-0", "d2-1", "spill"]
    assert d2["input_uncached_tokens"].sum() == 20 + 30 + 7000
    assert len(lake.partition_files(world["lake"], "gateway_requests", D1)) == 2  # 2 + 2 rows
    m1, m2 = _manifest(world, D1), _manifest(world, D2)
    assert (m1["rows_read"], m1["rows_written"], m1["rows_quarantined"]) == (4, 4, 0)
    # Day 2's quarantine: the copy of "spill" and the malformed line, both from b.jsonl.gz.
    assert (m2["rows_read"], m2["rows_written"], m2["rows_quarantined"]) == (5, 3, 2)
    reasons = lake.read_partition(world["lake"], "_quarantine/gateway_requests", D2)["reason"]
    assert sorted(r.split(" (")[0].split(":")[0] for r in reasons) == [
        "duplicate request_id 'spill'", "line 3"]


def test_daily_runs_skip_neighbours_known_to_hold_no_rows(world: dict) -> None:
    _run(world, D2, D2)  # reads a, b, c: their first and last rows are now known
    assert _manifest(world, D2)["source_files"] == ["a.jsonl.gz", "b.jsonl.gz", "c.jsonl.gz"]
    _run(world, D3, D3)
    # b.jsonl.gz (day 2) holds only day-2 rows: skipped. c.jsonl.gz is the day's own file.
    assert _manifest(world, D3)["source_files"] == ["c.jsonl.gz"]
    assert _day(world, D3)["request_id"].to_list() == ["d3-0"]
    _run(world, D1, D1)
    # b.jsonl.gz is skipped (day 2 rows only); a.jsonl.gz is the day's own.
    assert _manifest(world, D1)["source_files"] == ["a.jsonl.gz"]
    # Rerun day 2: a.jsonl.gz spills into day 2, so it is read again; nothing double counts.
    _run(world, D2, D2)
    assert _manifest(world, D2)["source_files"] == ["a.jsonl.gz", "b.jsonl.gz"]
    assert _day(world, D2)["request_id"].to_list() == ["d2-0", "d2-1", "spill"]
    assert _day(world, D2)["input_uncached_tokens"].sum() == 7050


def test_changed_neighbour_is_read_again(world: dict) -> None:
    _run(world, D2, D2)
    # c.jsonl.gz is re-exported with a request that started on day 2.
    _write(world["landing"], "gateway_logs/litellm/2026/10/03/c.jsonl.gz", [
        _request("d3-0", "2026-10-03T08:00:00Z", 5),
        _request("late", "2026-10-02T23:59:59Z", 11)])
    _run(world, D2, D2)
    assert _day(world, D2)["request_id"].to_list() == ["d2-0", "d2-1", "late", "spill"]


DCGM_HEADER = ("timestamp,Hostname,gpu,UUID,modelName,GPU_I_PROFILE,GPU_I_ID,namespace,pod,"
               "container,metric,value")


def _dcgm(ts: str, uuid: str, metric: str, value: float) -> str:
    return (f"{ts},gpu-host-1,0,{uuid},NVIDIA H100 80GB HBM3,,,inference,vllm-{uuid[-1]},"
            f"vllm,{metric},{value}")


def _telemetry_run(world: dict, first: date, last: date) -> pl.DataFrame:
    tags = {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}
    assert dg.materialize([gpu_telemetry], resources={"storage": world["storage"]},
                          tags=tags).success
    return lake.read_partition(world["lake"], "gpu_hourly", D2).sort("hour_start", "gpu_uuid")


def test_telemetry_hours_are_the_same_downsampled_as_written_or_read_back(world: dict) -> None:
    energy = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
    e0 = 1_000_000_000
    # Day 1's file was flushed after midnight: its last two scrapes of GPU-A are on day 2.
    _write(world["landing"], "gpu_telemetry/dcgm/2026-10-01/host-1.csv", [
        DCGM_HEADER,
        *[_dcgm(f"2026-10-01T23:59:{s}Z", "GPU-A", energy, e0 + i * 4_500_000)
          for i, s in enumerate(["30", "45"])],
        _dcgm("2026-10-02T00:00:00Z", "GPU-A", energy, e0 + 9_000_000),
        _dcgm("2026-10-02T00:00:15Z", "GPU-A", energy, e0 + 13_500_000),
        _dcgm("2026-10-02T00:00:00Z", "GPU-A", "DCGM_FI_DEV_POWER_USAGE", 500)])
    _write(world["landing"], "gpu_telemetry/dcgm/2026-10-02/host-1.csv", [
        DCGM_HEADER,
        _dcgm("2026-10-02T00:00:30Z", "GPU-A", energy, e0 + 18_000_000),
        _dcgm("2026-10-02T00:00:30Z", "GPU-A", "DCGM_FI_DEV_POWER_USAGE", 300),
        _dcgm("2026-10-02T00:00:45Z", "GPU-B", "DCGM_FI_DEV_GPU_UTIL", 50)])
    # A daily run downsamples day 2's rows as they are written, from both files.
    daily = _telemetry_run(world, D2, D2)
    # A backfill longer than FOLDED_DOWNSAMPLE_DAYS reads each day back from the lake.
    window = _telemetry_run(world, D1, date(2026, 10, 4))
    assert daily.equals(window)
    a, b = daily.row(0, named=True), daily.row(1, named=True)
    assert (a["gpu_uuid"], b["gpu_uuid"]) == ("GPU-A", "GPU-B")
    # Scrapes at 00:00:00, :15 and :30 (two files); counter deltas of day 2's readings:
    # 2 x 4.5e6 mJ = 2.5 Wh; power (500 + 300) / 2.
    assert (a["samples"], a["energy_wh"], a["power_w_avg"]) == (3, pytest.approx(2.5), 400.0)
    assert b["busy_fraction"] == pytest.approx(0.5)
    samples = lake.read_partition(world["lake"], "gpu_samples", D2)
    assert samples.height == 6
    # Categorical in memory, plain text in the lake: every engine reads the labels as strings.
    files = [str(f) for f in lake.partition_files(world["lake"], "gpu_samples", D2)]
    types = dict(duckdb.sql(
        f"select column_name, column_type from (describe select * from read_parquet({files}))"
    ).fetchall())
    assert {types[c] for c in ("hostname", "gpu_uuid", "metric", "unit", "source_file")} == {"VARCHAR"}
    assert samples.filter(pl.col("gpu_uuid") == "GPU-B")["metric"].to_list() == ["gpu_util_pct"]
