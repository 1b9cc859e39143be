-- Conservation per day, provider and currency, checked twice. Returns one row per failure
-- (none when it holds). Siblings: assert_cost_conserved_hourly, _by_provider.
-- 1. Every day, provider and currency of the reconciliation passed.
-- 2. Independently of the reconciliation's own sums: the in-scope cost of the bill lines in
--    fct_billing_line_items (a line longer than an hour prorated by its hours in the day) =
--    the reconciled lines of fct_inference_costs_hourly (self-hosted, and hosted APIs on
--    days their bill covers) + the unattributed cost, to half a cent, in the billing
--    currency. It assumes the lines reaching into a checked day were
--    built by some run (true when days are built in order, as the schedule does).

{{ config(severity='error', tags=['conservation'], meta={'dagster': {'ref': {'name': 'billing_reconciliation_daily'}}}) }}

with

reconciliation as (

    select * from {{ ref('billing_reconciliation_daily') }}
    where {{ in_run_window('usage_date') }}

),

days as (

    select distinct usage_date from reconciliation

),

in_scope_lines as (

    select
        provider,
        billing_currency,
        effective_cost,
        charge_period_start,
        coalesce(charge_period_end, {{ dbt.dateadd('hour', 1, 'charge_period_start') }}) as charge_period_end
    from {{ ref('fct_billing_line_items') }}
    where in_scope
        -- Lines with hours in the window (the days checked), whatever day they started.
        and charge_period_start < {{ window_end_ts() }}
        and coalesce(charge_period_end, {{ dbt.dateadd('hour', 1, 'charge_period_start') }}) > {{ window_start_ts() }}

),

billed_by_day as (

    select
        days.usage_date,
        lines.provider,
        lines.billing_currency,
        sum(
            lines.effective_cost
            * {{ dbt.datediff(
                'case when lines.charge_period_start > cast(days.usage_date as timestamp)'
                ~ ' then lines.charge_period_start else cast(days.usage_date as timestamp) end',
                'case when lines.charge_period_end < ' ~ dbt.dateadd('day', 1, 'cast(days.usage_date as timestamp)')
                ~ ' then lines.charge_period_end else ' ~ dbt.dateadd('day', 1, 'cast(days.usage_date as timestamp)') ~ ' end',
                'hour') }}
            / case
                when {{ dbt.datediff('lines.charge_period_start', 'lines.charge_period_end', 'hour') }} < 1 then 1
                else {{ dbt.datediff('lines.charge_period_start', 'lines.charge_period_end', 'hour') }}
            end
        ) as billed_in_scope
    from days
    inner join in_scope_lines as lines
        on lines.charge_period_start < {{ dbt.dateadd('day', 1, 'cast(days.usage_date as timestamp)') }}
        and lines.charge_period_end > cast(days.usage_date as timestamp)
    group by days.usage_date, lines.provider, lines.billing_currency

),

allocated_by_day as (

    select
        usage_date,
        billing_provider as provider,
        billing_currency,
        sum(total_cost_billing_currency) as allocated_total
    from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
        and is_reconciled
    group by usage_date, billing_provider, billing_currency

),

keys as (

    select usage_date, provider, billing_currency from reconciliation
    union
    select usage_date, provider, billing_currency from billed_by_day

),

compared as (

    select
        keys.usage_date,
        keys.provider,
        keys.billing_currency,
        coalesce(billed_by_day.billed_in_scope, 0) as billed_in_scope,
        coalesce(allocated_by_day.allocated_total, 0)
            + coalesce(reconciliation.unattributed, 0) as accounted
    from keys
    left join reconciliation
        on keys.usage_date = reconciliation.usage_date
        and keys.provider = reconciliation.provider
        and keys.billing_currency = reconciliation.billing_currency
    left join billed_by_day
        on keys.usage_date = billed_by_day.usage_date
        and keys.provider = billed_by_day.provider
        and keys.billing_currency = billed_by_day.billing_currency
    left join allocated_by_day
        on keys.usage_date = allocated_by_day.usage_date
        and keys.provider = allocated_by_day.provider
        and keys.billing_currency = allocated_by_day.billing_currency

)

select
    usage_date, provider, billing_currency,
    {{ dbt.concat(["'reconciliation residual '", 'cast(residual as ' ~ dbt.type_string() ~ ')']) }} as failure
from reconciliation
where not passed

union all

select
    usage_date, provider, billing_currency,
    {{ dbt.concat([
        "'bill in scope '", 'cast(billed_in_scope as ' ~ dbt.type_string() ~ ')',
        "' <> allocated + unattributed '", 'cast(accounted as ' ~ dbt.type_string() ~ ')',
    ]) }} as failure
from compared
where billed_in_scope - accounted >= 0.005 or accounted - billed_in_scope >= 0.005
