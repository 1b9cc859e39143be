{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- Spend per UTC day and supplier, for each supplier-concentration dimension, in USD: what
-- supplier_concentration sums over its trailing 30 days and months. Built for the run
-- window like the marts it reads, so a day's concentration reads a few rows per earlier
-- day instead of 92 days of bill lines and hourly facts.
--
-- cloud_provider, region, gpu_vendor and gpu_model from the bill's Usage lines (effective
-- cost, converted to USD at the day's rate); model_provider from fct_inference_costs_daily
-- (the hosted API's provider, and self-hosted inference as one supplier of its own).

with

bill as (

    select usage_date, provider, region_id, instance_type, scope_reason, billing_currency, effective_cost
    from {{ ref('fct_billing_line_items') }}
    where charge_category = 'Usage'
        and {{ in_run_window('usage_date') }}

),

bill_spend as (

    select usage_date, 'cloud_provider' as dimension, provider as supplier, billing_currency, effective_cost as spend
    from bill
    union all
    select usage_date, 'region' as dimension, region_id as supplier, billing_currency, effective_cost as spend
    from bill
    where region_id is not null
    union all
    select bill.usage_date, 'gpu_vendor' as dimension, catalog.gpu_vendor as supplier, bill.billing_currency, bill.effective_cost as spend
    from bill
    inner join {{ ref('gpu_instance_catalog') }} as catalog on bill.instance_type = catalog.instance_type
    where bill.scope_reason = 'gpu_compute'
    union all
    select bill.usage_date, 'gpu_model' as dimension, catalog.gpu_model as supplier, bill.billing_currency, bill.effective_cost as spend
    from bill
    inner join {{ ref('gpu_instance_catalog') }} as catalog on bill.instance_type = catalog.instance_type
    where bill.scope_reason = 'gpu_compute'

),

bill_daily as (

    select usage_date, dimension, supplier, billing_currency, sum(spend) as spend
    from bill_spend
    group by usage_date, dimension, supplier, billing_currency

),

currency_days as (

    select distinct usage_date, billing_currency from bill_daily

),

fx as (

    {{ fx_usd_per_unit('currency_days') }}

),

model_provider_daily as (

    select
        usage_date,
        'model_provider' as dimension,
        case when line_type = 'api' then provider else 'self-hosted' end as supplier,
        sum(total_cost) as spend_usd
    from {{ ref('fct_inference_costs_daily') }}
    where {{ in_run_window('usage_date') }}
        and total_cost is not null
    group by usage_date, case when line_type = 'api' then provider else 'self-hosted' end

),

daily as (

    select bill_daily.usage_date, bill_daily.dimension, bill_daily.supplier,
        sum({{ to_usd('bill_daily.spend', 'fx.usd_per_unit') }}) as spend_usd
    from bill_daily
    inner join fx
        on bill_daily.usage_date = fx.usage_date
        and bill_daily.billing_currency = fx.billing_currency
    group by bill_daily.usage_date, bill_daily.dimension, bill_daily.supplier
    union all
    select usage_date, dimension, supplier, spend_usd from model_provider_daily

)

select
    cast(usage_date as date) as usage_date,
    cast(dimension as {{ dbt.type_string() }}) as dimension,
    cast(supplier as {{ dbt.type_string() }}) as supplier,
    {{ money('spend_usd') }} as spend_usd
from daily
