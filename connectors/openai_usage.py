"""OpenAI Usage API, completions (`GET /v1/organization/usage/completions`) -> gateway_requests.

Each saved response page looks like::

    {"object": "page", "has_more": false, "next_page": null, "data": [
      {"object": "bucket", "start_time": 1790812800, "end_time": 1790816400, "results": [
        {"object": "organization.usage.completions.result", "input_tokens": 1000,
         "input_cached_tokens": 800, "output_tokens": 500, "num_model_requests": 5,
         "project_id": "proj_abc", "user_id": null, "api_key_id": "key_abc",
         "model": "gpt-4o-2024-08-06", "batch": false, "service_tier": "default"}]}]}

A file holds one page (`.json`) or one page per line (`.jsonl`), plain or gzip. The API
aggregates: one result is the usage of `num_model_requests` requests in one time bucket for
one group (model x project x API key x batch x user x service tier, as grouped). Each
result becomes one gateway_requests row at bucket grain: ts_start/ts_end are the bucket,
request_id is a stable hash of bucket and group, so a bucket pulled twice (overlapping
pulls) is counted once. `num_model_requests` becomes the row's `request_count`.

`input_tokens` includes `input_cached_tokens` (and the cache writes of models that bill
them, `input_cache_write_tokens` where present), so the uncached bucket is the difference.
Batch API usage is marked `batch:true` in tags; `api_key_id` is an id, not a secret, but is
hashed like every key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from connectors.dcgm import gunzip_if_compressed
from connectors.generic_jsonl import finish_gateway_rows
from connectors.landing import LandingStore
from connectors.result import ParseResult, SourceFormatError

SOURCE = "openai_usage"
_S = pl.String
RESULT = pl.Struct({
    "input_tokens": _S, "input_cached_tokens": _S, "input_cache_write_tokens": _S,
    "output_tokens": _S, "num_model_requests": _S, "project_id": _S, "user_id": _S,
    "api_key_id": _S, "model": _S, "batch": _S, "service_tier": _S,
})
PAGE = pl.Struct({
    "object": _S,
    "data": pl.List(pl.Struct({"start_time": _S, "end_time": _S, "results": pl.List(RESULT)})),
})
# The group a result row stands for: with the bucket start, what makes its id.
GROUP = ["model", "project_id", "api_key_id", "batch", "user_id", "service_tier"]


def read_openai_usage(
    data: bytes | Path,
    *,
    source_file: str,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse one file of completions-usage pages."""
    return _finish(_results(data, source_file), self_hosted_deployments, customer_salt,
                   [source_file])


def read_openai_usage_files(
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


def bucket_results(data: bytes | Path, source_file: str, page_schema: pl.Struct) -> pl.DataFrame:
    """One row per bucket result of usage-API pages (OpenAI's and Anthropic's share the
    `data[].results[]` shape), with the file and a 1-based result number in the file."""
    pages = read_pages(data, source_file, page_schema)
    return (
        pages.select(pl.col("data").explode()).unnest("data")
        .explode("results").filter(pl.col("results").is_not_null())
        .unnest("results")
        .with_row_index("_row_number", offset=1)
        .with_columns(pl.lit(source_file).alias("_file"))
    )


def read_pages(data: bytes | Path, source_file: str, schema: pl.Struct) -> pl.DataFrame:
    """Saved API response pages: one JSON document, or one page per line (JSONL)."""
    raw = gunzip_if_compressed(Path(data).read_bytes() if isinstance(data, Path) else data,
                               source_file)
    lines = [x.strip() for x in raw.split(b"\n") if x.strip()]
    # A pretty-printed page has lines that are not whole objects; JSONL has only such lines.
    if lines and all(x.startswith(b"{") and x.endswith(b"}") for x in lines):
        texts = [x.decode("utf-8", errors="replace") for x in lines]
    else:
        texts = [raw.decode("utf-8", errors="replace")] if lines else []
    try:
        return (pl.DataFrame({"page": texts}, schema={"page": pl.String})
                .select(pl.col("page").str.json_decode(schema)).unnest("page"))
    except pl.exceptions.PolarsError as e:
        raise SourceFormatError(
            f"{source_file}: not usage report pages (JSON with data[].results[]): {e}; save the "
            "API responses as they come, one page per file or one per line") from e


def _finish(results: pl.DataFrame, self_hosted_deployments: frozenset[str],
            customer_salt: str | None, files: list[str]) -> ParseResult:
    start = pl.col("start_time").cast(pl.Int64, strict=False)
    end = pl.col("end_time").cast(pl.Int64, strict=False)
    mapped = results.select(
        "_row_number",
        "_file",
        pl.concat_str([pl.col("start_time"), *[pl.col(c).fill_null("") for c in GROUP]],
                      separator="|").alias("_identity"),
        (start * 1_000_000).cast(pl.Datetime("us", "UTC")).alias("ts_start"),
        (end * 1_000_000).cast(pl.Datetime("us", "UTC")).alias("ts_end"),
        pl.lit("openai").alias("provider"),
        pl.col("model").alias("model_requested"),
        pl.col("project_id"),
        pl.col("api_key_id").alias("api_key"),
        pl.col("user_id"),
        pl.format('["batch:{}"]', pl.col("batch").fill_null("false").str.to_lowercase())
        .alias("tags"),
        pl.col("num_model_requests").fill_null("0").alias("request_count"),
        pl.col("input_tokens"),
        pl.col("input_cached_tokens").alias("cache_read_tokens"),
        pl.col("input_cache_write_tokens").alias("cache_write_tokens"),
        pl.col("output_tokens"),
    )
    mapped = mapped.with_columns(
        stable_id(mapped["_identity"], "openai-usage").alias("request_id")).drop("_identity")
    result = finish_gateway_rows(
        mapped, source=SOURCE, source_file=pl.col("_file"), input_tokens_include_cached=True,
        self_hosted_deployments=self_hosted_deployments, customer_salt=customer_salt)
    result.files = files
    return result


def stable_id(identity: pl.Series, prefix: str) -> pl.Series:
    """sha256 of what identifies an aggregate row: the same bucket-group has the same id in
    any file and any run (polars' own hash is not stable across versions)."""
    distinct = identity.unique()
    digests = [f"{prefix}-{hashlib.sha256(v.encode()).hexdigest()[:32]}" for v in distinct]
    return identity.replace_strict(distinct, digests, return_dtype=pl.String)


def read_file(store: LandingStore, key: str) -> bytes:
    path = store.local_path(key)
    return path.read_bytes() if path is not None else store.read_bytes(key)
