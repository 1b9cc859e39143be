{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- What a GPU-hour cost us against its list (on-demand) price, per day, cloud provider,
-- region and instance type: the rate that commitments (Savings Plans, reservations, CUDs)
-- and negotiated prices got us. effective_savings_rate = 1 - EffectiveCost / ListCost, the
-- FinOps rate KPI, over the GPU compute the economics allocate (unused commitment is not
-- usage: it is in billing_reconciliation_daily). A day whose lines lack a ListCost has no
-- rate rather than a wrong one.

with

instance_hours as (

    select * from {{ ref('int_gpu_instance_hours') }}
    where {{ in_run_window('usage_date') }}

),

catalog as (

    select instance_type, gpu_vendor, gpu_model from {{ ref('gpu_instance_catalog') }}

),

daily as (

    select
        usage_date,
        provider,
        billing_currency,
        region_id,
        instance_type,
        sum(run_hours) as instance_hours,
        sum(run_hours * gpu_count) as gpu_hours,
        sum(effective_cost) as effective_cost,
        sum(list_cost) as list_cost,
        sum(committed_list_cost) as committed_list_cost,
        sum(lines_missing_list_cost) as lines_missing_list_cost
    from instance_hours
    group by usage_date, provider, billing_currency, region_id, instance_type

),

currency_days as (

    select distinct usage_date, billing_currency
    from daily
    where billing_currency is not null

),

fx as (

    {{ fx_usd_per_unit('currency_days') }}

),

rated as (

    select
        daily.*,
        catalog.gpu_vendor,
        catalog.gpu_model,
        fx.usd_per_unit,
        daily.lines_missing_list_cost = 0 as list_cost_complete
    from daily
    left join catalog on daily.instance_type = catalog.instance_type
    left join fx
        on daily.usage_date = fx.usage_date
        and daily.billing_currency = fx.billing_currency

)

select
    cast(usage_date as date) as usage_date,
    cast(provider as {{ dbt.type_string() }}) as provider,
    cast(region_id as {{ dbt.type_string() }}) as region_id,
    cast(instance_type as {{ dbt.type_string() }}) as instance_type,
    cast(gpu_vendor as {{ dbt.type_string() }}) as gpu_vendor,
    cast(gpu_model as {{ dbt.type_string() }}) as gpu_model,
    cast(billing_currency as {{ dbt.type_string() }}) as billing_currency,
    cast(instance_hours as decimal(38, 6)) as instance_hours,
    cast(gpu_hours as decimal(38, 6)) as gpu_hours,
    {{ money('effective_cost') }} as effective_cost,
    case when list_cost_complete then {{ money('list_cost') }} end as list_cost,
    {{ to_usd('effective_cost', 'usd_per_unit') }} as effective_cost_usd,
    case when list_cost_complete then {{ to_usd('list_cost', 'usd_per_unit') }} end as list_cost_usd,
    {{ cost_per(to_usd('effective_cost', 'usd_per_unit'), 'gpu_hours') }} as effective_usd_per_gpu_hour,
    case when list_cost_complete then {{ cost_per(to_usd('list_cost', 'usd_per_unit'), 'gpu_hours') }} end
        as list_usd_per_gpu_hour,
    case when list_cost_complete then {{ share_of('list_cost - effective_cost', 'list_cost') }} end
        as effective_savings_rate,
    case when list_cost_complete then {{ share_of('committed_list_cost', 'list_cost') }} end
        as commitment_coverage,
    cast(list_cost_complete as boolean) as list_cost_complete
from rated
