"""OpenTelemetry GenAI spans (OTLP JSON): model calls only, cached tokens inside input."""

from __future__ import annotations

import json

import polars as pl

from connectors.otel_genai import read_otel_genai

SECRET_PROMPT = "TOP-SECRET-PROMPT-otel-51c2"
T0_NS = 1790812800 * 10**9


def _attr(key: str, value: object) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _span(span_id: str, attrs: dict, *, start_s: float = 0, seconds: float = 1.25,
          status: int = 0, name: str = "chat") -> dict:
    return {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "name": name,
            "kind": 3, "startTimeUnixNano": str(T0_NS + int(start_s * 1e9)),
            "endTimeUnixNano": str(T0_NS + int((start_s + seconds) * 1e9)),
            "status": {"code": status},
            "attributes": [_attr(k, v) for k, v in attrs.items()]}


OPENAI = _span("aaaa000000000001", {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 3000, "gen_ai.usage.output_tokens": 250,
    "gen_ai.usage.cache_read.input_tokens": 1024, "enduser.id": "cust_acme",
    "app.feature": "chat-assistant", "server.address": "api.openai.com",
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [SECRET_PROMPT]}])})
# Older instrumentation: gen_ai.system and the underscore cache attributes.
ANTHROPIC = _span("aaaa000000000002", {
    "gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 5700,
    "gen_ai.usage.output_tokens": 300, "gen_ai.usage.cache_read_input_tokens": 4000,
    "gen_ai.usage.cache_creation_input_tokens": 1500, "gen_ai.prompt": SECRET_PROMPT},
    start_s=2)
VLLM_FAILED = _span("aaaa000000000003", {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "vllm",
    "gen_ai.request.model": "llama-3.1-70b-instruct", "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 0, "server.address": "10.0.12.4",
    "deployment": "llama-3.1-70b-instruct"}, start_s=3, status=2)
# The agent span repeats the usage of the calls inside it: not a request.
AGENT = _span("aaaa000000000004", {
    "gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 8700,
    "gen_ai.usage.output_tokens": 550}, name="invoke_agent support")
HTTP = _span("aaaa000000000005", {"http.request.method": "POST"}, name="POST")
BROKEN = _span("aaaa000000000006", {"gen_ai.operation.name": "chat",
                                    "gen_ai.usage.input_tokens": "lots"}, start_s=4)


def _export(spans: list[dict]) -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [_attr("service.name", "support-bot")]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai"},
                        "spans": spans}]}]}


def _file() -> bytes:
    # The collector's file exporter: one batch per line; the OpenAI span is exported twice.
    lines = [_export([OPENAI, ANTHROPIC, AGENT, HTTP]), _export([VLLM_FAILED, OPENAI, BROKEN])]
    return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


def test_model_call_spans_become_requests_with_disjoint_buckets() -> None:
    result = read_otel_genai(_file(), source_file="gateway_logs/otel_genai/traces.jsonl")
    result.check_balance()
    # 5 model-call spans (agent and HTTP spans are not requests): 3 rows, 1 copy, 1 broken.
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (5, 3, 2)
    rows = {r["provider"]: r for r in result.rows.iter_rows(named=True)}
    openai, anthropic, vllm = rows["openai"], rows["anthropic"], rows["vllm"]
    assert (openai["input_uncached_tokens"], openai["cache_read_tokens"],
            openai["output_tokens"]) == (1976, 1024, 250)
    assert (anthropic["input_uncached_tokens"], anthropic["cache_read_tokens"],
            anthropic["cache_write_tokens"]) == (200, 4000, 1500)
    assert (openai["model_requested"], openai["model_served"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert (openai["customer_id"], openai["feature"], openai["latency_ms"]) == (
        "cust_acme", "chat-assistant", 1250.0)
    assert openai["request_id"] == "5b8efff798038103d269b633813fc60c-aaaa000000000001"
    assert (vllm["status"], vllm["is_self_hosted"], vllm["deployment"]) == (
        "failure", True, "llama-3.1-70b-instruct")
    reasons = sorted(result.quarantine["reason"].to_list())
    assert reasons[0].startswith("duplicate request_id '5b8efff798038103d269b633813fc60c-aaaa")
    assert reasons[1] == "input_tokens 'lots' is not an integer"


def test_prompt_attributes_never_reach_rows_or_quarantine() -> None:
    result = read_otel_genai(_file(), source_file="t.jsonl")
    for frame in (result.rows, result.quarantine):
        text = frame.select(pl.all().cast(pl.String)).write_csv()
        assert SECRET_PROMPT not in text
