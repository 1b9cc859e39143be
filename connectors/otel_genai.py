"""OpenTelemetry GenAI spans (OTLP JSON trace export) -> gateway_requests.

The OTLP/JSON encoding, as the collector's file exporter writes it (one TracesData object
per line) or as a single document::

    {"resourceSpans": [{"resource": {"attributes": [...]}, "scopeSpans": [{"spans": [
      {"traceId": "5b8e...", "spanId": "eee1...", "name": "chat gpt-4o",
       "startTimeUnixNano": "1790812800000000000", "endTimeUnixNano": "1790812801250000000",
       "status": {"code": 0},
       "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "812"}},
                      ...]}]}]}]}

Attributes follow the GenAI semantic conventions: `gen_ai.provider.name` (older
instrumentations: `gen_ai.system`), `gen_ai.operation.name`, `gen_ai.request.model`,
`gen_ai.response.model`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`,
`gen_ai.usage.cache_read.input_tokens` and `gen_ai.usage.cache_creation.input_tokens`
(earlier spellings `gen_ai.usage.cache_read_input_tokens` / `..._creation_input_tokens`).
The conventions define input_tokens as all input tokens, cached ones included, whatever
the provider, so the cache buckets are subtracted from it.

Only model-call spans are rows (operation chat, text_completion, generate_content,
embeddings, or no operation but token usage): agent and tool spans repeat the usage of the
calls inside them and would count it twice; other spans (HTTP, database) are not requests.
A span's id is `traceId-spanId`, so a span exported twice counts once. Attributes that
carry prompts or completions (`gen_ai.input.messages`, `gen_ai.prompt`, ...) are dropped
right after decoding and never reach a frame column or the quarantine.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from connectors.generic_jsonl import finish_gateway_rows
from connectors.landing import LandingStore
from connectors.openai_usage import read_file, read_pages
from connectors.result import ParseResult

SOURCE = "otel_genai"
_S = pl.String
ANY_VALUE = pl.Struct({"stringValue": _S, "intValue": _S, "doubleValue": _S, "boolValue": _S})
ATTRIBUTES = pl.List(pl.Struct({"key": _S, "value": ANY_VALUE}))
SPAN = pl.Struct({
    "traceId": _S, "spanId": _S, "name": _S, "startTimeUnixNano": _S, "endTimeUnixNano": _S,
    "status": pl.Struct({"code": _S}), "attributes": ATTRIBUTES,
})
TRACES = pl.Struct({"resourceSpans": pl.List(pl.Struct({
    "resource": pl.Struct({"attributes": ATTRIBUTES}),
    "scopeSpans": pl.List(pl.Struct({"spans": pl.List(SPAN)})),
}))})

# Normalized field <- attribute keys, first present wins.
ATTRIBUTE_FIELDS: dict[str, list[str]] = {
    "provider": ["gen_ai.provider.name", "gen_ai.system"],
    "operation": ["gen_ai.operation.name"],
    "model_requested": ["gen_ai.request.model"],
    "model_served": ["gen_ai.response.model"],
    "input_tokens": ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"],
    "output_tokens": ["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"],
    "cache_read_tokens": ["gen_ai.usage.cache_read.input_tokens",
                          "gen_ai.usage.cache_read_input_tokens"],
    "cache_write_tokens": ["gen_ai.usage.cache_creation.input_tokens",
                           "gen_ai.usage.cache_creation_input_tokens"],
    "reasoning_tokens": ["gen_ai.usage.reasoning.output_tokens"],
    "api_base": ["server.address"],
    "customer_id": ["enduser.id", "user.id", "customer.id"],
    "feature": ["app.feature", "feature"],
    "deployment": ["deployment"],
}
MODEL_CALLS = ["chat", "text_completion", "generate_content", "embeddings"]
_STATUS_ERROR = "2"  # STATUS_CODE_ERROR; the JSON encoding writes the enum's number


def read_otel_genai(
    data: bytes | Path,
    *,
    source_file: str,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse one OTLP JSON trace file (one document, or one per line; plain or gzip)."""
    return _finish(_spans(data, source_file), self_hosted_deployments, customer_salt,
                   [source_file])


def read_otel_genai_files(
    store: LandingStore,
    keys: list[str],
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse several files; a span exported into two of them is counted once."""
    parts = [_spans(read_file(store, k), k) for k in keys]
    return _finish(pl.concat(parts) if parts else _spans(b"", "none"),
                   self_hosted_deployments, customer_salt, list(keys))


def _spans(data: bytes | Path, source_file: str) -> pl.DataFrame:
    """Model-call spans, one row each, with the attributes this reader uses as columns."""
    traces = read_pages(data, source_file, TRACES)
    spans = (
        traces.select(pl.col("resourceSpans").explode()).unnest("resourceSpans")
        .select(pl.col("scopeSpans").explode()).unnest("scopeSpans")
        .select(pl.col("spans").explode()).unnest("spans")
        .filter(pl.col("spanId").is_not_null())
        .with_row_index("_span")
    )
    wanted = {k for keys in ATTRIBUTE_FIELDS.values() for k in keys}
    attrs = (
        spans.select("_span", "attributes").explode("attributes").unnest("attributes")
        .filter(pl.col("key").is_in(list(wanted)))  # prompt/completion attributes go here
        .select("_span", "key", pl.coalesce(
            pl.col("value").struct.field(f) for f in ANY_VALUE.to_schema()).alias("value"))
        .unique(["_span", "key"], keep="first")
        .pivot("key", index="_span", values="value")
    )
    spans = spans.drop("attributes").join(attrs, on="_span", how="left")
    spans = spans.with_columns([pl.lit(None, _S).alias(k) for k in wanted
                                if k not in spans.columns])
    fields = spans.select(
        "_span", "traceId", "spanId", "startTimeUnixNano", "endTimeUnixNano",
        pl.col("status").struct.field("code").alias("_status_code"),
        *[pl.coalesce([pl.col(k) for k in keys]).alias(name)
          for name, keys in ATTRIBUTE_FIELDS.items()],
    )
    is_call = pl.col("operation").is_in(MODEL_CALLS) | (
        pl.col("operation").is_null()
        & (pl.col("input_tokens").is_not_null() | pl.col("output_tokens").is_not_null()))
    return (fields.filter(is_call)
            .with_columns(pl.lit(source_file).alias("_file"))
            .with_row_index("_row_number", offset=1))


def _finish(spans: pl.DataFrame, self_hosted_deployments: frozenset[str],
            customer_salt: str | None, files: list[str]) -> ParseResult:
    def nanos(col: str) -> pl.Expr:
        return (pl.col(col).cast(pl.Int64, strict=False) // 1000).cast(pl.Datetime("us", "UTC"))

    mapped = spans.select(
        "_row_number",
        "_file",
        pl.format("{}-{}", pl.col("traceId"), pl.col("spanId")).alias("request_id"),
        nanos("startTimeUnixNano").alias("ts_start"),
        nanos("endTimeUnixNano").alias("ts_end"),
        pl.when(pl.col("_status_code") == _STATUS_ERROR).then(pl.lit("failure"))
        .otherwise(pl.lit("success")).alias("status"),
        *[c for c in ATTRIBUTE_FIELDS if c != "operation"],
    )
    result = finish_gateway_rows(
        mapped, source=SOURCE, source_file=pl.col("_file"), input_tokens_include_cached=True,
        self_hosted_deployments=self_hosted_deployments, customer_salt=customer_salt,
        raw_fields=["request_id", "ts_start", "provider", "model_requested", "input_tokens",
                    "cache_read_tokens", "cache_write_tokens", "output_tokens"])
    result.files = files
    return result
