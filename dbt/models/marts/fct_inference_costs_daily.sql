{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- fct_inference_costs_hourly summed over the hours of each UTC day, at the same leaf:
-- provider x model x deployment x customer x feature x line type, in USD. The grain a
-- finance dashboard and the daily anomaly detector read (a 24th of the rows), built for the
-- run window like the hourly fact it sums, so the two always hold the same days.

with

daily as (

    select
        usage_date,
        provider,
        model,
        deployment,
        customer_id,
        feature,
        line_type,
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
        sum(total_cost) as total_cost,
        sum(busy_output_cost) as busy_output_cost,
        sum(cache_savings) as cache_savings,
        sum(energy_wh) as energy_wh,
        sum(co2e_g) as co2e_g
    from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
    group by usage_date, provider, model, deployment, customer_id, feature, line_type

)

select
    cast(usage_date as date) as usage_date,
    cast(provider as {{ dbt.type_string() }}) as provider,
    cast(model as {{ dbt.type_string() }}) as model,
    cast(deployment as {{ dbt.type_string() }}) as deployment,
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(feature as {{ dbt.type_string() }}) as feature,
    cast(line_type as {{ dbt.type_string() }}) as line_type,
    cast(requests as bigint) as requests,
    cast(failed_requests as bigint) as failed_requests,
    cast(unpriced_requests as bigint) as unpriced_requests,
    cast(input_uncached_tokens as bigint) as input_uncached_tokens,
    cast(cache_read_tokens as bigint) as cache_read_tokens,
    cast(cache_write_tokens as bigint) as cache_write_tokens,
    cast(output_tokens as bigint) as output_tokens,
    cast(reasoning_tokens as bigint) as reasoning_tokens,
    {{ money('gpu_busy_cost') }} as gpu_busy_cost,
    {{ money('gpu_idle_cost') }} as gpu_idle_cost,
    {{ money('shared_cost') }} as shared_cost,
    {{ money('api_cost') }} as api_cost,
    {{ money('true_up') }} as true_up,
    {{ money('total_cost') }} as total_cost,
    {{ money('busy_output_cost') }} as busy_output_cost,
    {{ money('cache_savings') }} as cache_savings,
    cast(energy_wh as decimal(38, 6)) as energy_wh,
    cast(co2e_g as decimal(38, 6)) as co2e_g
from daily
