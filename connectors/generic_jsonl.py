"""Any JSONL request log with a column mapping from configuration -> gateway_requests.

For gateways this project has no reader for (an in-house proxy, Portkey or Helicone
exports, ...): the mapping says where each normalized field sits in a line, as a dotted
path of object keys::

    {
      "source": "acme-proxy",
      "input_tokens_include_cached": true,
      "fields": {
        "request_id": "id",
        "ts_start": "timestamp",
        "ts_end": "finished_at",
        "provider": "upstream.provider",
        "model_requested": "model",
        "input_tokens": "usage.input",
        "cache_read_tokens": "usage.cached",
        "output_tokens": "usage.output",
        "customer_id": "tenant",
        "feature": "labels.feature",
        "api_key": "auth.key"
      },
      "constants": {"provider": "openai"}
    }

`input_tokens` is the source's input count; `input_tokens_include_cached` says whether the
cache reads and writes are inside it (the OpenAI convention) or on top of it (Anthropic's),
so the disjoint buckets come out right either way. `input_uncached_tokens` may be mapped
instead. Timestamps are ISO-8601 text or unix numbers (`"time_unit": "s"|"ms"|"us"|"ns"`).
`api_key` is hashed on read, and only mapped paths are parsed: a prompt or response field
in the source is never read.

`finish_gateway_rows` is the shared tail of every gateway reader that maps its source to
these field names (OpenAI and Anthropic usage, OpenTelemetry spans): validation,
deduplication by request_id, hashing and pseudonymization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from connectors.dcgm import gunzip_if_compressed, parse_iso_utc_series
from connectors.litellm import (
    OPENAI_COMPATIBLE_PROVIDERS,
    SELF_HOSTED_PROVIDERS,
    money_from_text,
    null_if_blank,
    private_host,
    pseudonymize_customers,
    sha256_hex,
)
from connectors.result import ParseResult, SourceFormatError
from connectors.schemas import GATEWAY_REQUESTS, QUARANTINE, TS, conform

SOURCE = "generic"
# Counts (whole, not negative): the token buckets, and how many requests a row stands for
# (1 when not mapped: one row, one request).
TOKEN_FIELDS = ["input_tokens", "input_uncached_tokens", "cache_read_tokens",
                "cache_write_tokens", "output_tokens", "reasoning_tokens", "request_count"]
# Fields a mapping may name, besides the token counts.
TEXT_FIELDS = ["request_id", "ts_start", "ts_end", "provider", "model_requested",
               "model_served", "deployment", "customer_id", "team_id", "project_id", "api_key",
               "user_id", "feature", "status", "gateway_reported_cost", "api_base", "tags"]
REQUIRED = ["request_id", "ts_start"]
_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}


@dataclass(frozen=True)
class Mapping:
    """Where each normalized field sits in a source line (dotted key paths)."""

    fields: dict[str, str]
    source: str = SOURCE
    input_tokens_include_cached: bool = True
    time_unit: str = "s"
    constants: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str = "mapping") -> Mapping:
        """Validate a mapping from configuration; errors name the setting to fix."""
        fields = config.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise SourceFormatError(f"{where}: needs a non-empty \"fields\" object "
                                    "(normalized field -> dotted path in the source)")
        unknown = sorted(set(fields) - set(TEXT_FIELDS) - set(TOKEN_FIELDS))
        if unknown:
            raise SourceFormatError(f"{where}: unknown field(s) {unknown}; known fields are "
                                    f"{TEXT_FIELDS + TOKEN_FIELDS}")
        missing = [f for f in REQUIRED if f not in fields]
        if missing:
            raise SourceFormatError(f"{where}: the mapping must name {missing}")
        unit = config.get("time_unit", "s")
        if unit not in _UNITS:
            raise SourceFormatError(f"{where}: time_unit {unit!r} is not one of {list(_UNITS)}")
        return cls(fields=dict(fields), source=str(config.get("source", SOURCE)),
                   input_tokens_include_cached=bool(
                       config.get("input_tokens_include_cached", True)),
                   time_unit=unit, constants=dict(config.get("constants", {})))


def read_generic_jsonl(
    data: bytes | Path,
    mapping: Mapping | dict[str, Any],
    *,
    source_file: str,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse one JSONL file (plain or gzip) through the mapping."""
    if not isinstance(mapping, Mapping):
        mapping = Mapping.from_config(mapping, where=source_file)
    raw = gunzip_if_compressed(Path(data).read_bytes() if isinstance(data, Path) else data,
                               source_file)
    lines = (
        pl.DataFrame({"line": [raw.decode("utf-8", errors="replace")]})
        .select(pl.col("line").str.split("\n"))
        .explode("line")
        .with_row_index("_row_number", offset=1)
        .filter(pl.col("line").str.strip_chars() != "")
    )
    # A JSONPath match is null for a line that is not valid JSON: such lines are quarantined
    # without their text (it may hold prompts).
    is_object = pl.col("line").str.json_path_match("$").str.starts_with("{").fill_null(False)
    lines = lines.with_columns(is_object.alias("_ok"))
    bad = lines.filter(~pl.col("_ok"))
    decoded = lines.filter("_ok").select(
        "_row_number", pl.col("line").str.json_decode(_schema(mapping.fields)).alias("_j"))
    mapped = decoded.select(
        "_row_number",
        *[_path(pl.col("_j"), path).alias(name) for name, path in mapping.fields.items()],
        *[pl.lit(v, pl.String).alias(k) for k, v in mapping.constants.items()
          if k not in mapping.fields],
    )
    mapped = _times(mapped, mapping.time_unit)
    result = finish_gateway_rows(
        mapped, source=mapping.source, source_file=source_file,
        input_tokens_include_cached=mapping.input_tokens_include_cached,
        self_hosted_deployments=self_hosted_deployments, customer_salt=customer_salt)
    malformed = conform(bad.select(
        pl.lit(mapping.source).alias("source"), pl.lit(source_file).alias("source_file"),
        pl.col("_row_number").cast(pl.Int64).alias("row_number"),
        pl.format("line {}: not a JSON object", pl.col("_row_number")).alias("reason"),
        pl.format('{{"line_chars": {}}}', pl.col("line").str.len_chars()).alias("raw"),
    ), QUARANTINE)
    out = ParseResult(result.rows, pl.concat([malformed, result.quarantine]),
                      result.rows_read + bad.height, [source_file])
    out.check_balance()
    return out


def finish_gateway_rows(
    mapped: pl.DataFrame,
    *,
    source: str,
    source_file: str | pl.Expr,
    input_tokens_include_cached: bool,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
    raw_fields: list[str] | None = None,
) -> ParseResult:
    """Mapped fields -> validated, deduplicated GATEWAY_REQUESTS rows plus quarantine.

    `mapped` holds `_row_number` and any of TEXT_FIELDS / TOKEN_FIELDS (text or numbers;
    ts_start and ts_end may already be datetimes); `source_file` is a name or a column
    expression. The first copy of a request_id (in row order) is kept, later ones are
    quarantined, so a bucket or span exported twice is counted once.
    """
    df = mapped.with_columns(
        (source_file if isinstance(source_file, pl.Expr) else pl.lit(source_file))
        .alias("_source_file"))
    df = df.with_columns([pl.lit(None, pl.String).alias(c) for c in [*TEXT_FIELDS, *TOKEN_FIELDS]
                          if c not in df.columns])
    df = df.with_columns(
        *[_time(df[c]).alias(f"_{c}") for c in ("ts_start", "ts_end")],
        *[pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)
          .alias(f"_{c}") for c in TOKEN_FIELDS],
        money_from_text(df["gateway_reported_cost"].cast(pl.String)).alias("_cost"),
    )
    cached = pl.col("_cache_read_tokens").fill_null(0) + pl.col("_cache_write_tokens").fill_null(0)
    uncached = pl.col("_input_tokens") - cached if input_tokens_include_cached \
        else pl.col("_input_tokens")
    df = df.with_columns(pl.coalesce(pl.col("_input_uncached_tokens"), uncached)
                         .alias("_uncached"))
    raw = raw_fields or ["request_id", "ts_start", "model_requested", *TOKEN_FIELDS]
    good, bad = _split(df, _problem(input_tokens_include_cached), source, raw)
    good = good.with_row_index("_order")
    first = pl.col("_source_file").first().over("request_id", order_by="_order")
    first_line = pl.col("_row_number").first().over("request_id", order_by="_order")
    dup_reason = pl.when(~pl.col("request_id").is_first_distinct()).then(pl.format(
        "duplicate request_id '{}' (first seen in {} line {})",
        pl.col("request_id"), first, first_line))
    good, duplicates = _split(good, dup_reason, source, raw)
    result = ParseResult(
        rows=_normalize(good, source, self_hosted_deployments, customer_salt),
        quarantine=pl.concat([bad, duplicates]),
        rows_read=df.height,
        files=[source_file] if isinstance(source_file, str) else [],
    )
    result.check_balance()
    return result


def _split(df: pl.DataFrame, reason: pl.Expr, source: str, raw: list[str]
           ) -> tuple[pl.DataFrame, pl.DataFrame]:
    tagged = df.with_columns(reason.alias("_reason"))
    bad = tagged.filter(pl.col("_reason").is_not_null())
    quarantined = conform(bad.select(
        pl.lit(source).alias("source"),
        pl.col("_source_file").alias("source_file"),
        pl.col("_row_number").cast(pl.Int64).alias("row_number"),
        pl.col("_reason").alias("reason"),
        pl.struct([pl.col(c).cast(pl.String) for c in raw]).struct.json_encode().alias("raw"),
    ), QUARANTINE)
    return tagged.filter(pl.col("_reason").is_null()).drop("_reason"), quarantined


def _problem(input_tokens_include_cached: bool) -> pl.Expr:
    """Why a mapped row cannot be used (null when it is fine); the first problem wins."""
    def non_integer(name: str) -> pl.Expr:
        return pl.when(pl.col(name).is_not_null() & pl.col(f"_{name}").is_null()).then(
            pl.format("{} '{}' is not an integer", pl.lit(name), pl.col(name).cast(pl.String)))

    def negative(name: str) -> pl.Expr:
        return pl.when(pl.col(f"_{name}") < 0).then(
            pl.format("negative {} ({})", pl.lit(name), pl.col(f"_{name}")))

    cached = pl.col("_cache_read_tokens").fill_null(0) + pl.col("_cache_write_tokens").fill_null(0)
    too_cached = pl.when(
        pl.col("_input_uncached_tokens").is_null() & (cached > pl.col("_input_tokens"))
    ).then(pl.format("cached tokens ({} read + {} written) exceed input_tokens ({}), which "
                     "should include them", pl.col("_cache_read_tokens").fill_null(0),
                     pl.col("_cache_write_tokens").fill_null(0), pl.col("_input_tokens")))
    return pl.coalesce(
        pl.when(null_if_blank(pl.col("request_id").cast(pl.String)).is_null())
        .then(pl.lit("missing request_id")),
        pl.when(pl.col("ts_start").is_null()).then(pl.lit("missing ts_start")),
        pl.when(pl.col("_ts_start").is_null()).then(
            pl.format("unparseable ts_start '{}'", pl.col("ts_start").cast(pl.String))),
        *[non_integer(c) for c in TOKEN_FIELDS],
        *[negative(c) for c in TOKEN_FIELDS],
        *([too_cached] if input_tokens_include_cached else []),
        pl.when(pl.col("_uncached") < 0).then(
            pl.format("negative uncached input ({})", pl.col("_uncached"))),
        pl.when(pl.col("_reasoning_tokens") > pl.col("_output_tokens").fill_null(0)).then(
            pl.format("reasoning_tokens ({}) exceed output_tokens ({})",
                      pl.col("_reasoning_tokens"), pl.col("_output_tokens"))),
        pl.when(pl.col("gateway_reported_cost").is_not_null() & pl.col("_cost").is_null()).then(
            pl.format("gateway_reported_cost '{}' is not a number",
                      pl.col("gateway_reported_cost").cast(pl.String))),
    )


def _normalize(df: pl.DataFrame, source: str, self_hosted_deployments: frozenset[str],
               customer_salt: str | None) -> pl.DataFrame:
    text = {c: null_if_blank(pl.col(c).cast(pl.String)) for c in TEXT_FIELDS}
    provider = text["provider"].str.to_lowercase()
    api_host = text["api_base"].str.extract(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/:?#]+)", 1)
    deployment = pl.coalesce(text["deployment"], api_host)
    is_self_hosted = (
        provider.is_in(SELF_HOSTED_PROVIDERS).fill_null(False)
        | (provider.is_in(OPENAI_COMPATIBLE_PROVIDERS).fill_null(False)
           & private_host(api_host))
        | deployment.is_in(list(self_hosted_deployments)).fill_null(False)
    )
    tags = text["tags"]
    out = df.select(
        pl.col("request_id").cast(pl.String),
        pl.lit(source).alias("source"),
        pl.col("_source_file").alias("source_file"),
        pl.col("_ts_start").alias("ts_start"),
        pl.col("_ts_end").alias("ts_end"),
        ((pl.col("_ts_end") - pl.col("_ts_start")).dt.total_microseconds() / 1000)
        .alias("latency_ms"),
        provider.alias("provider"),
        pl.coalesce(text["model_requested"], text["model_served"]).alias("model_requested"),
        pl.coalesce(text["model_served"], text["model_requested"]).alias("model_served"),
        deployment.alias("deployment"),
        is_self_hosted.alias("is_self_hosted"),
        text["customer_id"].alias("customer_id"),
        text["team_id"].alias("team_id"),
        text["project_id"].alias("project_id"),
        text["api_key"].alias("_api_key"),
        text["user_id"].alias("user_id"),
        pl.coalesce(tags.str.extract(r'"feature:([^"]+)"', 1), text["feature"],
                    pl.lit("unknown")).alias("feature"),
        tags.alias("tags"),
        pl.coalesce(text["status"].str.to_lowercase(), pl.lit("success")).alias("status"),
        pl.lit(False).alias("gateway_cache_hit"),
        pl.col("_uncached").alias("input_uncached_tokens"),
        pl.col("_cache_read_tokens").fill_null(0).alias("cache_read_tokens"),
        pl.col("_cache_write_tokens").fill_null(0).alias("cache_write_tokens"),
        pl.col("_output_tokens").fill_null(0).alias("output_tokens"),
        pl.col("_reasoning_tokens").fill_null(0).alias("reasoning_tokens"),
        pl.col("_request_count").fill_null(1).alias("request_count"),
        pl.col("_cost").alias("gateway_reported_cost"),
    )
    out = out.with_columns(sha256_hex(pl.col("_api_key"), out["_api_key"]).alias("api_key_hash")
                           ).drop("_api_key")
    if customer_salt is not None:
        out = pseudonymize_customers(out, customer_salt)
    return conform(out, GATEWAY_REQUESTS)


def _time(values: pl.Series) -> pl.Series:
    """Already a datetime, or ISO-8601 text."""
    if values.dtype == pl.Datetime:
        return values.cast(TS)
    return parse_iso_utc_series(values.cast(pl.String))


def _times(mapped: pl.DataFrame, unit: str) -> pl.DataFrame:
    """Unix-number timestamps (in `unit`) become ISO text; other text is left as it is, so
    an unreadable value is quarantined with its own spelling."""
    for c in ("ts_start", "ts_end"):
        if c not in mapped.columns:
            continue
        number = pl.col(c).str.strip_chars().cast(pl.Float64, strict=False)
        iso = ((number * _UNITS[unit]).round().cast(pl.Int64).cast(pl.Datetime("us", "UTC"))
               .dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"))
        mapped = mapped.with_columns(
            pl.when(number.is_not_null()).then(iso).otherwise(pl.col(c)).alias(c))
    return mapped


def _schema(fields: dict[str, str]) -> pl.Struct:
    """The nested struct a set of dotted paths needs; every leaf is read as text."""
    tree: dict = {}
    for path in fields.values():
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SourceFormatError(f"mapping path {path!r} goes through a leaf")
        node.setdefault(parts[-1], None)

    def build(node: dict) -> pl.Struct:
        return pl.Struct({k: pl.String if v is None else build(v) for k, v in node.items()})

    return build(tree)


def _path(expr: pl.Expr, path: str) -> pl.Expr:
    for part in path.split("."):
        expr = expr.struct.field(part)
    return expr
