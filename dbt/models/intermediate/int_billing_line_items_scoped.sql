-- Every bill line of the window (plus the lookback) with its scope: what the inference
-- economics allocate (GPU compute, hosted-API tokens, shared platform) and why everything
-- else is left out. The table keeps the columns the economics read and the inputs of the
-- scope (why a line got it), not the whole line: fct_billing_line_items takes the rest
-- from the staging view. Writing every column of a day's million CUR lines into the
-- warehouse cost three times the narrow table's time (6.0 against 2.0 CPU s), on the
-- longest path of the day's build.

with

lines as (

    select * from {{ ref('stg_lake__billing_line_items') }}
    -- Partition pruning; the lookback brings in lines that started before the window but
    -- whose charge period reaches into it (monthly or multi-day lines). A lookback line that
    -- ends by the window start has no hour in the window and no usage_date in it: it is left
    -- out here, so the joins below see the window's lines, not the lookback's days.
    where partition_date >= cast({{ dbt.dateadd('day', -1 * var('billing_lookback_days'), window_start_date()) }} as date)
        and partition_date < {{ window_end_date() }}
        and (partition_date >= {{ window_start_date() }} or charge_period_end > {{ window_start_ts() }})

),

gpu_catalog as (

    select instance_type, gpu_count from {{ ref('gpu_instance_catalog') }}

),

shared_cost_rules as (

    select * from {{ ref('shared_cost_rules') }}

),

hosted_api_rules as (

    select * from {{ ref('hosted_api_billing_rules') }}

),

-- A hosted-API provider's bill: every Usage line of an API provider's own export (OpenAI,
-- Anthropic FOCUS), or the token lines of a cloud's model service (Bedrock in the CUR).
-- The rule names the gateway provider whose requests the line pays for.
hosted_api_matches as (

    select
        lines.billing_line_key,
        min(hosted_api_rules.gateway_provider) as api_gateway_provider
    from lines
    inner join hosted_api_rules
        on lines.provider = hosted_api_rules.bill_provider
        and (hosted_api_rules.service_name is null or lines.service_name = hosted_api_rules.service_name)
        and (
            hosted_api_rules.usage_type_like is null
            or lower(coalesce(lines.usage_type, '')) like hosted_api_rules.usage_type_like
        )
    group by lines.billing_line_key

),

-- A line matching several rules still counts once.
shared_rule_matches as (

    select
        lines.billing_line_key,
        min(shared_cost_rules.rule_id) as shared_rule_id
    from lines
    inner join shared_cost_rules
        on (
            shared_cost_rules.match_type = 'tag'
            and {{ json_text_value('lines.tags', 'shared_cost_rules.tag_key') }} = shared_cost_rules.tag_value
        )
        or (
            shared_cost_rules.match_type = 'service'
            and lines.service_name = shared_cost_rules.service_name
        )
    group by lines.billing_line_key

),

scoped as (

    select
        lines.*,
        cast(lines.charge_period_start as date) as usage_date,
        gpu_catalog.gpu_count,
        shared_rule_matches.shared_rule_id,
        hosted_api_matches.api_gateway_provider,
        case
            -- Tax, credits, purchases (upfront fees) and adjustments are not inference usage.
            when coalesce(lines.charge_category, '') <> 'Usage' then 'not_usage'
            -- Unused commitment is a cost of the commitment, not of any workload.
            when lines.commitment_discount_status = 'Unused' then 'unused_commitment'
            when gpu_catalog.instance_type is not null then 'gpu_compute'
            when hosted_api_matches.api_gateway_provider is not null then 'hosted_api'
            when shared_rule_matches.shared_rule_id is not null then 'shared_platform'
            else 'other_service'
        end as scope_reason,
        -- Hours the line is spread over; lines with no or an empty period count as one hour.
        case
            when lines.charge_period_end is null then 1
            when {{ dbt.datediff('lines.charge_period_start', 'lines.charge_period_end', 'hour') }} < 1 then 1
            else {{ dbt.datediff('lines.charge_period_start', 'lines.charge_period_end', 'hour') }}
        end as charge_period_hours
    from lines
    left join gpu_catalog on lines.instance_type = gpu_catalog.instance_type
    left join shared_rule_matches on lines.billing_line_key = shared_rule_matches.billing_line_key
    left join hosted_api_matches on lines.billing_line_key = hosted_api_matches.billing_line_key

)

select
    billing_line_key,
    provider,
    billing_currency,
    charge_category,
    charge_type,
    commitment_discount_id,
    commitment_discount_status,
    service_name,
    region_id,
    resource_id,
    instance_type,
    charge_period_start,
    charge_period_end,
    consumed_quantity,
    consumed_unit,
    effective_cost,
    list_cost,
    partition_date,
    usage_date,
    gpu_count,
    shared_rule_id,
    api_gateway_provider,
    scope_reason,
    charge_period_hours,
    scope_reason in ('gpu_compute', 'hosted_api', 'shared_platform') as in_scope
from scoped
