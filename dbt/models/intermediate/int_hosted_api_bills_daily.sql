-- Per day and hosted-API provider: what its bill charged (the hosted_api bill lines of the
-- day) next to what its requests cost at list price. The difference is the true-up, spread
-- over the day's priced requests by their list cost. A bill with no priced request to
-- spread over stays unattributed; requests on a day their provider did not bill stay at list
-- price and out of the reconciliation.

with

billed as (

    select
        usage_date,
        api_gateway_provider as gateway_provider,
        provider as billing_provider,
        billing_currency,
        sum(effective_cost) as billed_cost
    from {{ ref('int_in_scope_costs_hourly') }}
    where scope_reason = 'hosted_api'
    group by usage_date, api_gateway_provider, provider, billing_currency

),

fx_keys as (

    select distinct usage_date, billing_currency from billed

),

fx as (

    {{ fx_usd_per_unit('fx_keys') }}

),

list_priced as (

    select
        usage_date,
        provider as gateway_provider,
        sum(api_cost) as list_cost_usd,
        sum(requests) as requests,
        sum(unpriced_requests) as unpriced_requests
    from {{ ref('int_hosted_api_costs') }}
    group by usage_date, provider

),

joined as (

    select
        billed.usage_date,
        billed.gateway_provider,
        billed.billing_provider,
        billed.billing_currency,
        billed.billed_cost,
        fx.usd_per_unit,
        coalesce(list_priced.requests, 0) as requests,
        coalesce(list_priced.unpriced_requests, 0) as unpriced_requests,
        coalesce(list_priced.list_cost_usd, 0) as list_cost_usd,
        -- List prices are USD; the bill's currency is what the reconciliation sums.
        {{ money('cast(coalesce(list_priced.list_cost_usd, 0) as double) / cast(fx.usd_per_unit as double)') }} as list_cost
    from billed
    left join fx
        on billed.usage_date = fx.usage_date
        and billed.billing_currency = fx.billing_currency
    left join list_priced
        on billed.usage_date = list_priced.usage_date
        and billed.gateway_provider = list_priced.gateway_provider

)

select
    usage_date,
    gateway_provider,
    billing_provider,
    billing_currency,
    billed_cost,
    usd_per_unit,
    requests,
    unpriced_requests,
    list_cost_usd,
    list_cost,
    case when list_cost > 0 then billed_cost - list_cost else {{ money(0) }} end as true_up,
    case when list_cost > 0 then {{ money(0) }} else billed_cost end as unattributed_cost
from joined
