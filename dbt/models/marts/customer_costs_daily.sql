{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- What each customer costs per day, fully loaded, in USD. Idle GPU time is its own customer
-- (`__idle__`); unattributed cost is not here (see the reconciliation).

with

daily as (

    select
        usage_date,
        customer_id,
        sum(requests) as requests,
        sum(failed_requests) as failed_requests,
        sum(unpriced_requests) as unpriced_requests,
        sum(input_uncached_tokens + cache_read_tokens + cache_write_tokens + output_tokens) as total_tokens,
        sum(total_cost) as cost
    from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
    group by usage_date, customer_id

)

select
    cast(usage_date as date) as usage_date,
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(requests as bigint) as requests,
    cast(failed_requests as bigint) as failed_requests,
    cast(unpriced_requests as bigint) as unpriced_requests,
    cast(total_tokens as bigint) as total_tokens,
    {{ money('cost') }} as cost,
    {{ cost_per('cost', 'total_tokens', 1000) }} as cost_per_1k_tokens,
    -- No price plans are configured yet: revenue and margin stay empty rather than zero.
    {{ money('null') }} as revenue,
    {{ money('null') }} as gross_margin
from daily
