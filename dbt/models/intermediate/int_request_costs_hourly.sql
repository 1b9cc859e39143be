-- Self-hosted cost at the mart grain, in the billing currency: request lines carry their
-- share of the busy GPU cost, each deployment-hour's idle GPU cost is a line of its own
-- (customer and feature `__idle__`), and the day's shared cost lands on these lines.

with

requests as (

    select * from {{ ref('int_gateway_requests_hourly') }}
    where is_self_hosted

),

deployment_hours as (

    select * from {{ ref('int_deployment_hours') }}

),

shared_daily as (

    select * from {{ ref('int_shared_costs_daily') }}
    where deployment is not null

),

request_weights as (

    select
        requests.*,
        deployment_hours.provider as gpu_provider,
        deployment_hours.billing_currency,
        deployment_hours.is_primary_provider,
        deployment_hours.weight_source,
        deployment_hours.gpu_busy_cost as deployment_busy_cost,
        deployment_hours.energy_wh as deployment_energy_wh,
        deployment_hours.co2e_g as deployment_co2e_g,
        deployment_hours.busy_fraction,
        deployment_hours.w_input,
        deployment_hours.w_cache_read,
        deployment_hours.w_output,
        deployment_hours.weighted_tokens as deployment_weighted_tokens,
        -- The request's GPU work in the deployment-hour's weights (prefill for uncached input
        -- and cache writes, a discounted prefill for cache reads, decode for output).
        deployment_hours.w_input * (requests.input_uncached_tokens + requests.cache_write_tokens)
            + deployment_hours.w_cache_read * requests.cache_read_tokens
            + deployment_hours.w_output * requests.output_tokens as weighted_tokens,
        deployment_hours.w_output * requests.output_tokens as weighted_output_tokens,
        -- What the cache reads would have weighed prefilled from scratch, less what they did.
        (deployment_hours.w_input - deployment_hours.w_cache_read) * requests.cache_read_tokens
            as weight_saved_by_cache,
        -- A deployment-hour whose requests all had zero weight splits by request count
        -- instead, so its busy cost still lands somewhere.
        deployment_hours.weighted_tokens > 0 as splits_by_tokens,
        deployment_hours.requests as deployment_requests
    from requests
    left join deployment_hours
        on requests.hour_start = deployment_hours.hour_start
        and requests.deployment = deployment_hours.deployment

),

request_costs as (

    select
        *,
        case when splits_by_tokens then weighted_tokens else requests end as allocation_weight,
        case when splits_by_tokens then deployment_weighted_tokens else deployment_requests end
            as deployment_allocation_weight
    from request_weights

),

request_costs_allocated as (

    select
        *,
        case when deployment_allocation_weight > 0
            then {{ allocate('deployment_busy_cost', 'allocation_weight', 'deployment_allocation_weight') }}
            else {{ money(0) }} end as gpu_busy_cost
    from request_costs

),

request_lines as (

    select
        hour_start,
        usage_date,
        -- Requests of a deployment with no GPU cost this hour keep the gateway's provider.
        coalesce(gpu_provider, gateway_provider) as provider,
        billing_currency,
        model,
        deployment,
        customer_id,
        feature,
        'request' as line_type,
        coalesce(weight_source, 'default') as weight_source,
        case when coalesce(is_primary_provider, true) then requests else 0 end as requests,
        case when coalesce(is_primary_provider, true) then failed_requests else 0 end as failed_requests,
        case when coalesce(is_primary_provider, true) then input_uncached_tokens else 0 end as input_uncached_tokens,
        case when coalesce(is_primary_provider, true) then cache_read_tokens else 0 end as cache_read_tokens,
        case when coalesce(is_primary_provider, true) then cache_write_tokens else 0 end as cache_write_tokens,
        case when coalesce(is_primary_provider, true) then output_tokens else 0 end as output_tokens,
        case when coalesce(is_primary_provider, true) then reasoning_tokens else 0 end as reasoning_tokens,
        gpu_busy_cost,
        {{ money(0) }} as gpu_idle_cost,
        case when weighted_tokens > 0 then gpu_busy_cost * (weighted_output_tokens / weighted_tokens)
            else 0 end as busy_output_cost_raw,
        -- The GPU time the cache saved, valued at what this deployment-hour's busy GPU time
        -- cost per unit of weight.
        case when splits_by_tokens and deployment_weighted_tokens > 0
            then deployment_busy_cost * (weight_saved_by_cache / deployment_weighted_tokens)
            else 0 end as cache_savings_raw,
        case when deployment_allocation_weight > 0
            then deployment_energy_wh * busy_fraction * allocation_weight / deployment_allocation_weight
        end as energy_wh,
        case when deployment_allocation_weight > 0
            then deployment_co2e_g * busy_fraction * allocation_weight / deployment_allocation_weight
        end as co2e_g
    from request_costs_allocated

),

idle_lines as (

    select
        hour_start,
        usage_date,
        provider,
        billing_currency,
        model,
        deployment,
        '__idle__' as customer_id,
        '__idle__' as feature,
        'idle' as line_type,
        weight_source,
        0 as requests,
        0 as failed_requests,
        0 as input_uncached_tokens,
        0 as cache_read_tokens,
        0 as cache_write_tokens,
        0 as output_tokens,
        0 as reasoning_tokens,
        {{ money(0) }} as gpu_busy_cost,
        gpu_idle_cost,
        0 as busy_output_cost_raw,
        0 as cache_savings_raw,
        energy_wh * (1 - busy_fraction) as energy_wh,
        co2e_g * (1 - busy_fraction) as co2e_g
    from deployment_hours
    where gpu_idle_cost <> 0
    {%- if var('break_allocation_for_test') %}
        -- Deliberately broken (tests only): idle cost vanishes, conservation must fail.
        and 1 = 0
    {%- endif %}

),

lines as (

    select * from request_lines
    union all
    select * from idle_lines

),

with_day_totals as (

    select
        lines.*,
        sum(case when line_type = 'request' then gpu_busy_cost else 0 end) over (
            partition by usage_date, provider, billing_currency, deployment
        ) as day_busy_cost,
        sum(case when line_type = 'idle' then gpu_idle_cost else 0 end) over (
            partition by usage_date, provider, billing_currency, deployment
        ) as day_idle_cost
    from lines

)

select
    with_day_totals.hour_start,
    with_day_totals.usage_date,
    with_day_totals.provider,
    with_day_totals.billing_currency,
    with_day_totals.model,
    with_day_totals.deployment,
    with_day_totals.customer_id,
    with_day_totals.feature,
    with_day_totals.line_type,
    with_day_totals.weight_source,
    cast(with_day_totals.requests as bigint) as requests,
    cast(with_day_totals.failed_requests as bigint) as failed_requests,
    cast(with_day_totals.input_uncached_tokens as bigint) as input_uncached_tokens,
    cast(with_day_totals.cache_read_tokens as bigint) as cache_read_tokens,
    cast(with_day_totals.cache_write_tokens as bigint) as cache_write_tokens,
    cast(with_day_totals.output_tokens as bigint) as output_tokens,
    cast(with_day_totals.reasoning_tokens as bigint) as reasoning_tokens,
    with_day_totals.gpu_busy_cost,
    with_day_totals.gpu_idle_cost,
    -- The deployment's shared cost of the day follows its busy GPU cost onto the request
    -- lines; a deployment that served nothing all day carries it on its idle lines.
    case
        when shared_daily.shared_cost is null then {{ money(0) }}
        when with_day_totals.day_busy_cost > 0 then
            case when with_day_totals.line_type = 'request'
                then {{ allocate('shared_daily.shared_cost', 'with_day_totals.gpu_busy_cost', 'with_day_totals.day_busy_cost') }}
                else {{ money(0) }} end
        when with_day_totals.day_idle_cost > 0 then
            case when with_day_totals.line_type = 'idle'
                then {{ allocate('shared_daily.shared_cost', 'with_day_totals.gpu_idle_cost', 'with_day_totals.day_idle_cost') }}
                else {{ money(0) }} end
        else {{ money(0) }}
    end as shared_cost,
    {{ money('with_day_totals.busy_output_cost_raw') }} as busy_output_cost,
    {{ money('with_day_totals.cache_savings_raw') }} as cache_savings,
    cast(with_day_totals.energy_wh as decimal(38, 6)) as energy_wh,
    cast(with_day_totals.co2e_g as decimal(38, 6)) as co2e_g
from with_day_totals
left join shared_daily
    on with_day_totals.usage_date = shared_daily.usage_date
    and with_day_totals.provider = shared_daily.provider
    and with_day_totals.billing_currency = shared_daily.billing_currency
    and with_day_totals.deployment = shared_daily.deployment
