"""Anthropic Admin API usage report (`GET /v1/organizations/usage_report/messages`) -> gateway_requests.

Each saved response page looks like::

    {"has_more": false, "next_page": null, "data": [
      {"starting_at": "2026-10-01T00:00:00Z", "ending_at": "2026-10-01T01:00:00Z",
       "results": [{"uncached_input_tokens": 1200, "cache_read_input_tokens": 40000,
                    "cache_creation": {"ephemeral_5m_input_tokens": 3000,
                                       "ephemeral_1h_input_tokens": 500},
                    "output_tokens": 900, "server_tool_use": {"web_search_requests": 0},
                    "api_key_id": "apikey_01...", "workspace_id": "wrkspc_01...",
                    "model": "claude-sonnet-4-5-20250929", "service_tier": "standard",
                    "context_window": "0-200k"}]}]}

A file holds one page (`.json`) or one page per line (`.jsonl`), plain or gzip. Unlike
OpenAI's, Anthropic's input count excludes the cache: `uncached_input_tokens` is already the
uncached bucket, cache writes are the 5-minute plus 1-hour creation tokens (older reports
write `cache_creation_input_tokens` or flat `cache_creation_5m/1h_input_tokens`), cache
reads are `cache_read_input_tokens`. The report has no request count. Each result becomes
one gateway_requests row at bucket grain with a stable id of bucket and group, so
overlapping pulls count once; workspace_id is the project.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from connectors.generic_jsonl import finish_gateway_rows
from connectors.landing import LandingStore
from connectors.openai_usage import bucket_results, read_file, stable_id
from connectors.result import ParseResult

SOURCE = "anthropic_usage"
_S = pl.String
RESULT = pl.Struct({
    "uncached_input_tokens": _S, "cache_read_input_tokens": _S,
    "cache_creation": pl.Struct({"ephemeral_5m_input_tokens": _S,
                                 "ephemeral_1h_input_tokens": _S}),
    "cache_creation_input_tokens": _S, "cache_creation_5m_input_tokens": _S,
    "cache_creation_1h_input_tokens": _S, "output_tokens": _S, "api_key_id": _S,
    "workspace_id": _S, "model": _S, "service_tier": _S, "context_window": _S,
})
PAGE = pl.Struct({
    "data": pl.List(pl.Struct({"starting_at": _S, "ending_at": _S,
                               "results": pl.List(RESULT)})),
})
GROUP = ["model", "workspace_id", "api_key_id", "service_tier", "context_window"]


def read_anthropic_usage(
    data: bytes | Path,
    *,
    source_file: str,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse one file of usage-report pages."""
    return _finish(_results(data, source_file), self_hosted_deployments, customer_salt,
                   [source_file])


def read_anthropic_usage_files(
    store: LandingStore,
    keys: list[str],
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse several files; a bucket-group present in two of them is counted once."""
    parts = [_results(read_file(store, k), k) for k in keys]
    return _finish(pl.concat(parts) if parts else _results(b"", "none"),
                   self_hosted_deployments, customer_salt, list(keys))


def _results(data: bytes | Path, source_file: str) -> pl.DataFrame:
    return bucket_results(data, source_file, PAGE)


def _finish(results: pl.DataFrame, self_hosted_deployments: frozenset[str],
            customer_salt: str | None, files: list[str]) -> ParseResult:
    def n(e: pl.Expr) -> pl.Expr:
        return e.cast(pl.Int64, strict=False)

    ttl = pl.col("cache_creation")
    by_ttl = (n(pl.coalesce(ttl.struct.field("ephemeral_5m_input_tokens"),
                            pl.col("cache_creation_5m_input_tokens"))).fill_null(0)
              + n(pl.coalesce(ttl.struct.field("ephemeral_1h_input_tokens"),
                              pl.col("cache_creation_1h_input_tokens"))).fill_null(0))
    has_ttl = pl.any_horizontal(
        ttl.struct.field("ephemeral_5m_input_tokens").is_not_null(),
        ttl.struct.field("ephemeral_1h_input_tokens").is_not_null(),
        pl.col("cache_creation_5m_input_tokens").is_not_null(),
        pl.col("cache_creation_1h_input_tokens").is_not_null())
    cache_write = pl.when(has_ttl).then(by_ttl.cast(pl.String)).otherwise(
        pl.col("cache_creation_input_tokens"))
    mapped = results.select(
        "_row_number",
        "_file",
        pl.concat_str([pl.col("starting_at"), *[pl.col(c).fill_null("") for c in GROUP]],
                      separator="|").alias("_identity"),
        pl.col("starting_at").alias("ts_start"),
        pl.col("ending_at").alias("ts_end"),
        pl.lit("anthropic").alias("provider"),
        pl.col("model").alias("model_requested"),
        pl.col("workspace_id").alias("project_id"),
        pl.col("api_key_id").alias("api_key"),
        pl.format('["service_tier:{}"]', pl.col("service_tier").fill_null("standard"))
        .alias("tags"),
        # The report counts tokens, not requests: the row stands for an unknown number.
        pl.lit("0").alias("request_count"),
        # Anthropic's counts are already disjoint: no subtraction.
        pl.col("uncached_input_tokens").alias("input_tokens"),
        pl.col("cache_read_input_tokens").alias("cache_read_tokens"),
        cache_write.alias("cache_write_tokens"),
        pl.col("output_tokens"),
    )
    mapped = mapped.with_columns(
        stable_id(mapped["_identity"], "anthropic-usage").alias("request_id")).drop("_identity")
    result = finish_gateway_rows(
        mapped, source=SOURCE, source_file=pl.col("_file"), input_tokens_include_cached=False,
        self_hosted_deployments=self_hosted_deployments, customer_salt=customer_salt)
    result.files = files
    return result
