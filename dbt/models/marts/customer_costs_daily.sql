{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- What each customer costs per day, fully loaded, in USD, and what it paid under its price
-- plan. Idle GPU time is its own customer (`__idle__`); unattributed cost is not here (see
-- the reconciliation).

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

),

revenue as (

    select * from {{ ref('int_customer_revenue_daily') }}

),

joined as (

    select
        daily.*,
        revenue.tier,
        revenue.pricing_model,
        revenue.revenue
    from daily
    left join revenue
        on daily.usage_date = revenue.usage_date
        and daily.customer_id = revenue.customer_id

)

select
    cast(usage_date as date) as usage_date,
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(tier as {{ dbt.type_string() }}) as tier,
    cast(pricing_model as {{ dbt.type_string() }}) as pricing_model,
    cast(requests as bigint) as requests,
    cast(failed_requests as bigint) as failed_requests,
    cast(unpriced_requests as bigint) as unpriced_requests,
    cast(total_tokens as bigint) as total_tokens,
    {{ money('cost') }} as cost,
    {{ cost_per('cost', 'total_tokens', 1000) }} as cost_per_1k_tokens,
    {{ money('revenue') }} as revenue,
    {{ money('revenue - cost') }} as gross_margin,
    {{ share_of('revenue - cost', 'revenue') }} as gross_margin_pct
from joined
