"""The day readers over every gateway and telemetry format in one landing store."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from connectors import lake
from connectors.landing import LocalStore
from connectors.result import SourceFormatError
from connectors.sources import gateway_day, telemetry_day, vllm_day
from connectors.vllm import vllm_hourly

DAY = date(2026, 10, 1)
SECRET_PROMPT = "TOP-SECRET-PROMPT-days-0c41"
SECRET_KEY = "sk-live-PLANTED-days-8d2e"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "telemetry"


def _write(root: Path, key: str, data: bytes | str) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _litellm(rid: str, start: str, prompt: int) -> str:
    return json.dumps({
        "request_id": rid, "call_type": "acompletion", "api_key": SECRET_KEY, "spend": 0.001,
        "prompt_tokens": prompt, "completion_tokens": 10, "startTime": start,
        "endTime": start, "model": "gpt-4o", "model_group": "gpt-4o",
        "custom_llm_provider": "openai", "end_user": "cust_acme", "metadata": {},
        "messages": [{"role": "user", "content": SECRET_PROMPT}],
        "response": {"choices": [{"message": {"content": SECRET_PROMPT}}]}})


@pytest.fixture()
def landing(tmp_path: Path) -> Path:
    _write(tmp_path, "gateway_logs/litellm/2026/10/01/a.jsonl.gz", gzip.compress("\n".join([
        _litellm("l1", "2026-10-01T10:00:00Z", 100),
        _litellm("l2", "2026-10-01T23:59:59.900Z", 200),
        _litellm("l3", "2026-10-02T00:00:00.100Z", 400)]).encode()))  # belongs to the 2nd
    _write(tmp_path, "gateway_logs/openai_usage/2026-10-01.json", json.dumps({
        "object": "page", "has_more": False, "data": [{
            "object": "bucket", "start_time": 1790848800, "end_time": 1790852400, "results": [{
                "input_tokens": 1000, "input_cached_tokens": 600, "output_tokens": 50,
                "num_model_requests": 4, "model": "gpt-4o-mini", "api_key_id": "key_1"}]}]}))
    _write(tmp_path, "gateway_logs/anthropic_usage/2026-10-01.json", json.dumps({"data": [{
        "starting_at": "2026-10-01T10:00:00Z", "ending_at": "2026-10-01T11:00:00Z",
        "results": [{"uncached_input_tokens": 30, "cache_read_input_tokens": 70,
                     "cache_creation": {"ephemeral_5m_input_tokens": 5},
                     "output_tokens": 9, "model": "claude-haiku-4-5"}]}]}))
    span = {"traceId": "t1", "spanId": "s1", "startTimeUnixNano": "1790848800000000000",
            "endTimeUnixNano": "1790848801000000000", "status": {},
            "attributes": [{"key": k, "value": v} for k, v in [
                ("gen_ai.operation.name", {"stringValue": "chat"}),
                ("gen_ai.provider.name", {"stringValue": "openai"}),
                ("gen_ai.request.model", {"stringValue": "gpt-4o"}),
                ("gen_ai.usage.input_tokens", {"intValue": "40"}),
                ("gen_ai.usage.output_tokens", {"intValue": "4"}),
                ("gen_ai.input.messages", {"stringValue": SECRET_PROMPT})]]}
    _write(tmp_path, "gateway_logs/otel_genai/2026-10-01/traces.jsonl",
           json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}) + "\n")
    _write(tmp_path, "gateway_logs/generic/acme/mapping.json", json.dumps({
        "source": "acme", "fields": {"request_id": "id", "ts_start": "t",
                                     "input_tokens": "in", "output_tokens": "out",
                                     "api_key": "key"}}))
    _write(tmp_path, "gateway_logs/generic/acme/2026-10-01/log.jsonl", json.dumps(
        {"id": "g1", "t": "2026-10-01T12:00:00Z", "in": 7, "out": 3, "key": SECRET_KEY,
         "prompt": SECRET_PROMPT}) + "\n")
    return tmp_path


def test_every_gateway_format_is_read_for_the_day(landing: Path) -> None:
    batch = gateway_day(LocalStore(landing), DAY)
    assert batch.quarantine.height == 0
    counts = dict(batch.rows.group_by("source").len().rows())
    assert counts == {"litellm": 2, "openai_usage": 1, "anthropic_usage": 1, "otel_genai": 1,
                      "acme": 1}
    totals = batch.rows.select(pl.col("input_uncached_tokens", "cache_read_tokens",
                                      "cache_write_tokens", "output_tokens").sum()).row(0)
    assert totals == (100 + 200 + 400 + 30 + 40 + 7, 600 + 70, 5, 20 + 50 + 9 + 4 + 3)
    assert len(batch.objects) == 5


def test_secrets_reach_neither_the_lake_nor_its_quarantine(landing: Path, tmp_path: Path) -> None:
    batch = gateway_day(LocalStore(landing), DAY)
    root = tmp_path / "lake"
    lake.write_table(root, "gateway_requests", DAY, batch.rows)
    lake.write_quarantine(root, "gateway_requests", DAY, batch.quarantine)
    for part in root.rglob("*.parquet"):
        text = pl.read_parquet(part).select(pl.all().cast(pl.String)).write_csv()
        assert SECRET_PROMPT not in text and SECRET_KEY not in text, part
        assert SECRET_PROMPT.encode() not in part.read_bytes()


def test_a_late_file_changes_the_day(landing: Path) -> None:
    before = gateway_day(LocalStore(landing), DAY)
    _write(landing, "gateway_logs/litellm/2026/10/01/late.jsonl",
           _litellm("l9", "2026-10-01T08:00:00Z", 1000) + "\n" +
           _litellm("l1", "2026-10-01T10:00:00Z", 100) + "\n")  # l1 again: counted once
    after = gateway_day(LocalStore(landing), DAY)
    assert after.rows.height == before.rows.height + 1
    assert (after.rows["input_uncached_tokens"].sum()
            == before.rows["input_uncached_tokens"].sum() + 1000)
    assert after.quarantine["reason"].str.starts_with("duplicate request_id 'l1'").all()


def test_unknown_gateway_format_and_missing_mapping_fail_loudly(landing: Path) -> None:
    (landing / "gateway_logs/generic/acme/mapping.json").unlink()
    with pytest.raises(SourceFormatError, match="no mapping.json"):
        gateway_day(LocalStore(landing), DAY)
    _write(landing, "gateway_logs/portkey/x.jsonl", "{}\n")
    with pytest.raises(SourceFormatError, match=r"unknown format folder\(s\) \['portkey'\]"):
        gateway_day(LocalStore(landing), DAY)


def test_every_telemetry_format_and_vllm_kept_apart(tmp_path: Path) -> None:
    _write(tmp_path, "gpu_telemetry/dcgm/2026-10-01/gpu-host-b.csv.gz",
           gzip.compress((FIXTURES / "dcgm_long.csv").read_bytes()))
    _write(tmp_path, "gpu_telemetry/dcgm/host_a.prom", (FIXTURES / "host_a.prom").read_bytes())
    _write(tmp_path, "gpu_telemetry/nvidia_smi/nvidia_smi.json", '{"timezone": "Asia/Tokyo"}')
    _write(tmp_path, "gpu_telemetry/nvidia_smi/2026-10-01/gpu-host-c.csv",
           "timestamp, name, uuid, index, utilization.gpu [%], power.draw [W]\n"
           "2026/10/01 09:00:00.000, NVIDIA L40S, GPU-cccc, 0, 40 %, 200.00 W\n")
    _write(tmp_path, "gpu_telemetry/prometheus/2026-10-01/util.json", json.dumps({
        "status": "success", "data": {"resultType": "matrix", "result": [{
            "metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "UUID": "GPU-dddd",
                       "Hostname": "gpu-host-d"},
            "values": [[1790812800, "12"], [1790812860, "14"]]}]}}))
    _write(tmp_path, "gpu_telemetry/vllm/2026-10-01/vllm-0.prom",
           'vllm:prompt_tokens_total{model_name="m"} 10 1790812800000\n'
           'vllm:prompt_tokens_total{model_name="m"} 25 1790816400000\n')
    store = LocalStore(tmp_path)
    batch = telemetry_day(store, DAY)
    sources = dict(batch.rows.group_by("source").len().rows())
    assert sources == {"dcgm": 29 + 8 + 2, "nvidia_smi": 2}
    smi = batch.rows.filter(pl.col("source") == "nvidia_smi")["ts"][0]
    assert smi.isoformat() == "2026-10-01T00:00:00+00:00"  # 09:00 in Tokyo
    assert not any(o.key.startswith("gpu_telemetry/vllm/") for o in batch.objects)
    hourly = vllm_hourly(vllm_day(store, DAY).rows)
    assert hourly["prompt_tokens"].to_list() == [15]
