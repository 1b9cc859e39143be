{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- The conservation check, per day, provider and billing currency, in that currency:
-- in-scope effective cost = allocated to requests (busy GPU + hosted API) + idle + shared +
-- unattributed. Hosted-API providers are here on the days their bill covers; a day with
-- requests but no bill has nothing to reconcile against and stays at list price.

with

bill_lines as (

    select * from {{ ref('int_billing_line_items_scoped') }}
    where {{ in_run_window('usage_date') }}

),

in_scope_hours as (

    select * from {{ ref('int_in_scope_costs_hourly') }}

),

cost_lines as (

    select * from {{ ref('int_request_costs_hourly') }}
    where billing_currency is not null

),

api_lines as (

    select * from {{ ref('int_hosted_api_costs_billed') }}
    where is_reconciled

),

unattributed_gpu as (

    select usage_date, provider, billing_currency, effective_cost as amount
    from {{ ref('int_gpu_instance_hours') }}
    where deployment is null

),

unattributed_shared as (

    select usage_date, provider, billing_currency, shared_cost as amount
    from {{ ref('int_shared_costs_daily') }}
    where deployment is null

),

-- An API bill with no priced request that day to carry it.
unattributed_api as (

    select usage_date, billing_provider as provider, billing_currency, unattributed_cost as amount
    from {{ ref('int_hosted_api_bills_daily') }}
    where unattributed_cost <> 0

),

components as (

    -- Out-of-scope lines count on the day their charge period starts; in-scope lines on
    -- the days their hours fall (the same for every line no longer than its day).
    select
        usage_date, provider, billing_currency,
        {{ money(0) }} as billed_in_scope, effective_cost as out_of_scope,
        {{ money(0) }} as allocated_gpu, {{ money(0) }} as allocated_api, {{ money(0) }} as true_up,
        {{ money(0) }} as idle, {{ money(0) }} as shared, {{ money(0) }} as unattributed
    from bill_lines
    where not in_scope

    union all

    select
        usage_date, provider, billing_currency,
        effective_cost, {{ money(0) }},
        {{ money(0) }}, {{ money(0) }}, {{ money(0) }},
        {{ money(0) }}, {{ money(0) }}, {{ money(0) }}
    from in_scope_hours

    union all

    select
        usage_date, provider, billing_currency,
        {{ money(0) }}, {{ money(0) }},
        gpu_busy_cost, {{ money(0) }}, {{ money(0) }},
        gpu_idle_cost, shared_cost, {{ money(0) }}
    from cost_lines

    union all

    select
        usage_date, billing_provider, billing_currency,
        {{ money(0) }}, {{ money(0) }},
        {{ money(0) }}, {{ money('api_cost + true_up') }}, true_up,
        {{ money(0) }}, {{ money(0) }}, {{ money(0) }}
    from api_lines

    union all

    select
        usage_date, provider, billing_currency,
        {{ money(0) }}, {{ money(0) }},
        {{ money(0) }}, {{ money(0) }}, {{ money(0) }},
        {{ money(0) }}, {{ money(0) }}, amount
    from unattributed_gpu

    union all

    select
        usage_date, provider, billing_currency,
        {{ money(0) }}, {{ money(0) }},
        {{ money(0) }}, {{ money(0) }}, {{ money(0) }},
        {{ money(0) }}, {{ money(0) }}, amount
    from unattributed_shared

    union all

    select
        usage_date, provider, billing_currency,
        {{ money(0) }}, {{ money(0) }},
        {{ money(0) }}, {{ money(0) }}, {{ money(0) }},
        {{ money(0) }}, {{ money(0) }}, amount
    from unattributed_api

),

daily as (

    select
        usage_date,
        provider,
        billing_currency,
        sum(billed_in_scope) as billed_in_scope,
        sum(out_of_scope) as out_of_scope,
        sum(allocated_gpu) as allocated_gpu,
        sum(allocated_api) as allocated_api,
        sum(true_up) as true_up,
        sum(idle) as idle,
        sum(shared) as shared,
        sum(unattributed) as unattributed
    from components
    group by usage_date, provider, billing_currency

),

with_residual as (

    select
        *,
        allocated_gpu + allocated_api as allocated,
        billed_in_scope - allocated_gpu - allocated_api - idle - shared - unattributed as residual
    from daily

)

select
    cast(usage_date as date) as usage_date,
    cast(provider as {{ dbt.type_string() }}) as provider,
    cast(billing_currency as {{ dbt.type_string() }}) as billing_currency,
    {{ money('billed_in_scope + out_of_scope') }} as billed_total,
    {{ money('billed_in_scope') }} as billed_in_scope,
    {{ money('allocated') }} as allocated,
    {{ money('allocated_gpu') }} as allocated_gpu,
    {{ money('allocated_api') }} as allocated_api,
    {{ money('true_up') }} as true_up,
    {{ money('idle') }} as idle,
    {{ money('shared') }} as shared,
    {{ money('unattributed') }} as unattributed,
    {{ money('out_of_scope') }} as out_of_scope,
    {{ money('residual') }} as residual,
    -- Half a cent: allocation ratios are computed in double precision.
    residual > -0.005 and residual < 0.005 as passed
from with_residual
