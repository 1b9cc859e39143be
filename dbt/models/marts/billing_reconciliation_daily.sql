{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- The conservation check, per day, cloud provider and billing currency, in that currency:
-- in-scope effective cost = allocated to requests + idle + shared + unattributed.
-- Hosted APIs are not here: no provider bill for them is ingested, so there is nothing to
-- reconcile their list-price cost against.

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

components as (

    -- Out-of-scope lines count on the day their charge period starts; in-scope lines on
    -- the days their hours fall (the same for every line no longer than its day).
    select
        usage_date, provider, billing_currency,
        {{ money(0) }} as billed_in_scope, effective_cost as out_of_scope,
        {{ money(0) }} as allocated, {{ money(0) }} as idle, {{ money(0) }} as shared,
        {{ money(0) }} as unattributed
    from bill_lines
    where not in_scope

    union all

    select
        usage_date, provider, billing_currency,
        effective_cost, {{ money(0) }}, {{ money(0) }}, {{ money(0) }}, {{ money(0) }}, {{ money(0) }}
    from in_scope_hours

    union all

    select
        usage_date, provider, billing_currency,
        {{ money(0) }}, {{ money(0) }}, gpu_busy_cost, gpu_idle_cost, shared_cost, {{ money(0) }}
    from cost_lines

    union all

    select
        usage_date, provider, billing_currency,
        {{ money(0) }}, {{ money(0) }}, {{ money(0) }}, {{ money(0) }}, {{ money(0) }}, amount
    from unattributed_gpu

    union all

    select
        usage_date, provider, billing_currency,
        {{ money(0) }}, {{ money(0) }}, {{ money(0) }}, {{ money(0) }}, {{ money(0) }}, amount
    from unattributed_shared

),

daily as (

    select
        usage_date,
        provider,
        billing_currency,
        sum(billed_in_scope) as billed_in_scope,
        sum(out_of_scope) as out_of_scope,
        sum(allocated) as allocated,
        sum(idle) as idle,
        sum(shared) as shared,
        sum(unattributed) as unattributed
    from components
    group by usage_date, provider, billing_currency

),

with_residual as (

    select
        *,
        billed_in_scope - allocated - idle - shared - unattributed as residual
    from daily

)

select
    cast(usage_date as date) as usage_date,
    cast(provider as {{ dbt.type_string() }}) as provider,
    cast(billing_currency as {{ dbt.type_string() }}) as billing_currency,
    {{ money('billed_in_scope + out_of_scope') }} as billed_total,
    {{ money('billed_in_scope') }} as billed_in_scope,
    {{ money('allocated') }} as allocated,
    {{ money('idle') }} as idle,
    {{ money('shared') }} as shared,
    {{ money('unattributed') }} as unattributed,
    {{ money('out_of_scope') }} as out_of_scope,
    {{ money('residual') }} as residual,
    -- Half a cent: allocation ratios are computed in double precision.
    residual > -0.005 and residual < 0.005 as passed
from with_residual
