"""The lake's contracts: one polars schema per normalized table (see DESIGN.md).

Money is Decimal(38, 12), never float; times are UTC microseconds; period ends are
exclusive. Every connector returns frames cast to exactly these schemas, so the lake's
Parquet files and the dbt sources that read them agree on names and types.
"""

from __future__ import annotations

import polars as pl

MONEY = pl.Decimal(38, 12)
QUANTITY = pl.Decimal(38, 12)
TS = pl.Datetime("us", "UTC")

BILLING_LINE_ITEMS: dict[str, pl.DataType] = {
    "source": pl.String,  # aws_cur, aws_cur_legacy, focus, gcp_billing
    "source_file": pl.String,
    "source_line_id": pl.String,
    "provider": pl.String,  # who hosts/sells: AWS, Google Cloud, Microsoft, OpenAI...
    "publisher": pl.String,
    "invoice_issuer": pl.String,
    "billing_account_id": pl.String,
    "sub_account_id": pl.String,
    "billing_period_start": TS,
    "charge_period_start": TS,
    "charge_period_end": TS,
    "charge_category": pl.String,  # Usage, Purchase, Tax, Credit, Adjustment
    "charge_class": pl.String,  # null or Correction
    "charge_frequency": pl.String,  # One-Time, Recurring, Usage-Based
    "charge_type": pl.String,  # the source's own line type (CUR line_item_type)
    "pricing_category": pl.String,  # Standard, Committed, Dynamic, Other
    "service_name": pl.String,
    "service_category": pl.String,
    "region_id": pl.String,
    "resource_id": pl.String,
    "resource_name": pl.String,
    "resource_type": pl.String,
    "instance_type": pl.String,
    "sku_id": pl.String,
    "usage_type": pl.String,
    "consumed_quantity": QUANTITY,
    "consumed_unit": pl.String,
    "pricing_quantity": QUANTITY,
    "pricing_unit": pl.String,
    "commitment_discount_id": pl.String,
    "commitment_discount_status": pl.String,  # Used, Unused
    "billed_cost": MONEY,
    "effective_cost": MONEY,
    "list_cost": MONEY,
    "contracted_cost": MONEY,
    "billing_currency": pl.String,
    "tags": pl.String,  # JSON object text
    "export_version": pl.String,
}

# gpu_samples' text is labels repeated over millions of rows (a day of 1,000 GPUs: 34.6 M
# samples, a few thousand distinct values). In memory it is categorical: the Parquet
# writer then gets each column's dictionary instead of hashing every row's text (a day's
# write ~14 -> ~8 CPU s). In the lake it is a plain (dictionary-encoded) string column.
LABEL = pl.Categorical()

GPU_SAMPLES: dict[str, pl.DataType] = {
    "ts": TS,
    "hostname": LABEL,
    "gpu_uuid": LABEL,
    "gpu_index": pl.Int32,
    "gpu_model": LABEL,
    "mig_profile": LABEL,
    "mig_instance_id": LABEL,
    "k8s_namespace": LABEL,
    "k8s_pod": LABEL,
    "k8s_container": LABEL,
    "source": LABEL,  # dcgm, nvidia_smi, vllm
    "metric": LABEL,  # canonical, see connectors.dcgm.METRICS
    "value": pl.Float64,  # physical measurement, not money
    "unit": LABEL,
    "source_file": LABEL,
}

# Hourly downsample of gpu_samples, one row per GPU (or MIG instance) and hour.
GPU_HOURLY: dict[str, pl.DataType] = {
    "hour_start": TS,
    "hostname": pl.String,
    "gpu_uuid": pl.String,
    "gpu_index": pl.Int32,
    "gpu_model": pl.String,
    "mig_profile": pl.String,
    "mig_instance_id": pl.String,
    "gpu_fraction": pl.Float64,  # 1.0 for a whole GPU, 1/7 for a 1g MIG slice, ...
    "k8s_namespace": pl.String,
    "k8s_pod": pl.String,
    "samples": pl.Int64,
    "gpu_util_pct_avg": pl.Float64,
    "busy_fraction": pl.Float64,  # share of the hour the GPU was doing work, 0..1
    "power_w_avg": pl.Float64,
    "energy_wh": pl.Float64,
    "fb_used_mib_avg": pl.Float64,
}

# Minute downsample of gpu_samples, one row per GPU (or MIG instance) and minute: the
# columns of GPU_HOURLY, each over the minute (connectors.dcgm.downsample_minutely).
GPU_MINUTELY: dict[str, pl.DataType] = {
    "minute_start": TS,
    **{name: dtype for name, dtype in GPU_HOURLY.items() if name != "hour_start"},
}

GATEWAY_REQUESTS: dict[str, pl.DataType] = {
    "request_id": pl.String,
    "source": pl.String,  # litellm, openai_usage, anthropic_usage, otel_genai, generic
    "source_file": pl.String,
    "ts_start": TS,
    "ts_end": TS,
    "latency_ms": pl.Float64,
    "provider": pl.String,  # openai, anthropic, hosted_vllm, ...
    "model_requested": pl.String,
    "model_served": pl.String,
    "deployment": pl.String,
    "is_self_hosted": pl.Boolean,
    "customer_id": pl.String,
    "team_id": pl.String,
    "project_id": pl.String,
    "api_key_hash": pl.String,  # sha256 of the key; the key itself is never stored
    "user_id": pl.String,
    "feature": pl.String,
    "tags": pl.String,  # JSON list text
    "status": pl.String,  # success, failure
    "gateway_cache_hit": pl.Boolean,
    # Requests the row stands for: 1 for a logged request, N for a usage bucket (OpenAI's
    # num_model_requests), 0 for usage reported without a count (Anthropic's usage report).
    # Older lake files lack it; readers take a missing count as 1.
    "request_count": pl.Int64,
    "input_uncached_tokens": pl.Int64,
    "cache_read_tokens": pl.Int64,
    "cache_write_tokens": pl.Int64,
    "output_tokens": pl.Int64,  # reasoning included
    "reasoning_tokens": pl.Int64,  # subset of output_tokens
    "gateway_reported_cost": MONEY,  # what the gateway itself computed (LiteLLM spend)
}

FLEET_INVENTORY: dict[str, pl.DataType] = {
    "hostname": pl.String,
    "provider": pl.String,
    "resource_id": pl.String,
    "deployment": pl.String,
    "valid_from": TS,
    "valid_to": TS,  # exclusive; null means still valid
}

# vLLM's own counters per self-hosted deployment (model_name) and hour: the allocation
# weights when present (prefill and decode seconds instead of token counts alone).
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

# USD per unit of a currency from rate_date on (the meaning of the dbt seed fx_rates.csv:
# date, currency, usd_per_unit). The hive partition `date` equals rate_date, so a reader
# of the lake glob gets the seed's own column names.
FX_RATES: dict[str, pl.DataType] = {
    "rate_date": pl.Date,
    "currency": pl.String,
    "usd_per_unit": MONEY,
    "source": pl.String,  # `seed` or the landing key of the fx/*.csv that set the rate
}

# One row per rejected input row; the raw row is kept as JSON text so nothing is lost.
QUARANTINE: dict[str, pl.DataType] = {
    "source": pl.String,
    "source_file": pl.String,
    "row_number": pl.Int64,  # 1-based data row (line) in the source file
    "reason": pl.String,
    "raw": pl.String,
}

# GPU list prices from the Cloud Billing Catalog (connectors.gcp_catalog), one row per SKU x
# service region x pricing tier.
GPU_SKU_PRICES: dict[str, pl.DataType] = {
    "sku_id": pl.String,
    "description": pl.String,
    "service_id": pl.String,
    "resource_group": pl.String,
    "usage_type": pl.String,
    "gpu_model": pl.String,
    "region": pl.String,
    "usage_unit": pl.String,
    "start_usage_amount": QUANTITY,
    "unit_price": MONEY,
    "price_per_hour": MONEY,
    "currency": pl.String,
    "effective_time": TS,
}
# The lake table: GPU_SKU_PRICES and when the catalog was read.
GPU_LIST_PRICES: dict[str, pl.DataType] = {**GPU_SKU_PRICES, "pulled_at": TS}


LAKE_TABLES: dict[str, dict[str, pl.DataType]] = {
    "billing_line_items": BILLING_LINE_ITEMS,
    "gpu_samples": GPU_SAMPLES,
    "gpu_hourly": GPU_HOURLY,
    "gpu_minutely": GPU_MINUTELY,
    "gateway_requests": GATEWAY_REQUESTS,
    "fleet_inventory": FLEET_INVENTORY,
    "vllm_hourly": VLLM_HOURLY,
    "fx_rates": FX_RATES,
    "gpu_list_prices": GPU_LIST_PRICES,
}


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with exactly this schema."""
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast to the schema, adding missing columns as nulls, in schema order.

    Raises ValueError naming the columns it was given that the schema does not know, so a
    connector that misspells a column fails in its own tests rather than losing data.
    """
    unknown = [c for c in df.columns if c not in schema]
    if unknown:
        raise ValueError(f"columns not in the normalized schema: {unknown}")
    return df.select(
        [
            (pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )
