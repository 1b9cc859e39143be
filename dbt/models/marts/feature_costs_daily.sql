{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- What each product feature costs per day and model, fully loaded, in USD. Idle GPU time is
-- its own feature (`__idle__`); unattributed cost is not here (see the reconciliation).

with

daily as (

    select
        usage_date,
        feature,
        model,
        sum(requests) as requests,
        sum(failed_requests) as failed_requests,
        sum(unpriced_requests) as unpriced_requests,
        sum(input_uncached_tokens + cache_read_tokens + cache_write_tokens + output_tokens) as total_tokens,
        sum(total_cost) as cost
    from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
    group by usage_date, feature, model

)

select
    cast(usage_date as date) as usage_date,
    cast(feature as {{ dbt.type_string() }}) as feature,
    cast(model as {{ dbt.type_string() }}) as model,
    cast(requests as bigint) as requests,
    cast(failed_requests as bigint) as failed_requests,
    cast(unpriced_requests as bigint) as unpriced_requests,
    cast(total_tokens as bigint) as total_tokens,
    {{ money('cost') }} as cost,
    {{ cost_per('cost', 'requests') }} as cost_per_request,
    {{ cost_per('cost', 'total_tokens', 1000) }} as cost_per_1k_tokens,
    {{ share_of('cost', 'sum(cost) over (partition by usage_date)') }} as share_of_total
from daily
