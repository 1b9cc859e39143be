"""LiteLLM proxy spend logs (rows of `LiteLLM_SpendLogs`, exported as JSONL) -> gateway_requests.

One JSON object per line, the table's columns as keys (`request_id`, `call_type`, `api_key`,
`spend`, `prompt_tokens`, `completion_tokens`, `startTime`, `endTime`, `model`,
`model_group`, `custom_llm_provider`, `api_base`, `user`, `end_user`, `team_id`,
`metadata`, `cache_hit`, `request_tags`, `status`, `messages`, `response`, ...). `metadata`
and `request_tags` may be JSON objects or JSON text (both appear in exports). Files may be
gzip-compressed.

Only the fields in SPEND_LOG_FIELDS are read: prompt and response bodies (`messages`,
`response`, `proxy_server_request`) never reach a frame, and neither does `api_key`, which
is hashed (sha256) into api_key_hash. Quarantined rows keep only the fields in RAW_FIELDS.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import polars as pl

from connectors.dcgm import gunzip_if_compressed, parse_iso_utc
from connectors.landing import LandingStore
from connectors.result import ParseResult
from connectors.schemas import GATEWAY_REQUESTS, MONEY, QUARANTINE, conform, empty

SOURCE = "litellm"

# Every field read as text: numbers keep their exact decimal spelling (spend goes straight
# to Decimal) and a wrongly typed value quarantines one row instead of failing the file.
SPEND_LOG_FIELDS = [
    "request_id", "call_type", "api_key", "spend", "total_tokens", "prompt_tokens",
    "completion_tokens", "startTime", "endTime", "model", "model_id", "model_group",
    "custom_llm_provider", "api_base", "user", "end_user", "team_id", "metadata", "cache_hit",
    "request_tags", "status",
]
# What a quarantined row keeps: enough to find it again, no identities, keys or bodies.
RAW_FIELDS = [
    "request_id", "startTime", "endTime", "model", "model_group", "custom_llm_provider",
    "prompt_tokens", "completion_tokens", "spend", "status",
]

_TEXT_SCHEMA = {f: pl.String for f in SPEND_LOG_FIELDS}
_S = pl.String
_USAGE = pl.Struct({
    "cache_read_input_tokens": _S,
    "cache_creation_input_tokens": _S,
    "prompt_tokens_details": pl.Struct({"cached_tokens": _S, "cache_creation_tokens": _S}),
    "completion_tokens_details": pl.Struct({"reasoning_tokens": _S}),
})
# The parts of LiteLLM's `metadata` this reader uses; leaves are text for the same reason.
METADATA = pl.Struct({
    "user_api_key_team_id": _S,
    "user_api_key_user_id": _S,
    "user_api_key_end_user_id": _S,
    "customer_id": _S,
    "feature": _S,
    "status": _S,
    "additional_usage_values": _USAGE,
    "usage_object": _USAGE,
})

SELF_HOSTED_PROVIDERS = ["hosted_vllm", "vllm"]
# LiteLLM's names for "an OpenAI-compatible server at this api_base".
OPENAI_COMPATIBLE_PROVIDERS = ["openai", "openai_like", "custom_openai", "openai_compatible"]
# RFC 1918 ranges, loopback, and in-cluster Kubernetes service names.
_PRIVATE_HOST = (
    r"^(10\.\d+\.\d+\.\d+|172\.(1[6-9]|2\d|3[01])\.\d+\.\d+|192\.168\.\d+\.\d+|127\.\d+\.\d+\.\d+"
    r"|localhost|[a-z0-9.-]+\.svc(\.cluster\.local)?)$"
)


def read_litellm_jsonl(
    data: bytes | Path,
    *,
    source_file: str,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse one spend-log JSONL file (plain or gzip); duplicate request_ids are quarantined."""
    parsed, quarantined, read = _parse_file(_as_bytes(data), source_file)
    return _finish([parsed], [quarantined], read, [source_file],
                   self_hosted_deployments, customer_salt)


def read_litellm(
    store: LandingStore,
    keys: list[str],
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse several spend-log files; a request_id seen twice (in any of them) is kept once."""
    parsed, quarantined, read = [], [], 0
    for key in keys:
        path = store.local_path(key)
        raw = path.read_bytes() if path is not None else store.read_bytes(key)
        p, q, n = _parse_file(raw, key)
        parsed.append(p)
        quarantined.append(q)
        read += n
    return _finish(parsed, quarantined, read, list(keys), self_hosted_deployments, customer_salt)


def _finish(
    parsed: list[pl.DataFrame],
    quarantined: list[pl.DataFrame],
    rows_read: int,
    files: list[str],
    self_hosted_deployments: frozenset[str],
    customer_salt: str | None,
) -> ParseResult:
    frames = [p for p in parsed if p.height]
    # One chunk per column: polars 2.1 panics ("i < self.len()" in binview) evaluating the
    # dedupe's window expressions over string columns concatenated from several reads.
    df = pl.concat(frames, how="vertical", rechunk=True) if frames else None
    if df is not None:
        df, dup_q = _drop_duplicates(df)
        quarantined = [*quarantined, dup_q]
        rows = _normalize(df, self_hosted_deployments, customer_salt)
    else:
        rows = empty(GATEWAY_REQUESTS)
    q = [x for x in quarantined if x.height]
    result = ParseResult(
        rows=rows,
        quarantine=pl.concat(q, how="vertical") if q else empty(QUARANTINE),
        rows_read=rows_read,
        files=files,
    )
    result.check_balance()
    return result


def _parse_file(raw: bytes, source_file: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Rows that passed row checks (with helper columns), quarantined rows, rows read."""
    raw = gunzip_if_compressed(raw, source_file)
    good = _read_whole(raw)
    if good is not None:
        read, malformed = good.height, empty(QUARANTINE)
    else:
        lines = (
            pl.DataFrame({"line": [raw.decode("utf-8", errors="replace")]})
            .select(pl.col("line").str.split("\n"))
            .explode("line")
            .with_row_index("_row_number", offset=1)
            .filter(pl.col("line").str.strip_chars() != "")  # blank lines are not rows
        )
        good, bad = _read_lines(lines)
        read, malformed = lines.height, _malformed_quarantine(bad, source_file)
    df = _with_usage(good.with_columns(pl.lit(source_file).alias("_source_file")))
    valid, rejected = _split(df, _row_problem())
    return valid, pl.concat([malformed, rejected], how="vertical"), read


def _ndjson(body: bytes) -> pl.DataFrame:
    """polars' NDJSON reader with metadata decoded in the same pass when it is an object;
    exports that write metadata as JSON text take a second pass."""
    try:
        return pl.read_ndjson(io.BytesIO(body), schema={**_TEXT_SCHEMA, "metadata": METADATA})
    except pl.exceptions.PolarsError:
        df = pl.read_ndjson(io.BytesIO(body), schema=_TEXT_SCHEMA)
        return df.with_columns(_decode_metadata(df["metadata"]))


def _read_whole(raw: bytes) -> pl.DataFrame | None:
    """The fast path: the whole file in one read, when it parses and has no blank lines
    (so the n-th row is the n-th line). None sends the file down the line-by-line path."""
    body = raw.strip()
    if not body:
        return pl.DataFrame(schema={"_row_number": pl.UInt32, **_TEXT_SCHEMA,
                                    "metadata": METADATA})
    if re.search(rb"\n[ \t\r]*\n", body):
        return None
    try:
        df = _ndjson(body)
    except pl.exceptions.PolarsError:
        return None
    if df.height != body.count(b"\n") + 1:
        return None
    return df.with_row_index("_row_number", offset=1)


def _read_lines(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The slow path, for a file that does not parse whole: good rows and bad lines.

    A vectorized validity check (a JSONPath match fails on malformed JSON) sets the
    malformed lines aside; the rest is read in one go.
    """
    is_object = (
        pl.col("line").str.json_path_match("$").str.starts_with("{").fill_null(False)
    )
    lines = lines.with_columns(is_object.alias("_is_object"))
    good, bad = _bisect(lines.filter("_is_object").drop("_is_object"))
    bad = pl.concat([lines.filter(~pl.col("_is_object")).drop("_is_object"), bad])
    return good, bad.sort("_row_number")


def _bisect(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read valid JSON objects; if polars still refuses some, halve until they are isolated."""
    try:
        body = lines.select(pl.col("line").str.join("\n"))["line"][0].encode()
        df = _ndjson(body)
        if df.height == lines.height:
            return pl.concat([lines.select("_row_number"), df], how="horizontal"), lines.clear()
    except pl.exceptions.PolarsError:
        pass
    if lines.height <= 1:
        return pl.DataFrame(schema={"_row_number": pl.UInt32, **_TEXT_SCHEMA,
                                    "metadata": METADATA}), lines
    mid = lines.height // 2
    left_good, left_bad = _bisect(lines.slice(0, mid))
    right_good, right_bad = _bisect(lines.slice(mid))
    return pl.concat([left_good, right_good]), pl.concat([left_bad, right_bad])


def _malformed_quarantine(bad: pl.DataFrame, source_file: str) -> pl.DataFrame:
    """Lines polars could not read. Their text is not kept (it may hold prompts or keys)."""
    reasons, raws = [], []
    for line in bad["line"]:
        try:
            value = json.loads(line)
            why = ("not a JSON object" if not isinstance(value, dict)
                   else "fields of unexpected JSON types")
        except json.JSONDecodeError as e:
            why = f"malformed JSON: {e.msg} at column {e.colno}"
        reasons.append(why)
        raws.append({"line_chars": len(line)})
    rows = bad["_row_number"].cast(pl.Int64).to_list()
    return conform(
        pl.DataFrame({
            "source": [SOURCE] * len(rows),
            "source_file": [source_file] * len(rows),
            "row_number": rows,
            "reason": [f"line {n}: {r}" for n, r in zip(rows, reasons)],
            "raw": [json.dumps(r) for r in raws],
        }, schema_overrides={"row_number": pl.Int64}),
        QUARANTINE,
    )


def _decode_metadata(meta: pl.Series) -> pl.Series:
    try:
        return meta.str.json_decode(METADATA)
    except pl.exceptions.PolarsError:
        # Some row's metadata is not a JSON object: decode row by row so only that row
        # loses its metadata (its tokens then count as uncached), the rest keep theirs.
        def one(text: str | None) -> dict | None:
            try:
                return pl.Series([text]).str.json_decode(METADATA)[0]
            except pl.exceptions.PolarsError:
                return None

        return pl.Series(meta.name, [one(t) for t in meta], dtype=METADATA)


def _with_usage(df: pl.DataFrame) -> pl.DataFrame:
    """Helper columns: parsed times, token counts, attribution fields from metadata."""
    df = df.rename({"metadata": "_meta"})
    aux = pl.col("_meta").struct.field("additional_usage_values")
    usage = pl.col("_meta").struct.field("usage_object")

    def tokens(*paths: pl.Expr) -> pl.Expr:
        return pl.coalesce([p.cast(pl.Int64, strict=False) for p in paths])

    def cached(u: pl.Expr) -> pl.Expr:
        return u.struct.field("prompt_tokens_details").struct.field("cached_tokens")

    def created(u: pl.Expr) -> pl.Expr:
        return u.struct.field("prompt_tokens_details").struct.field("cache_creation_tokens")

    def reasoning(u: pl.Expr) -> pl.Expr:
        return u.struct.field("completion_tokens_details").struct.field("reasoning_tokens")

    meta = pl.col("_meta").struct.field
    return df.with_columns(
        parse_iso_utc(pl.col("startTime")).alias("_ts_start"),
        parse_iso_utc(pl.col("endTime")).alias("_ts_end"),
        pl.col("prompt_tokens").cast(pl.Int64, strict=False).alias("_prompt"),
        pl.col("completion_tokens").cast(pl.Int64, strict=False).alias("_completion"),
        tokens(aux.struct.field("cache_read_input_tokens"), cached(aux),
               usage.struct.field("cache_read_input_tokens"), cached(usage),
               pl.lit(0)).alias("_cache_read"),
        tokens(aux.struct.field("cache_creation_input_tokens"), created(aux),
               usage.struct.field("cache_creation_input_tokens"), created(usage),
               pl.lit(0)).alias("_cache_write"),
        tokens(reasoning(aux), reasoning(usage), pl.lit(0)).alias("_reasoning"),
        _money(pl.col("spend")).alias("_spend"),
        *[_null_if_blank(meta(f)).alias(f"_m_{f}") for f in
          ("user_api_key_team_id", "user_api_key_user_id", "user_api_key_end_user_id",
           "customer_id", "feature", "status")],
    ).drop("_meta")


def _row_problem() -> pl.Expr:
    """Why a row cannot be used (null when it is fine); the first problem found wins."""
    def non_integer(col: str, helper: str) -> pl.Expr:
        return pl.when(pl.col(col).is_not_null() & pl.col(helper).is_null()).then(
            pl.format("{} '{}' is not an integer", pl.lit(col), pl.col(col)))

    def negative(name: str, helper: str) -> pl.Expr:
        return pl.when(pl.col(helper) < 0).then(
            pl.format("negative {} ({})", pl.lit(name), pl.col(helper)))

    return pl.coalesce(
        pl.when(_null_if_blank(pl.col("request_id")).is_null()).then(pl.lit("missing request_id")),
        pl.when(pl.col("startTime").is_null()).then(pl.lit("missing startTime")),
        pl.when(pl.col("_ts_start").is_null()).then(
            pl.format("unparseable startTime '{}'", pl.col("startTime"))),
        non_integer("prompt_tokens", "_prompt"),
        non_integer("completion_tokens", "_completion"),
        negative("prompt_tokens", "_prompt"),
        negative("completion_tokens", "_completion"),
        negative("cache_read_input_tokens", "_cache_read"),
        negative("cache_creation_input_tokens", "_cache_write"),
        negative("reasoning_tokens", "_reasoning"),
        pl.when(pl.col("_cache_read") + pl.col("_cache_write") > pl.col("_prompt").fill_null(0))
        .then(pl.format("cached tokens ({} read + {} written) exceed prompt_tokens ({})",
                        pl.col("_cache_read"), pl.col("_cache_write"), pl.col("_prompt"))),
        pl.when(pl.col("_reasoning") > pl.col("_completion").fill_null(0)).then(
            pl.format("reasoning_tokens ({}) exceed completion_tokens ({})",
                      pl.col("_reasoning"), pl.col("_completion"))),
        pl.when(pl.col("spend").is_not_null() & pl.col("_spend").is_null()).then(
            pl.format("spend '{}' is not a number", pl.col("spend"))),
    )


def _split(df: pl.DataFrame, reason: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
    tagged = df.with_columns(reason.alias("_reason"))
    bad = tagged.filter(pl.col("_reason").is_not_null())
    quarantined = conform(
        bad.select(
            pl.lit(SOURCE).alias("source"),
            pl.col("_source_file").alias("source_file"),
            pl.col("_row_number").cast(pl.Int64).alias("row_number"),
            pl.col("_reason").alias("reason"),
            pl.struct(RAW_FIELDS).struct.json_encode().alias("raw"),
        ),
        QUARANTINE,
    )
    return tagged.filter(pl.col("_reason").is_null()).drop("_reason"), quarantined


def _drop_duplicates(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first copy of each request_id (file order, then line); quarantine the rest.

    LiteLLM retries its spend-log writes and exports overlap, so copies are expected; they
    must not double-count tokens or cost.
    """
    df = df.with_row_index("_order")
    first = pl.col("_order").min().over("request_id")
    df = df.with_columns(
        pl.col("_source_file").sort_by("_order").first().over("request_id").alias("_first_file"),
        pl.col("_row_number").sort_by("_order").first().over("request_id").alias("_first_line"),
        (pl.col("_order") != first).alias("_is_dup"),
    )
    reason = pl.when(pl.col("_is_dup")).then(pl.format(
        "duplicate request_id '{}' (first seen in {} line {})",
        pl.col("request_id"), pl.col("_first_file"), pl.col("_first_line")))
    good, dup = _split(df, reason)
    return good.drop("_order", "_first_file", "_first_line", "_is_dup"), dup


def _normalize(
    df: pl.DataFrame, self_hosted_deployments: frozenset[str], customer_salt: str | None
) -> pl.DataFrame:
    blank = _null_if_blank
    provider = blank(pl.col("custom_llm_provider"))
    api_host = pl.col("api_base").str.extract(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/:?#]+)", 1)
    deployment = pl.coalesce(blank(pl.col("model_group")), blank(pl.col("model_id")), api_host)
    is_self_hosted = (
        provider.is_in(SELF_HOSTED_PROVIDERS).fill_null(False)
        | (provider.is_in(OPENAI_COMPATIBLE_PROVIDERS).fill_null(False)
           & api_host.str.to_lowercase().str.contains(_PRIVATE_HOST).fill_null(False))
        | deployment.is_in(list(self_hosted_deployments)).fill_null(False)
    )
    tag_feature = pl.col("request_tags").str.extract(r'"feature:([^"]+)"', 1)
    status = pl.coalesce(blank(pl.col("status")), pl.col("_m_status"),
                         # LiteLLM versions before the status column logged successes only.
                         pl.lit("success"))
    out = df.select(
        pl.col("request_id"),
        pl.lit(SOURCE).alias("source"),
        pl.col("_source_file").alias("source_file"),
        pl.col("_ts_start").alias("ts_start"),
        pl.col("_ts_end").alias("ts_end"),
        ((pl.col("_ts_end") - pl.col("_ts_start")).dt.total_microseconds() / 1000)
        .alias("latency_ms"),
        provider.alias("provider"),
        pl.coalesce(blank(pl.col("model_group")), blank(pl.col("model"))).alias("model_requested"),
        blank(pl.col("model")).alias("model_served"),
        deployment.alias("deployment"),
        is_self_hosted.alias("is_self_hosted"),
        # end_user is what the caller sent as `user` in the OpenAI request; LiteLLM copies it
        # into metadata.user_api_key_end_user_id as well.
        pl.coalesce(blank(pl.col("end_user")), pl.col("_m_user_api_key_end_user_id"),
                    pl.col("_m_customer_id"), blank(pl.col("user"))).alias("customer_id"),
        pl.coalesce(blank(pl.col("team_id")), pl.col("_m_user_api_key_team_id")).alias("team_id"),
        blank(pl.col("api_key")).alias("_api_key"),
        pl.coalesce(blank(pl.col("user")), pl.col("_m_user_api_key_user_id")).alias("user_id"),
        pl.coalesce(tag_feature, pl.col("_m_feature"), pl.lit("unknown")).alias("feature"),
        blank(pl.col("request_tags")).alias("tags"),
        status.str.to_lowercase().alias("status"),
        pl.col("cache_hit").str.to_lowercase().is_in(["true", "1"]).alias("gateway_cache_hit"),
        # LiteLLM reports usage the OpenAI way: prompt_tokens counts every input token,
        # cached ones included. For Anthropic, LiteLLM's AnthropicConfig.calculate_usage
        # builds prompt_tokens = input_tokens + cache_creation_input_tokens
        # + cache_read_input_tokens (Anthropic's own input_tokens excludes both), and
        # keeps the two cache counts alongside. So both cache buckets come out of
        # prompt_tokens to leave the uncached input.
        (pl.col("_prompt").fill_null(0) - pl.col("_cache_read") - pl.col("_cache_write"))
        .alias("input_uncached_tokens"),
        pl.col("_cache_read").alias("cache_read_tokens"),
        pl.col("_cache_write").alias("cache_write_tokens"),
        pl.col("_completion").fill_null(0).alias("output_tokens"),
        pl.col("_reasoning").alias("reasoning_tokens"),
        pl.col("_spend").alias("gateway_reported_cost"),
    )
    out = out.with_columns(
        _sha256(pl.col("_api_key"), out["_api_key"]).alias("api_key_hash"),
    ).drop("_api_key")
    if customer_salt is not None:
        out = out.with_columns(
            _sha256(pl.col("customer_id"), out["customer_id"], salt=customer_salt, length=16)
            .alias("customer_id")
        )
    return conform(out, GATEWAY_REQUESTS)


def _sha256(col: pl.Expr, values: pl.Series, *, salt: str = "", length: int = 64) -> pl.Expr:
    """sha256(salt + value) hex, computed once per distinct value (keys and customers are few)."""
    distinct = values.drop_nulls().unique().to_list()
    digests = [hashlib.sha256((salt + v).encode()).hexdigest()[:length] for v in distinct]
    return col.replace_strict(distinct, digests, default=None, return_dtype=pl.String)


def _money(text: pl.Expr) -> pl.Expr:
    """A JSON number's text to Decimal(38, 12) without passing through float.

    Postgres and Python write small floats in exponent form (`2.5e-05`); the exponent is
    applied by moving the decimal point in the text.
    """
    text = text.str.strip_chars()
    pattern = r"^([+-]?)(\d*)\.?(\d*)(?:[eE]([+-]?\d+))?$"
    sign, whole, frac = (text.str.extract(pattern, i) for i in (1, 2, 3))
    exponent = text.str.extract(pattern, 4).cast(pl.Int32).fill_null(0)
    digits = pl.concat_str([whole, frac])
    n = digits.str.len_chars().cast(pl.Int32)
    point = whole.str.len_chars().cast(pl.Int32) + exponent
    shifted = (
        pl.when(point <= 0).then(pl.concat_str([pl.lit("0."), digits.str.zfill(n - point)]))
        .when(point >= n).then(digits.str.reverse().str.zfill(point).str.reverse())
        .otherwise(pl.concat_str([digits.str.slice(0, point), pl.lit("."),
                                  digits.str.slice(point)]))
    )
    is_number = text.str.contains(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    return pl.when(is_number).then(pl.concat_str([sign, shifted])).cast(MONEY, strict=False)


def _null_if_blank(e: pl.Expr) -> pl.Expr:
    """LiteLLM writes '' for "not set" in most text columns."""
    return pl.when(e.str.strip_chars() == "").then(None).otherwise(e)


def _as_bytes(data: bytes | Path) -> bytes:
    return Path(data).read_bytes() if isinstance(data, Path) else data
