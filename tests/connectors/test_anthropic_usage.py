"""Anthropic usage report: input excludes the cache; writes are 5-minute plus 1-hour."""

from __future__ import annotations

import gzip
import json

import polars as pl

from connectors.anthropic_usage import read_anthropic_usage

REPORT = {
    "data": [
        {"starting_at": "2026-10-01T00:00:00Z", "ending_at": "2026-10-01T01:00:00Z",
         "results": [
             {"uncached_input_tokens": 1_200, "cache_read_input_tokens": 40_000,
              "cache_creation": {"ephemeral_5m_input_tokens": 3_000,
                                 "ephemeral_1h_input_tokens": 500},
              "output_tokens": 900, "server_tool_use": {"web_search_requests": 2},
              "api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT", "workspace_id": "wrkspc_support",
              "model": "claude-sonnet-4-5-20250929", "service_tier": "standard",
              "context_window": "0-200k"},
             # An older report: one cache_creation_input_tokens number.
             {"uncached_input_tokens": 10, "cache_read_input_tokens": 0,
              "cache_creation_input_tokens": 70, "output_tokens": 5,
              "api_key_id": None, "workspace_id": None, "model": "claude-haiku-4-5",
              "service_tier": "batch", "context_window": None},
             {"uncached_input_tokens": -1, "cache_read_input_tokens": 0, "output_tokens": 1,
              "model": "claude-haiku-4-5"},
         ]},
        {"starting_at": "2026-10-01T01:00:00Z", "ending_at": "2026-10-01T02:00:00Z",
         "results": []},
    ],
    "has_more": False, "next_page": None,
}


def test_usage_report_maps_to_disjoint_buckets() -> None:
    result = read_anthropic_usage(gzip.compress(json.dumps(REPORT).encode()),
                                  source_file="gateway_logs/anthropic_usage/2026-10-01.json.gz")
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (3, 2, 1)
    rows = {r["model_requested"]: r for r in result.rows.iter_rows(named=True)}
    sonnet = rows["claude-sonnet-4-5-20250929"]
    # Nothing is subtracted: Anthropic's counts are already disjoint.
    assert (sonnet["input_uncached_tokens"], sonnet["cache_read_tokens"],
            sonnet["cache_write_tokens"], sonnet["output_tokens"]) == (1_200, 40_000, 3_500, 900)
    assert (sonnet["provider"], sonnet["project_id"]) == ("anthropic", "wrkspc_support")
    assert sonnet["ts_start"].isoformat() == "2026-10-01T00:00:00+00:00"
    assert sonnet["latency_ms"] == 3_600_000
    haiku = rows["claude-haiku-4-5"]
    assert (haiku["input_uncached_tokens"], haiku["cache_write_tokens"]) == (10, 70)
    assert haiku["tags"] == '["service_tier:batch"]'
    # The report counts tokens, not requests: no row claims a request count.
    assert result.rows["request_count"].to_list() == [0, 0]
    assert result.quarantine["reason"].to_list() == ["negative input_tokens (-1)"]
    total = result.rows.select(pl.sum_horizontal("input_uncached_tokens", "cache_read_tokens",
                                                 "cache_write_tokens", "output_tokens")).sum()
    assert total.item() == 1_200 + 40_000 + 3_500 + 900 + 10 + 70 + 5
