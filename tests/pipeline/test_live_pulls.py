"""The ingestion assets pull from live servers when configured: LiteLLM's PostgreSQL table
(INFERLEDGER_LITELLM_DSN) and the DCGM exporter's series in Prometheus
(INFERLEDGER_PROMETHEUS_URL), both real servers on loopback started by the test."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest

from assets.ingestion import fleet_inventory, gateway_requests, gpu_telemetry
from assets.resources import StorageResource
from connectors import lake
from tests.connectors.test_litellm_postgres import CREATE  # LiteLLM's table, as Prisma makes it
from tests.support.postgres import postgres_server
from tests.support.prometheus import prometheus_server

DAY = date(2026, 10, 1)
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _storage(tmp_path: Path) -> StorageResource:
    landing = tmp_path / "landing"
    (landing / "inventory").mkdir(parents=True)
    (landing / "inventory" / "fleet.csv").write_text(
        "hostname,provider,resource_id,deployment,valid_from,valid_to\n")
    return StorageResource(landing=str(landing), lake=str(tmp_path / "lake"),
                           warehouse=str(tmp_path / "wh.duckdb"))


def _materialize(assets: list, storage: StorageResource) -> None:
    result = dg.materialize(assets, resources={"storage": storage}, partition_key=DAY.isoformat())
    assert result.success


def test_gateway_requests_from_the_proxy_database_and_files_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _storage(tmp_path)
    # 30 requests in the table (every 47 minutes from 00:00: 00:00 .. 22:43 on the day),
    # and the day after's first one; the first 10 were also exported to a JSONL file.
    rows = [{"request_id": f"r{i:02d}", "call_type": "acompletion", "api_key": "sk-db-key",
             "spend": 0.001, "prompt_tokens": 100 + i, "completion_tokens": 10,
             "startTime": T0 + timedelta(minutes=47 * i), "model": "gpt-4o",
             "model_group": "gpt-4o", "custom_llm_provider": "openai", "end_user": "cust_a",
             "messages": json.dumps([{"role": "user", "content": "hi"}])} for i in range(31)]
    export = Path(storage.landing) / "gateway_logs/litellm/2026/10/01/export.jsonl.gz"
    export.parent.mkdir(parents=True)
    export.write_bytes(gzip.compress("\n".join(json.dumps({
        **r, "startTime": r["startTime"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endTime": r["startTime"].strftime("%Y-%m-%dT%H:%M:%SZ")}) for r in rows[:10]).encode()))
    with postgres_server() as dsn:
        with psycopg.connect(dsn) as conn:
            conn.execute(CREATE)
            for r in rows:
                start = r["startTime"].replace(tzinfo=None)
                conn.execute(
                    'INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, '
                    'prompt_tokens, completion_tokens, "startTime", "endTime", model, model_group, '
                    'custom_llm_provider, end_user, messages) '
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (r["request_id"], r["call_type"], r["api_key"], r["spend"], r["prompt_tokens"],
                     r["completion_tokens"], start, start, r["model"], r["model_group"],
                     r["custom_llm_provider"], r["end_user"], r["messages"]))
        monkeypatch.setenv("INFERLEDGER_LITELLM_DSN", dsn)
        _materialize([fleet_inventory, gateway_requests], storage)
    day = lake.read_partition(storage.lake, "gateway_requests", DAY)
    # r00..r30 start at 47-minute steps: r30 is at 23:30 on the day (47 * 30 = 1410 min).
    assert day.height == 31
    assert day["input_uncached_tokens"].sum() == sum(100 + i for i in range(31))
    # The 10 exported requests were read from the file first; the table's copies quarantined.
    assert day.filter(pl.col("source_file").str.ends_with("export.jsonl.gz")).height == 10
    quarantine = lake.read_partition(storage.lake, "_quarantine/gateway_requests", DAY)
    assert quarantine.height == 10
    assert quarantine["reason"].str.starts_with("duplicate request_id").all()
    manifest = lake.read_partition(storage.lake, "_manifests/gateway_requests", DAY).row(0, named=True)
    assert (manifest["rows_read"], manifest["rows_written"], manifest["rows_quarantined"]) == (41, 31, 10)
    keys = [f["key"] for f in json.loads(manifest["source_files"])]
    assert any(k.startswith("postgresql://") and "LiteLLM_SpendLogs" in k for k in keys)
    assert not any("postgres@" in k or "password" in k for k in keys)


def test_gpu_samples_pulled_from_prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = _storage(tmp_path)
    labels = 'gpu="0",UUID="GPU-live",Hostname="node-live",modelName="NVIDIA H100 80GB HBM3"'
    series = []
    for metric, value in (("DCGM_FI_DEV_GPU_UTIL", "40"), ("DCGM_FI_DEV_POWER_USAGE", "500")):
        # Two hours of samples every 15 s, from 00:00 on the day.
        series += [f"{metric}{{{labels}}} {value} {int(T0.timestamp()) + 15 * i}" for i in range(480)]
    with prometheus_server("\n".join(series) + "\n# EOF\n") as url:
        monkeypatch.setenv("INFERLEDGER_PROMETHEUS_URL", url)
        _materialize([gpu_telemetry], storage)
    samples = lake.read_partition(storage.lake, "gpu_samples", DAY)
    assert samples.height == 2 * 480
    assert samples.group_by("metric").len().sort("metric").rows() == [
        ("gpu_util_pct", 480), ("power_w", 480)]
    hourly = lake.read_partition(storage.lake, "gpu_hourly", DAY).sort("hour_start")
    assert hourly.height == 2
    assert hourly["gpu_util_pct_avg"].to_list() == pytest.approx([40.0, 40.0])
    assert hourly["power_w_avg"].to_list() == pytest.approx([500.0, 500.0])
    minutely = lake.read_partition(storage.lake, "gpu_minutely", DAY)
    assert minutely.height == 120  # 2 hours of minutes, one GPU
    assert minutely["power_w_avg"].mean() == pytest.approx(500.0)
