{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- Self-hosting against its nearest hosted alternative, per day, cloud provider, model and
-- deployment, in USD: the day's own tokens priced at the hosted model's list price
-- (hosted_equivalents names which one) next to what serving them ourselves cost, and the
-- GPU utilization at which the two are equal. At utilization u, the GPU spend needed for
-- the same work is busy GPU cost / u, and shared cost grows with GPU spend at the day's
-- ratio, so self-hosting costs busy x (1 + shared / GPU cost) / u: it breaks even at
-- u = busy x (1 + shared / GPU cost) / hosted cost. Above 1, no utilization makes it cheaper.

with

self_hosted as (

    select
        usage_date,
        provider,
        model,
        deployment,
        sum(requests) as requests,
        sum(input_uncached_tokens) as input_uncached_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(output_tokens) as output_tokens,
        sum(gpu_busy_cost) as gpu_busy_cost,
        sum(gpu_idle_cost) as gpu_idle_cost,
        sum(shared_cost) as shared_cost,
        sum(total_cost) as self_hosted_cost
    from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
        and line_type in ('request', 'idle')
    group by usage_date, provider, model, deployment

),

equivalents as (

    select * from {{ ref('hosted_equivalents') }}

),

prices as (

    select * from {{ ref('api_prices') }}
    where service_tier = 'standard'

),

-- The hosted model's price on the day (the latest effective one).
priced as (

    select
        self_hosted.*,
        equivalents.hosted_provider,
        equivalents.hosted_model,
        prices.usd_per_mtok_input,
        coalesce(prices.usd_per_mtok_cache_read, prices.usd_per_mtok_input) as usd_per_mtok_cache_read,
        coalesce(prices.usd_per_mtok_cache_write, prices.usd_per_mtok_input) as usd_per_mtok_cache_write,
        prices.usd_per_mtok_output,
        row_number() over (
            partition by self_hosted.usage_date, self_hosted.provider, self_hosted.model, self_hosted.deployment
            order by prices.effective_from desc
        ) as price_rank
    from self_hosted
    left join equivalents on self_hosted.model = equivalents.self_hosted_model
    left join prices
        on equivalents.hosted_provider = prices.provider
        and equivalents.hosted_model = prices.model
        and prices.effective_from <= self_hosted.usage_date
        and (prices.effective_to is null or self_hosted.usage_date < prices.effective_to)

),

compared as (

    select
        *,
        input_uncached_tokens + cache_read_tokens + cache_write_tokens + output_tokens as total_tokens,
        {{ token_cost('input_uncached_tokens', 'usd_per_mtok_input') }}
            + {{ token_cost('cache_read_tokens', 'usd_per_mtok_cache_read') }}
            + {{ token_cost('cache_write_tokens', 'usd_per_mtok_cache_write') }}
            + {{ token_cost('output_tokens', 'usd_per_mtok_output') }} as hosted_cost
    from priced
    where price_rank = 1

)

select
    cast(usage_date as date) as usage_date,
    cast(provider as {{ dbt.type_string() }}) as provider,
    cast(model as {{ dbt.type_string() }}) as model,
    cast(deployment as {{ dbt.type_string() }}) as deployment,
    cast(hosted_provider as {{ dbt.type_string() }}) as hosted_provider,
    cast(hosted_model as {{ dbt.type_string() }}) as hosted_model,
    cast(requests as bigint) as requests,
    cast(total_tokens as bigint) as total_tokens,
    {{ money('self_hosted_cost') }} as self_hosted_cost,
    {{ money('hosted_cost') }} as hosted_cost,
    {{ money('hosted_cost - self_hosted_cost') }} as self_hosting_savings,
    {{ cost_per('self_hosted_cost', 'total_tokens', 1000000) }} as self_hosted_cost_per_1m_tokens,
    {{ cost_per('gpu_busy_cost', 'total_tokens', 1000000) }} as busy_only_cost_per_1m_tokens,
    {{ cost_per('hosted_cost', 'total_tokens', 1000000) }} as hosted_cost_per_1m_tokens,
    {{ share_of('gpu_busy_cost', 'gpu_busy_cost + gpu_idle_cost') }} as gpu_utilization,
    case when hosted_cost > 0 and gpu_busy_cost > 0 then
        cast(gpu_busy_cost as double)
        * (1 + cast(shared_cost as double) / cast(gpu_busy_cost + gpu_idle_cost as double))
        / cast(hosted_cost as double)
    end as break_even_gpu_utilization,
    case
        when hosted_cost is null or self_hosted_cost is null then null
        when self_hosted_cost <= hosted_cost then 'self_hosted'
        else 'hosted'
    end as cheaper_option
from compared
