-- Conservation per hour, provider and currency for GPU compute: each hour's in-scope GPU
-- cost = the busy and idle GPU cost on that hour's lines of fct_inference_costs_hourly +
-- the GPU cost of instances no deployment claimed, to half a cent. Shared platform cost and
-- the hosted-API true-up are allocated per day, so they balance at the daily grain
-- (assert_cost_conserved), not per hour. Checks the run window, in the intermediate tables
-- too (they hold the last build's window, which a `dbt test` may not share). Returns one row
-- per failure.

{{ config(severity='error', tags=['conservation'], meta={'dagster': {'ref': {'name': 'fct_inference_costs_hourly'}}}) }}

with

billed as (

    select hour_start, provider, billing_currency, sum(effective_cost) as gpu_cost
    from {{ ref('int_in_scope_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
        and scope_reason = 'gpu_compute'
    group by hour_start, provider, billing_currency

),

unattributed as (

    select hour_start, provider, billing_currency, sum(effective_cost) as gpu_cost
    from {{ ref('int_gpu_instance_hours') }}
    where {{ in_run_window('usage_date') }}
        and deployment is null
    group by hour_start, provider, billing_currency

),

-- Back from USD to the billing currency through the rate each line used.
allocated as (

    select
        hour_start,
        provider,
        billing_currency,
        sum(cast(gpu_busy_cost + gpu_idle_cost as double) / cast(usd_per_unit as double)) as gpu_cost
    from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
        and line_type in ('request', 'idle')
        and billing_currency is not null
    group by hour_start, provider, billing_currency

),

keys as (

    select hour_start, provider, billing_currency from billed
    union
    select hour_start, provider, billing_currency from allocated

),

compared as (

    select
        keys.hour_start,
        keys.provider,
        keys.billing_currency,
        coalesce(billed.gpu_cost, 0) as billed_gpu_cost,
        coalesce(allocated.gpu_cost, 0) + coalesce(unattributed.gpu_cost, 0) as accounted
    from keys
    left join billed
        on keys.hour_start = billed.hour_start
        and keys.provider = billed.provider
        and keys.billing_currency = billed.billing_currency
    left join allocated
        on keys.hour_start = allocated.hour_start
        and keys.provider = allocated.provider
        and keys.billing_currency = allocated.billing_currency
    left join unattributed
        on keys.hour_start = unattributed.hour_start
        and keys.provider = unattributed.provider
        and keys.billing_currency = unattributed.billing_currency

)

select
    hour_start, provider, billing_currency, billed_gpu_cost, accounted
from compared
where billed_gpu_cost - accounted >= 0.005 or accounted - billed_gpu_cost >= 0.005
