{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- What prompt caching saved per day, provider, model, feature and customer, in USD.
-- Hosted APIs: cache reads at the input price they avoided, less the premium paid for
-- cache writes (list prices). Self-hosted: the GPU work a cached prefix did not need
-- ((w_input - w_cache_read) x cache reads), at what the deployment-hour's busy GPU time
-- cost per unit of work.

with

lines as (

    select * from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
        and line_type in ('request', 'api')

),

daily as (

    select
        usage_date,
        provider,
        model,
        feature,
        customer_id,
        sum(requests) as requests,
        sum(input_uncached_tokens) as input_uncached_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(total_cost) as cost,
        sum(cache_savings) as cache_savings
    from lines
    group by usage_date, provider, model, feature, customer_id

)

select
    cast(usage_date as date) as usage_date,
    cast(provider as {{ dbt.type_string() }}) as provider,
    cast(model as {{ dbt.type_string() }}) as model,
    cast(feature as {{ dbt.type_string() }}) as feature,
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(requests as bigint) as requests,
    cast(input_uncached_tokens as bigint) as input_uncached_tokens,
    cast(cache_read_tokens as bigint) as cache_read_tokens,
    cast(cache_write_tokens as bigint) as cache_write_tokens,
    {{ share_of('cache_read_tokens', 'input_uncached_tokens + cache_read_tokens + cache_write_tokens') }} as cache_hit_rate,
    {{ money('cost') }} as cost,
    {{ money('cache_savings') }} as cache_savings,
    {{ money('cost + cache_savings') }} as cost_without_cache,
    {{ share_of('cache_savings', 'cost + cache_savings') }} as savings_share
from daily
