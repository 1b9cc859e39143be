{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- Unit cost of tokens per day, provider, model and deployment: busy-only (what the work
-- itself cost) and fully loaded (idle GPU time and shared platform cost included).

with

daily as (

    select
        usage_date,
        provider,
        model,
        deployment,
        sum(requests) as requests,
        sum(failed_requests) as failed_requests,
        sum(unpriced_requests) as unpriced_requests,
        sum(input_uncached_tokens) as input_uncached_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(output_tokens) as output_tokens,
        sum(reasoning_tokens) as reasoning_tokens,
        sum(gpu_busy_cost) as gpu_busy_cost,
        sum(gpu_idle_cost) as gpu_idle_cost,
        sum(shared_cost) as shared_cost,
        sum(api_cost) as api_cost,
        sum(true_up) as true_up,
        sum(gpu_busy_cost + api_cost + true_up) as busy_cost,
        sum(total_cost) as fully_loaded_cost,
        sum(busy_output_cost) as busy_output_cost,
        sum(energy_wh) as energy_wh,
        sum(co2e_g) as co2e_g
    from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
    group by usage_date, provider, model, deployment

),

with_totals as (

    select
        *,
        input_uncached_tokens + cache_read_tokens + cache_write_tokens as input_tokens,
        input_uncached_tokens + cache_read_tokens + cache_write_tokens + output_tokens as total_tokens,
        -- The fully loaded cost splits between input and output as the busy cost does
        -- (token weights for GPUs, list prices for APIs, the true-up pro rata); idle and
        -- shared follow that split.
        {{ share_of('busy_output_cost', 'gpu_busy_cost + api_cost') }} as output_cost_share
    from daily

)

select
    cast(usage_date as date) as usage_date,
    cast(provider as {{ dbt.type_string() }}) as provider,
    cast(model as {{ dbt.type_string() }}) as model,
    cast(deployment as {{ dbt.type_string() }}) as deployment,
    cast(requests as bigint) as requests,
    cast(failed_requests as bigint) as failed_requests,
    cast(unpriced_requests as bigint) as unpriced_requests,
    cast(input_uncached_tokens as bigint) as input_uncached_tokens,
    cast(cache_read_tokens as bigint) as cache_read_tokens,
    cast(cache_write_tokens as bigint) as cache_write_tokens,
    cast(output_tokens as bigint) as output_tokens,
    cast(reasoning_tokens as bigint) as reasoning_tokens,
    cast(total_tokens as bigint) as total_tokens,
    {{ money('gpu_busy_cost') }} as gpu_busy_cost,
    {{ money('api_cost') }} as api_cost,
    {{ money('true_up') }} as true_up,
    {{ money('busy_cost') }} as busy_cost,
    {{ money('gpu_idle_cost') }} as idle_cost,
    {{ money('shared_cost') }} as shared_cost,
    {{ money('fully_loaded_cost') }} as fully_loaded_cost,
    {{ cost_per('fully_loaded_cost * (1 - output_cost_share)', 'input_tokens', 1000000) }} as cost_per_1m_input_tokens,
    {{ cost_per('fully_loaded_cost * output_cost_share', 'output_tokens', 1000000) }} as cost_per_1m_output_tokens,
    {{ cost_per('fully_loaded_cost', 'total_tokens', 1000000) }} as cost_per_1m_tokens,
    {{ cost_per('busy_cost * (1 - output_cost_share)', 'input_tokens', 1000000) }} as busy_only_cost_per_1m_input_tokens,
    {{ cost_per('busy_cost * output_cost_share', 'output_tokens', 1000000) }} as busy_only_cost_per_1m_output_tokens,
    {{ cost_per('busy_cost', 'total_tokens', 1000000) }} as busy_only_cost_per_1m_tokens,
    -- Share of the GPU cost that was doing work (null for hosted APIs: no GPUs of ours).
    {{ share_of('gpu_busy_cost', 'gpu_busy_cost + gpu_idle_cost') }} as gpu_utilization,
    -- Share of the fully loaded cost that paid for idle GPUs.
    {{ share_of('gpu_idle_cost', 'fully_loaded_cost') }} as idle_share,
    cast(energy_wh as decimal(38, 6)) as energy_wh,
    case when total_tokens > 0 then cast(energy_wh as double) * 1000 / total_tokens end as wh_per_1k_tokens,
    cast(co2e_g as decimal(38, 6)) as co2e_g,
    case when total_tokens > 0 then cast(co2e_g as double) * 1000 / total_tokens end as gco2e_per_1k_tokens
from with_totals
