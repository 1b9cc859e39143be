-- Hosted-API lines in the currency they are paid in. On a day the provider's bill covers,
-- a line carries its list cost converted to the bill's currency plus its share of the
-- day's true-up (by list cost), so the day's lines add up to the bill. Other days keep the
-- list price in USD and are not reconciled (there is nothing to reconcile them against).

with

lines as (

    select * from {{ ref('int_hosted_api_costs') }}

),

bills as (

    select * from {{ ref('int_hosted_api_bills_daily') }}
    where list_cost > 0

),

joined as (

    select
        lines.*,
        bills.billing_provider as billed_by,
        bills.billing_currency as bill_currency,
        bills.usd_per_unit,
        bills.list_cost_usd as day_list_cost_usd,
        bills.true_up as day_true_up
    from lines
    left join bills
        on lines.usage_date = bills.usage_date
        and lines.provider = bills.gateway_provider

)

select
    hour_start,
    usage_date,
    provider,
    coalesce(billed_by, billing_provider) as billing_provider,
    billed_by is not null as is_reconciled,
    coalesce(bill_currency, list_currency) as billing_currency,
    model,
    deployment,
    customer_id,
    feature,
    requests,
    failed_requests,
    unpriced_requests,
    input_uncached_tokens,
    cache_read_tokens,
    cache_write_tokens,
    output_tokens,
    reasoning_tokens,
    -- Quotients as doubles (DuckDB divides decimals as doubles anyway; Spark would keep only
    -- 6 decimals of a decimal quotient), cast back to money.
    case when billed_by is null then api_cost
        else {{ money('cast(api_cost as double) / cast(usd_per_unit as double)') }} end as api_cost,
    case when billed_by is null or api_cost is null then {{ money(0) }}
        else {{ allocate('day_true_up', 'api_cost', 'day_list_cost_usd') }} end as true_up,
    case when billed_by is null then api_output_cost
        else {{ money('cast(api_output_cost as double) / cast(usd_per_unit as double)') }} end as api_output_cost,
    case when billed_by is null then cache_savings
        else {{ money('cast(cache_savings as double) / cast(usd_per_unit as double)') }} end as cache_savings
from joined
