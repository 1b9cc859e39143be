-- What each customer paid us per day under its price plan: the customer's tier of the day
-- (customer_tiers) and that tier's effective-dated plan (price_plans), per token (uncached
-- input and cache writes at the input price, cache reads at the cached price, output at
-- the output price) or per successful request. A customer with no tier or no plan that day
-- has no revenue (null), not zero.

with

customer_usage as (

    select
        usage_date,
        customer_id,
        sum(requests) as requests,
        sum(input_uncached_tokens + cache_write_tokens) as input_tokens,
        sum(cache_read_tokens) as cached_input_tokens,
        sum(output_tokens) as output_tokens
    from {{ ref('int_gateway_requests_hourly') }}
    group by usage_date, customer_id

),

tiers as (

    select * from {{ ref('customer_tiers') }}

),

plans as (

    select * from {{ ref('price_plans') }}

),

-- Overlapping tier or plan rows for one day: the one that started last wins.
tiered as (

    select
        customer_usage.*,
        tiers.tier,
        row_number() over (
            partition by customer_usage.usage_date, customer_usage.customer_id
            order by tiers.valid_from desc
        ) as tier_rank
    from customer_usage
    inner join tiers
        on customer_usage.customer_id = tiers.customer_id
        and (tiers.valid_from is null or tiers.valid_from <= customer_usage.usage_date)
        and (tiers.valid_to is null or customer_usage.usage_date < tiers.valid_to)

),

planned as (

    select
        tiered.*,
        plans.pricing_model,
        plans.usd_per_1m_input_tokens,
        coalesce(plans.usd_per_1m_cached_input_tokens, plans.usd_per_1m_input_tokens)
            as usd_per_1m_cached_input_tokens,
        plans.usd_per_1m_output_tokens,
        plans.usd_per_request,
        row_number() over (
            partition by tiered.usage_date, tiered.customer_id
            order by plans.effective_from desc
        ) as plan_rank
    from tiered
    inner join plans
        on tiered.tier = plans.tier
        and plans.effective_from <= tiered.usage_date
        and (plans.effective_to is null or tiered.usage_date < plans.effective_to)
    where tiered.tier_rank = 1

)

select
    usage_date,
    customer_id,
    tier,
    pricing_model,
    requests,
    input_tokens,
    cached_input_tokens,
    output_tokens,
    case
        when pricing_model = 'per_request' then {{ money('requests * usd_per_request') }}
        else {{ money(
            '(input_tokens * usd_per_1m_input_tokens'
            ~ ' + cached_input_tokens * usd_per_1m_cached_input_tokens'
            ~ ' + output_tokens * usd_per_1m_output_tokens) * 0.000001'
        ) }}
    end as revenue
from planned
where plan_rank = 1
