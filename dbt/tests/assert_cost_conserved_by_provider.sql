-- Conservation per provider and currency over the whole run window: the reconciliation's
-- in-scope bill = the reconciled lines of fct_inference_costs_hourly + unattributed, to
-- half a cent. Catches what a daily check can miss by tolerance (many days each off by
-- less than half a cent in the same direction). Returns one row per failure.

{{ config(severity='error', tags=['conservation'], meta={'dagster': {'ref': {'name': 'billing_reconciliation_daily'}}}) }}

with

reconciliation as (

    select
        provider,
        billing_currency,
        sum(billed_in_scope) as billed_in_scope,
        sum(unattributed) as unattributed
    from {{ ref('billing_reconciliation_daily') }}
    where {{ in_run_window('usage_date') }}
    group by provider, billing_currency

),

allocated as (

    select
        billing_provider as provider,
        billing_currency,
        sum(total_cost_billing_currency) as allocated_total
    from {{ ref('fct_inference_costs_hourly') }}
    where {{ in_run_window('usage_date') }}
        and is_reconciled
    group by billing_provider, billing_currency

)

select
    reconciliation.provider,
    reconciliation.billing_currency,
    reconciliation.billed_in_scope,
    coalesce(allocated.allocated_total, 0) + reconciliation.unattributed as accounted
from reconciliation
left join allocated
    on reconciliation.provider = allocated.provider
    and reconciliation.billing_currency = allocated.billing_currency
where reconciliation.billed_in_scope - coalesce(allocated.allocated_total, 0) - reconciliation.unattributed >= 0.005
    or coalesce(allocated.allocated_total, 0) + reconciliation.unattributed - reconciliation.billed_in_scope >= 0.005
