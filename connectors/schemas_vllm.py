"""Lake schemas added by the vLLM metrics reader (to be merged into connectors.schemas).

vllm_hourly: one row per self-hosted deployment (vLLM `model_name`) and hour: the tokens
its engines processed and the time they spent in prefill and decode, from vLLM's own
Prometheus counters. These are the allocation weights when present: a deployment-hour's
GPU cost can be split by prefill and decode seconds instead of by token counts alone.
"""

from __future__ import annotations

import polars as pl

from connectors.schemas import TS

VLLM_HOURLY: dict[str, pl.DataType] = {
    "hour_start": TS,
    "deployment": pl.String,  # vLLM's model_name label (the served model name)
    "replicas": pl.Int64,  # engines (label sets) that reported in the hour
    "prompt_tokens": pl.Int64,  # vllm:prompt_tokens_total increase (prefill tokens)
    "generation_tokens": pl.Int64,  # vllm:generation_tokens_total increase
    "requests": pl.Int64,  # vllm:request_success_total increase, all finish reasons
    "prefill_seconds": pl.Float64,  # vllm:request_prefill_time_seconds_sum increase
    "decode_seconds": pl.Float64,  # vllm:request_decode_time_seconds_sum increase
    "counter_resets": pl.Int64,  # counter drops seen (engine restarts), all counters
}

# The counter samples vllm_hourly is computed from, one row per sample.
VLLM_SAMPLES: dict[str, pl.DataType] = {
    "ts": TS,
    "deployment": pl.String,
    "series": pl.String,  # the sample's full label set: one counter per engine
    "metric": pl.String,  # prompt_tokens, generation_tokens, requests, prefill_seconds, ...
    "value": pl.Float64,
    "source_file": pl.String,
}

VLLM_LAKE_TABLES: dict[str, dict[str, pl.DataType]] = {"vllm_hourly": VLLM_HOURLY}
