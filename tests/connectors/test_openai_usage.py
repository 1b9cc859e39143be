"""OpenAI Usage API completions buckets: cached tokens inside input, bucket-grain rows."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from connectors.landing import LocalStore
from connectors.openai_usage import read_openai_usage, read_openai_usage_files
from connectors.schemas import GATEWAY_REQUESTS

H0 = 1790812800  # 2026-10-01T00:00:00Z


def _result(**over: object) -> dict:
    row = {"object": "organization.usage.completions.result", "input_tokens": 0,
           "output_tokens": 0, "input_cached_tokens": 0, "input_audio_tokens": 0,
           "output_audio_tokens": 0, "num_model_requests": 0, "project_id": None,
           "user_id": None, "api_key_id": None, "model": None, "batch": None,
           "service_tier": None}
    row.update(over)
    return row


def _page(buckets: list[tuple[int, list[dict]]], has_more: bool = False) -> dict:
    return {"object": "page", "has_more": has_more, "next_page": "page_AAAA" if has_more else None,
            "data": [{"object": "bucket", "start_time": s, "end_time": s + 3600, "results": r}
                     for s, r in buckets]}


PAGE_1 = _page([
    (H0, [_result(input_tokens=120_000, input_cached_tokens=80_000, output_tokens=9_000,
                  num_model_requests=310, project_id="proj_support", api_key_id="key_live_1",
                  model="gpt-4o-2024-08-06", batch=False, service_tier="default"),
          _result(input_tokens=50_000, output_tokens=2_000, num_model_requests=1_000,
                  project_id="proj_support", api_key_id="key_live_1",
                  model="gpt-4o-mini-2024-07-18", batch=True)]),
    (H0 + 3600, []),  # an hour without usage
], has_more=True)
PAGE_2 = _page([(H0 + 7200, [_result(input_tokens=1_000, input_cached_tokens=1_200,
                                     output_tokens=5, num_model_requests=1, model="gpt-4o")])])


def test_buckets_become_disjoint_rows_with_request_counts() -> None:
    text = json.dumps(PAGE_1) + "\n" + json.dumps(PAGE_2) + "\n"
    result = read_openai_usage(text.encode(), source_file="gateway_logs/openai_usage/d.jsonl")
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (3, 2, 1)
    assert result.rows.schema == pl.Schema(GATEWAY_REQUESTS)
    rows = {r["model_requested"]: r for r in result.rows.iter_rows(named=True)}
    big = rows["gpt-4o-2024-08-06"]
    assert (big["input_uncached_tokens"], big["cache_read_tokens"], big["cache_write_tokens"],
            big["output_tokens"]) == (40_000, 80_000, 0, 9_000)
    assert (big["ts_start"], big["ts_end"]) == (datetime(2026, 10, 1, tzinfo=UTC),
                                                datetime(2026, 10, 1, 1, tzinfo=UTC))
    # A bucket stands for its num_model_requests requests.
    assert (big["request_count"], rows["gpt-4o-mini-2024-07-18"]["request_count"]) == (310, 1000)
    assert json.loads(big["tags"]) == ["batch:false"]
    assert json.loads(rows["gpt-4o-mini-2024-07-18"]["tags"]) == ["batch:true"]
    assert big["provider"] == "openai" and big["project_id"] == "proj_support"
    assert big["api_key_hash"] == hashlib.sha256(b"key_live_1").hexdigest()
    assert big["request_id"].startswith("openai-usage-") and big["feature"] == "unknown"
    assert result.quarantine["reason"][0] == (
        "cached tokens (1200 read + 0 written) exceed input_tokens (1000), which should "
        "include them")


def test_overlapping_pulls_count_each_bucket_once(tmp_path: Path) -> None:
    folder = tmp_path / "gateway_logs" / "openai_usage"
    folder.mkdir(parents=True)
    (folder / "pull-1.json").write_text(json.dumps(PAGE_1, indent=2))
    (folder / "pull-2.json").write_text(json.dumps(PAGE_1))
    store = LocalStore(tmp_path)
    result = read_openai_usage_files(store, [o.key for o in store.list("gateway_logs")])
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (4, 2, 2)
    assert result.rows["source_file"].unique().to_list() == ["gateway_logs/openai_usage/pull-1.json"]
    assert result.quarantine["reason"].str.starts_with("duplicate request_id").all()
    assert result.rows["input_uncached_tokens"].sum() == 40_000 + 50_000


def test_not_a_usage_page_is_a_whole_file_error() -> None:
    from connectors.result import SourceFormatError

    with pytest.raises(SourceFormatError, match="bad.json"):
        read_openai_usage(b'{"object": "page", "data": 5}', source_file="bad.json")
