{{ config(
    unique_key='usage_date',
    pre_hook="{{ delete_run_window('usage_date') }}",
) }}

-- Every bill line, in scope or not, so the bill's total is always reproducible from the marts:
-- the line as the lake holds it, with the scope int_billing_line_items_scoped gave it.

with

scoped as (

    select billing_line_key, usage_date, in_scope, scope_reason, shared_rule_id, api_gateway_provider
    from {{ ref('int_billing_line_items_scoped') }}
    where {{ in_run_window('usage_date') }}

),

lines as (

    -- The window's lines start inside it: their partitions are the window's days.
    select * from {{ ref('stg_lake__billing_line_items') }}
    where {{ in_run_window('partition_date') }}

)

select
    lines.billing_line_key,
    lines.source,
    lines.source_file,
    lines.source_line_id,
    lines.provider,
    lines.publisher,
    lines.invoice_issuer,
    lines.billing_account_id,
    lines.sub_account_id,
    lines.billing_period_start,
    lines.charge_period_start,
    lines.charge_period_end,
    lines.charge_category,
    lines.charge_class,
    lines.charge_frequency,
    lines.charge_type,
    lines.pricing_category,
    lines.service_name,
    lines.service_category,
    lines.region_id,
    lines.resource_id,
    lines.resource_name,
    lines.resource_type,
    lines.instance_type,
    lines.sku_id,
    lines.usage_type,
    lines.consumed_quantity,
    lines.consumed_unit,
    lines.pricing_quantity,
    lines.pricing_unit,
    lines.commitment_discount_id,
    lines.commitment_discount_status,
    lines.billed_cost,
    lines.effective_cost,
    lines.list_cost,
    lines.contracted_cost,
    lines.billing_currency,
    lines.tags,
    lines.export_version,
    scoped.usage_date,
    scoped.in_scope,
    scoped.scope_reason,
    scoped.shared_rule_id,
    scoped.api_gateway_provider
from scoped
inner join lines on lines.billing_line_key = scoped.billing_line_key
