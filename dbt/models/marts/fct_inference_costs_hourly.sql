{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- Inference cost per hour, provider, model, deployment, customer and feature, in USD.
-- Self-hosted lines (requests and idle) come from the bill; hosted-API lines from list
-- prices, trued up to the provider's bill on the days it has one.

with

self_hosted as (

    select
        hour_start,
        usage_date,
        provider,
        provider as billing_provider,
        billing_currency is not null as is_reconciled,
        billing_currency,
        model,
        deployment,
        customer_id,
        feature,
        line_type,
        weight_source,
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
        {{ money(0) }} as true_up,
        busy_output_cost,
        cache_savings,
        energy_wh,
        co2e_g
    from {{ ref('int_request_costs_hourly') }}

),

hosted as (

    select
        hour_start,
        usage_date,
        provider,
        billing_provider,
        is_reconciled,
        billing_currency,
        model,
        deployment,
        customer_id,
        feature,
        'api' as line_type,
        'list_price' as weight_source,
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
        true_up,
        api_output_cost as busy_output_cost,
        cache_savings,
        cast(null as decimal(38, 6)) as energy_wh,
        cast(null as decimal(38, 6)) as co2e_g
    from {{ ref('int_hosted_api_costs_billed') }}

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

fx as (

    {{ fx_usd_per_unit('currency_days') }}

),

with_fx as (

    select
        lines.*,
        -- Lines with no billing currency carry no cost.
        case when lines.billing_currency is null then {{ money(1) }} else fx.usd_per_unit end as usd_per_unit
    from lines
    left join fx
        on lines.usage_date = fx.usage_date
        and lines.billing_currency = fx.billing_currency

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
    cast(billing_provider as {{ dbt.type_string() }}) as billing_provider,
    cast(is_reconciled as boolean) as is_reconciled,
    cast(weight_source as {{ dbt.type_string() }}) as weight_source,
    cast(requests as bigint) as requests,
    cast(failed_requests as bigint) as failed_requests,
    cast(unpriced_requests as bigint) as unpriced_requests,
    cast(input_uncached_tokens as bigint) as input_uncached_tokens,
    cast(cache_read_tokens as bigint) as cache_read_tokens,
    cast(cache_write_tokens as bigint) as cache_write_tokens,
    cast(output_tokens as bigint) as output_tokens,
    cast(reasoning_tokens as bigint) as reasoning_tokens,
    {{ to_usd('gpu_busy_cost', 'usd_per_unit') }} as gpu_busy_cost,
    {{ to_usd('gpu_idle_cost', 'usd_per_unit') }} as gpu_idle_cost,
    {{ to_usd('shared_cost', 'usd_per_unit') }} as shared_cost,
    {{ to_usd('api_cost', 'usd_per_unit') }} as api_cost,
    {{ to_usd('true_up', 'usd_per_unit') }} as true_up,
    {{ to_usd('(' ~ money_total(['gpu_busy_cost', 'gpu_idle_cost', 'shared_cost', 'api_cost', 'true_up']) ~ ')', 'usd_per_unit') }} as total_cost,
    {{ to_usd('busy_output_cost', 'usd_per_unit') }} as busy_output_cost,
    {{ to_usd('cache_savings', 'usd_per_unit') }} as cache_savings,
    {{ money(money_total(['gpu_busy_cost', 'gpu_idle_cost', 'shared_cost', 'api_cost', 'true_up'])) }} as total_cost_billing_currency,
    usd_per_unit,
    cast(energy_wh as decimal(38, 6)) as energy_wh,
    cast(co2e_g as decimal(38, 6)) as co2e_g
from with_fx
