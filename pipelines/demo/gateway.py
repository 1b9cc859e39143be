"""The demo company's LiteLLM proxy spend logs, one gzip JSONL file per UTC day.

`gateway_logs/litellm/YYYY/MM/DD/spend_logs-0.jsonl.gz`, rows shaped like LiteLLM's
`LiteLLM_SpendLogs` table (what `SELECT row_to_json(t) FROM "LiteLLM_SpendLogs" t` exports):
`api_key` holds LiteLLM's hashed token (sha256 of the virtual key), `messages` and
`response` are `{}` (LiteLLM's default when prompts are not stored), usage details sit in
`metadata.additional_usage_values`, and Anthropic's prompt_tokens include the cache read
and cache write tokens, as LiteLLM reports them.

`expected_requests_per_minute` is also what the telemetry writer uses to drive GPU load, so
busy GPU time and served requests rise and fall together.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.demo.world import World

# List prices per 1M tokens: input, cache read, cache write, output (USD).
PRICES: dict[str, tuple[float, float, float, float]] = {
    "gpt-4o": (2.50, 1.25, 0.0, 10.00),
    "gpt-4o-mini": (0.15, 0.075, 0.0, 0.60),
    "claude-sonnet-4-5": (3.00, 0.30, 3.75, 15.00),
}
# What the provider answers with as `model` for the alias the caller asked for.
SERVED_MODEL = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
}
API_BASE = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1/messages",
}
# Token sizes are lognormal, fitted to the Azure LLM inference conversation trace (Patel et
# al., Splitwise): median 1,020 context / 129 generated tokens, log-sd 0.99 / 0.86. Each
# feature scales the medians: summaries read long documents, reranking writes little.
FEATURE_SHAPE = {
    "chat-assistant": (1.0, 1.0),
    "doc-summarize": (3.5, 1.4),
    "code-review": (2.2, 0.6),
    "search-rerank": (0.6, 0.15),
}
FAILURE_RATE = 0.003


def volume_factor(world: World, day: date) -> float:
    """The day's traffic relative to the base customer mix (spikes and new customers add)."""
    base = sum(c.weight for c in world.customers if c.first_day == 0)
    return sum(w for _, w in world.customer_weights(day)) / base


def expected_requests_per_minute(world: World, day: date) -> np.ndarray:
    """Expected company-wide requests in each of the day's 1,440 minutes."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    shape = np.array([world.traffic_multiplier(start + timedelta(minutes=m)) for m in range(1440)])
    return world.requests_per_day / 1440 * shape * volume_factor(world, day)


def deployment_share(world: World) -> dict[str, float]:
    """Share of all requests each self-hosted deployment serves."""
    total = sum(d.weight for d in world.deployments)
    return {d.name: world.self_hosted_share * d.weight / total for d in world.deployments}


def litellm_hashed_token(key: str) -> str:
    """LiteLLM stores virtual keys as the sha256 hex of the key, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


def write_gateway_logs(world: World, landing: Path) -> dict:
    """Write one spend-log file per day; returns {"files", "requests", "per_day"}."""
    files, per_day = [], {}
    for day in world.day_list:
        df = _day_requests(world, day)
        path = (Path(landing) / "gateway_logs" / "litellm" / f"{day:%Y}" / f"{day:%m}"
                / f"{day:%d}" / "spend_logs-0.jsonl.gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        # LiteLLM keeps `{}` JSON objects for unstored bodies; polars writes the placeholder
        # as a string, so it is turned back into an object in the text.
        text = df.write_ndjson().replace('"messages":"{}"', '"messages":{}')
        path.write_bytes(gzip.compress(text.replace('"response":"{}"', '"response":{}').encode(),
                                       compresslevel=5))
        files.append(path.relative_to(landing).as_posix())
        per_day[day.isoformat()] = df.height
    return {"files": files, "requests": sum(per_day.values()), "per_day": per_day}


def _day_requests(world: World, day: date) -> pl.DataFrame:
    """One day of spend-log rows, in startTime order, as polars writes them to JSONL."""
    rng = np.random.default_rng([world.seed, world.day_index(day), 7])
    per_minute = rng.poisson(expected_requests_per_minute(world, day))
    n = int(per_minute.sum())
    start_s = np.sort(np.repeat(np.arange(1440) * 60.0, per_minute) + rng.uniform(0, 60, n))

    customers = world.customer_weights(day)
    customer = _pick(rng, [c.customer_id for c, _ in customers], [w for _, w in customers], n)
    feature = _pick(rng, list(world.features), list(world.features.values()), n)
    route = _route(world, rng, n)
    usage = _usage(rng, route["provider"], feature)
    failed = rng.random(n) < FAILURE_RATE
    for bucket in ("prompt", "completion", "cache_read", "cache_write"):
        usage[bucket] = np.where(failed, 0, usage[bucket])  # failed calls bill nothing
    spend = _list_price(route["model_group"], usage)

    latency = np.where(route["self_hosted"], 0.15 + usage["completion"] * 0.018,
                       0.35 + usage["completion"] * 0.012) * rng.uniform(0.8, 1.3, n)
    ttft = np.minimum(latency, np.where(route["self_hosted"], 0.08, 0.3) + usage["prompt"] * 2e-5)
    team = np.where(feature == "search-rerank", "search", "platform")
    hashed = {t: litellm_hashed_token(k) for t, k in world.api_keys.items()}
    request_id = _request_ids(rng, n)
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)

    def ts(seconds: np.ndarray) -> pl.Series:
        offset = pl.Series((seconds * 1e6).astype(np.int64)).cast(pl.Duration("us"))
        return pl.select(pl.lit(day_start) + pl.lit(offset)).to_series().dt.strftime(
            "%Y-%m-%dT%H:%M:%S%.3fZ")

    group = pl.Series(route["model_group"], dtype=pl.String)
    is_anthropic = pl.Series(route["provider"] == "anthropic")
    df = pl.DataFrame({
        "request_id": request_id,
        "call_type": "acompletion",
        "api_key": np.where(team == "search", hashed.get("search", ""), hashed.get("platform", "")),
        "spend": spend,
        "total_tokens": usage["prompt"] + usage["completion"],
        "prompt_tokens": usage["prompt"],
        "completion_tokens": usage["completion"],
        "startTime": ts(start_s),
        "endTime": ts(start_s + latency),
        "completionStartTime": ts(start_s + ttft),
        "model": route["model"],
        # LiteLLM's model_id is a hash of the deployment's litellm_params.
        "model_id": group.replace_strict({g: hashlib.sha256(g.encode()).hexdigest()
                                          for g in np.unique(route["model_group"])}),
        "model_group": group,
        "custom_llm_provider": route["provider"],
        "api_base": route["api_base"],
        "user": "",
        "end_user": customer,
        "team_id": team,
        "cache_hit": "False",
        "cache_key": "Cache OFF",
        "requester_ip_address": "",
        "session_id": request_id,
        "status": np.where(failed, "failure", "success"),
        "messages": "{}",
        "response": "{}",
    })
    return df.with_columns(
        pl.concat_list(pl.format("feature:{}", pl.Series(feature, dtype=pl.String)),
                       pl.lit("env:prod")).alias("request_tags"),
        pl.struct(
            pl.col("api_key").alias("user_api_key"),
            pl.col("team_id").alias("user_api_key_team_id"),
            pl.col("end_user").alias("user_api_key_end_user_id"),
            pl.col("status"),
            pl.struct(
                pl.struct(pl.Series("cached_tokens", usage["cache_read"]))
                .alias("prompt_tokens_details"),
                pl.struct(pl.lit(0).alias("reasoning_tokens")).alias("completion_tokens_details"),
                # LiteLLM adds Anthropic's own cache counters next to the OpenAI-style details.
                pl.when(is_anthropic).then(pl.Series(usage["cache_read"]))
                .alias("cache_read_input_tokens"),
                pl.when(is_anthropic).then(pl.Series(usage["cache_write"]))
                .alias("cache_creation_input_tokens"),
            ).alias("additional_usage_values"),
        ).alias("metadata"),
    )


def _pick(rng: np.random.Generator, names: list[str], weights: list[float], n: int) -> np.ndarray:
    p = np.array(weights, dtype=float)
    return np.array(names)[rng.choice(len(names), n, p=p / p.sum())]


def _route(world: World, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Which deployment or hosted API serves each request, and what LiteLLM logs about it."""
    deps, hosted = world.deployments, world.hosted_models
    self_hosted = rng.random(n) < world.self_hosted_share
    d = rng.choice(len(deps), n, p=np.array([x.weight for x in deps]) / sum(x.weight for x in deps))
    h = rng.choice(len(hosted), n,
                   p=np.array([x.weight for x in hosted]) / sum(x.weight for x in hosted))

    def either(self_value: list[str], hosted_value: list[str]) -> np.ndarray:
        return np.where(self_hosted, np.array(self_value)[d], np.array(hosted_value)[h])

    return {
        "self_hosted": self_hosted,
        "model_group": either([x.name for x in deps], [x.model for x in hosted]),
        "model": either([x.model for x in deps],
                        [SERVED_MODEL.get(x.model, x.model) for x in hosted]),
        "provider": either(["hosted_vllm"] * len(deps), [x.provider for x in hosted]),
        "api_base": either([x.api_base for x in deps],
                           [API_BASE.get(x.provider, "") for x in hosted]),
    }


def _usage(rng: np.random.Generator, provider: np.ndarray, feature: np.ndarray
           ) -> dict[str, np.ndarray]:
    """Token counts as LiteLLM logs them: prompt includes cache reads and writes."""
    n = len(provider)
    p_mult = _lookup(feature, {f: m[0] for f, m in FEATURE_SHAPE.items()}, 1.0)
    c_mult = _lookup(feature, {f: m[1] for f, m in FEATURE_SHAPE.items()}, 1.0)
    prompt = np.clip(rng.lognormal(np.log(1020 * p_mult), 0.99), 20, 120_000).astype(np.int64)
    completion = np.clip(rng.lognormal(np.log(129 * c_mult), 0.86), 1, 8_000).astype(np.int64)
    u = rng.random(n)
    openai, anthropic = provider == "openai", provider == "anthropic"
    # OpenAI caches prompts of 1,024+ tokens, in 128-token steps.
    openai_read = np.where(openai & (prompt >= 1024) & (u < 0.4),
                           prompt * rng.uniform(0.3, 0.9, n) // 128 * 128, 0)
    anthropic_read = np.where(anthropic & (u < 0.35), prompt * rng.uniform(0.5, 0.9, n), 0)
    anthropic_write = np.where(anthropic & (u >= 0.35) & (u < 0.5),
                               prompt * rng.uniform(0.3, 0.7, n), 0)
    return {
        "prompt": prompt,
        "completion": completion,
        "cache_read": (openai_read + anthropic_read).astype(np.int64),
        "cache_write": anthropic_write.astype(np.int64),
    }


def _list_price(model_group: np.ndarray, usage: dict[str, np.ndarray]) -> np.ndarray:
    """What LiteLLM's cost map gives: each bucket at its list price; self-hosted costs 0."""
    def price(i: int) -> np.ndarray:
        return _lookup(model_group, {m: p[i] for m, p in PRICES.items()}, 0.0)

    uncached = usage["prompt"] - usage["cache_read"] - usage["cache_write"]
    cost = (uncached * price(0) + usage["cache_read"] * price(1)
            + usage["cache_write"] * price(2) + usage["completion"] * price(3)) / 1e6
    return np.round(cost, 12)


def _lookup(keys: np.ndarray, table: dict[str, float], default: float) -> np.ndarray:
    return (pl.Series(keys, dtype=pl.String)
            .replace_strict(table, default=default, return_dtype=pl.Float64).to_numpy())


def _request_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """`chatcmpl-<uuid>` ids, reproducible from the seed."""
    hexed = pl.Series(np.frombuffer(rng.bytes(16 * n).hex().encode(), dtype="S32").astype(str),
                      dtype=pl.String)
    return pl.select(pl.format(
        "chatcmpl-{}-{}-{}-{}-{}",
        *(pl.lit(hexed).str.slice(a, b) for a, b in ((0, 8), (8, 4), (12, 4), (16, 4), (20, 12))),
    )).to_series()
