-- In-scope bill lines spread evenly over the hours of their charge period (CUR lines are
-- hourly already; FOCUS daily lines become 24 hours), keeping only the hours in the run
-- window so a rerun of one window never touches another window's days.

with

lines as (

    select
        billing_line_key,
        provider,
        billing_currency,
        scope_reason,
        region_id,
        resource_id,
        instance_type,
        gpu_count,
        shared_rule_id,
        api_gateway_provider,
        charge_period_start,
        charge_period_hours,
        effective_cost,
        -- Cost at list (on-demand) price, for the effective rate of GPU compute. A Savings
        -- Plan negation only cancels its covered line's on-demand cost: it adds no usage at
        -- list price, so it counts 0 here, as its consumption does in the connector.
        case when charge_type like '%Negation' then {{ money(0) }} else list_cost end as list_cost,
        case
            when charge_type like '%Negation' or commitment_discount_id is null then {{ money(0) }}
            else list_cost
        end as committed_list_cost,
        case when list_cost is null and coalesce(charge_type, '') not like '%Negation' then 1 else 0 end
            as lines_missing_list_cost,
        -- How long the line's resource ran, for GPU-hour rates (null: the line has no time unit).
        {{ usage_hours('consumed_quantity', 'consumed_unit') }} as consumed_hours
    from {{ ref('int_billing_line_items_scoped') }}
    where in_scope

),

hour_offsets as (

    select n from {{ ref('hour_offsets') }}

),

spread as (

    -- Hourly lines (most of a CUR) pass through: exact cost, and no join for them.
    select
        billing_line_key, provider, billing_currency, scope_reason, region_id, resource_id,
        instance_type, gpu_count, shared_rule_id, api_gateway_provider,
        {{ dbt.date_trunc('hour', 'charge_period_start') }} as hour_start,
        effective_cost, list_cost, committed_list_cost, lines_missing_list_cost, consumed_hours
    from lines
    where charge_period_hours = 1

    union all

    select
        lines.billing_line_key, lines.provider, lines.billing_currency, lines.scope_reason,
        lines.region_id, lines.resource_id, lines.instance_type, lines.gpu_count,
        lines.shared_rule_id, lines.api_gateway_provider,
        {{ dbt.date_trunc('hour', dbt.dateadd('hour', 'hour_offsets.n', 'lines.charge_period_start')) }} as hour_start,
        {{ allocate('lines.effective_cost', 1, 'lines.charge_period_hours') }} as effective_cost,
        {{ allocate('lines.list_cost', 1, 'lines.charge_period_hours') }} as list_cost,
        {{ allocate('lines.committed_list_cost', 1, 'lines.charge_period_hours') }} as committed_list_cost,
        lines.lines_missing_list_cost,
        {{ allocate('lines.consumed_hours', 1, 'lines.charge_period_hours') }} as consumed_hours
    from lines
    inner join hour_offsets on hour_offsets.n < lines.charge_period_hours
    where lines.charge_period_hours > 1

)

select
    *,
    cast(hour_start as date) as usage_date
from spread
where hour_start >= {{ window_start_ts() }}
    and hour_start < {{ window_end_ts() }}
