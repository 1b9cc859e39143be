{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- Inference cost per hour, provider, model, deployment, customer and feature, in USD.
-- Self-hosted lines (requests and idle) come from the bill; hosted-API lines from prices.

with

self_hosted as (

    select
        hour_start,
        usage_date,
        provider,
        billing_currency,
        model,
        deployment,
        customer_id,
        feature,
        line_type,
        requests,
        failed_requests,
        cast(0 as bigint) as unpriced_requests,
        input_uncached_tokens,
        cache_read_tokens,
        cache_write_tokens,
        output_tokens,
        reasoning_tokens,
        gpu_busy_cost,
        gpu_idle_cost,
        shared_cost,
        {{ money(0) }} as api_cost,
        busy_output_cost,
        energy_wh
    from {{ ref('int_request_costs_hourly') }}

),

hosted as (

    select
        hour_start,
        usage_date,
        provider,
        billing_currency,
        model,
        deployment,
        customer_id,
        feature,
        'api' as line_type,
        requests,
        failed_requests,
        unpriced_requests,
        input_uncached_tokens,
        cache_read_tokens,
        cache_write_tokens,
        output_tokens,
        reasoning_tokens,
        {{ money(0) }} as gpu_busy_cost,
        {{ money(0) }} as gpu_idle_cost,
        {{ money(0) }} as shared_cost,
        api_cost,
        api_output_cost as busy_output_cost,
        cast(null as decimal(38, 6)) as energy_wh
    from {{ ref('int_hosted_api_costs') }}

),

lines as (

    select * from self_hosted
    union all
    select * from hosted

),

currency_days as (

    select distinct usage_date, billing_currency
    from lines
    where billing_currency is not null

),

-- The rate of the charge day, else the latest earlier one.
fx_candidates as (

    select
        currency_days.usage_date,
        currency_days.billing_currency,
        fx_rates.usd_per_unit,
        row_number() over (
            partition by currency_days.usage_date, currency_days.billing_currency
            order by fx_rates.{{ adapter.quote('date') }} desc
        ) as recency
    from currency_days
    inner join {{ ref('fx_rates') }} as fx_rates
        on fx_rates.currency = currency_days.billing_currency
        and fx_rates.{{ adapter.quote('date') }} <= currency_days.usage_date

),

with_fx as (

    select
        lines.*,
        case
            -- Lines with no billing currency carry no cost; USD needs no rate.
            when lines.billing_currency is null or lines.billing_currency = 'USD' then {{ money(1) }}
            else fx_candidates.usd_per_unit
        end as usd_per_unit,
        -- True-up of list-priced API cost to the provider's bill: no hosted-API bill is
        -- ingested yet, so it is zero until one is.
        {{ money(0) }} as true_up
    from lines
    left join fx_candidates
        on lines.usage_date = fx_candidates.usage_date
        and lines.billing_currency = fx_candidates.billing_currency
        and fx_candidates.recency = 1

)

select
    cast(hour_start as timestamp) as hour_start,
    cast(usage_date as date) as usage_date,
    cast(provider as {{ dbt.type_string() }}) as provider,
    cast(model as {{ dbt.type_string() }}) as model,
    cast(deployment as {{ dbt.type_string() }}) as deployment,
    cast(customer_id as {{ dbt.type_string() }}) as customer_id,
    cast(feature as {{ dbt.type_string() }}) as feature,
    cast(line_type as {{ dbt.type_string() }}) as line_type,
    cast(billing_currency as {{ dbt.type_string() }}) as billing_currency,
    cast(requests as bigint) as requests,
    cast(failed_requests as bigint) as failed_requests,
    cast(unpriced_requests as bigint) as unpriced_requests,
    cast(input_uncached_tokens as bigint) as input_uncached_tokens,
    cast(cache_read_tokens as bigint) as cache_read_tokens,
    cast(cache_write_tokens as bigint) as cache_write_tokens,
    cast(output_tokens as bigint) as output_tokens,
    cast(reasoning_tokens as bigint) as reasoning_tokens,
    {{ money('gpu_busy_cost * usd_per_unit') }} as gpu_busy_cost,
    {{ money('gpu_idle_cost * usd_per_unit') }} as gpu_idle_cost,
    {{ money('shared_cost * usd_per_unit') }} as shared_cost,
    {{ money('api_cost * usd_per_unit') }} as api_cost,
    {{ money('true_up * usd_per_unit') }} as true_up,
    {{ money('(gpu_busy_cost + gpu_idle_cost + shared_cost + api_cost + true_up) * usd_per_unit') }} as total_cost,
    {{ money('busy_output_cost * usd_per_unit') }} as busy_output_cost,
    {{ money('gpu_busy_cost + gpu_idle_cost + shared_cost + api_cost + true_up') }} as total_cost_billing_currency,
    usd_per_unit,
    cast(energy_wh as decimal(38, 6)) as energy_wh
from with_fx
