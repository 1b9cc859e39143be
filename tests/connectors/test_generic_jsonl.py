"""A JSONL log read through a column mapping from configuration."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from connectors.generic_jsonl import Mapping, read_generic_jsonl
from connectors.result import SourceFormatError

SECRET_PROMPT = "TOP-SECRET-PROMPT-generic-9e1f"
SECRET_KEY = "sk-proxy-PLANTED-77aa"
MAPPING = {
    "source": "acme-proxy",
    "input_tokens_include_cached": False,  # this proxy logs Anthropic-style counts
    "time_unit": "ms",
    "fields": {
        "request_id": "id", "ts_start": "started_ms", "ts_end": "ended_at",
        "provider": "upstream.provider", "model_requested": "model",
        "input_tokens": "usage.input", "cache_read_tokens": "usage.cache.read",
        "cache_write_tokens": "usage.cache.write", "output_tokens": "usage.output",
        "customer_id": "tenant", "feature": "labels.feature", "api_key": "auth.key",
        "gateway_reported_cost": "cost_usd",
    },
    "constants": {"team_id": "team-platform"},
}


def _line(rid: str, **over: object) -> dict:
    row = {"id": rid, "started_ms": 1790812800250, "ended_at": "2026-10-01T00:00:01.750Z",
           "upstream": {"provider": "anthropic", "region": "us"}, "model": "claude-sonnet-4-5",
           "usage": {"input": 200, "output": 300, "cache": {"read": 4000, "write": 1500}},
           "tenant": "cust_globex", "labels": {"feature": "doc-summarize"},
           "auth": {"key": SECRET_KEY}, "cost_usd": "1.1925e-02",
           "prompt": SECRET_PROMPT, "completion": {"text": SECRET_PROMPT}}
    row.update(over)
    return row


def _data() -> bytes:
    lines = [json.dumps(_line("r1")), "", json.dumps(_line("r2", usage={"input": 7})),
             "not json " + SECRET_PROMPT, json.dumps(_line("r1")),
             json.dumps(_line("r3", started_ms="yesterday"))]
    return ("\n".join(lines) + "\n").encode()


def test_mapping_reads_nested_paths_into_disjoint_buckets() -> None:
    result = read_generic_jsonl(_data(), MAPPING, source_file="gateway_logs/generic/acme/a.jsonl")
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (5, 2, 3)
    r1 = result.rows.filter(result.rows["request_id"] == "r1").row(0, named=True)
    assert (r1["input_uncached_tokens"], r1["cache_read_tokens"], r1["cache_write_tokens"],
            r1["output_tokens"]) == (200, 4000, 1500, 300)
    assert r1["ts_start"] == datetime(2026, 10, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert r1["latency_ms"] == 1500.0
    assert (r1["source"], r1["provider"], r1["customer_id"], r1["feature"], r1["team_id"]) == (
        "acme-proxy", "anthropic", "cust_globex", "doc-summarize", "team-platform")
    assert r1["api_key_hash"] == hashlib.sha256(SECRET_KEY.encode()).hexdigest()
    assert str(r1["gateway_reported_cost"]) == "0.011925000000"
    assert result.rows["request_count"].to_list() == [1, 1]  # unmapped: a row is a request
    reasons = dict(result.quarantine.select("row_number", "reason").iter_rows())
    assert reasons == {4: "line 4: not a JSON object",
                       5: "duplicate request_id 'r1' (first seen in gateway_logs/generic/acme/"
                          "a.jsonl line 1)",
                       6: "unparseable ts_start 'yesterday'"}
    for frame in (result.rows, result.quarantine):
        text = frame.write_csv()
        assert SECRET_PROMPT not in text and SECRET_KEY not in text


def test_openai_style_counts_and_salted_customers() -> None:
    mapping = dict(MAPPING, input_tokens_include_cached=True)
    data = json.dumps(_line("r9", usage={"input": 5700, "output": 300,
                                         "cache": {"read": 4000, "write": 1500}})).encode()
    row = read_generic_jsonl(data, mapping, source_file="b.jsonl", customer_salt="pepper").rows
    assert row["input_uncached_tokens"].to_list() == [200]
    fields = dict(mapping["fields"], request_count="usage.output")
    counted = read_generic_jsonl(data, dict(mapping, fields=fields), source_file="b.jsonl").rows
    assert counted["request_count"].to_list() == [300]  # a mapped count is taken as given
    assert row["customer_id"].to_list() == [hashlib.sha256(b"peppercust_globex").hexdigest()[:16]]


def test_bad_mappings_say_what_to_fix() -> None:
    with pytest.raises(SourceFormatError, match=r"unknown field\(s\) \['tokens'\]"):
        Mapping.from_config({"fields": {"request_id": "id", "ts_start": "t", "tokens": "n"}})
    with pytest.raises(SourceFormatError, match=r"must name \['ts_start'\]"):
        Mapping.from_config({"fields": {"request_id": "id"}})
