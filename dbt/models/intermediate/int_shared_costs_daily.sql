-- Shared platform cost per day, provider and currency, spread over that day's deployments
-- by their share of the provider's deployment GPU cost. With no deployment GPU cost on the
-- provider that day there is nothing to spread it by: it stays unattributed (deployment null).

with

shared as (

    select
        usage_date,
        provider,
        billing_currency,
        sum(effective_cost) as shared_cost
    from {{ ref('int_in_scope_costs_hourly') }}
    where scope_reason = 'shared_platform'
    group by usage_date, provider, billing_currency

),

deployment_gpu_cost as (

    select
        usage_date,
        provider,
        billing_currency,
        deployment,
        sum(gpu_cost) as gpu_cost
    from {{ ref('int_deployment_hours') }}
    group by usage_date, provider, billing_currency, deployment

),

provider_gpu_cost as (

    select
        usage_date,
        provider,
        billing_currency,
        sum(gpu_cost) as gpu_cost
    from deployment_gpu_cost
    group by usage_date, provider, billing_currency
    having sum(gpu_cost) > 0

),

allocated as (

    select
        shared.usage_date,
        shared.provider,
        shared.billing_currency,
        deployment_gpu_cost.deployment,
        {{ allocate('shared.shared_cost', 'deployment_gpu_cost.gpu_cost', 'provider_gpu_cost.gpu_cost') }} as shared_cost
    from shared
    inner join provider_gpu_cost
        on shared.usage_date = provider_gpu_cost.usage_date
        and shared.provider = provider_gpu_cost.provider
        and shared.billing_currency = provider_gpu_cost.billing_currency
    inner join deployment_gpu_cost
        on shared.usage_date = deployment_gpu_cost.usage_date
        and shared.provider = deployment_gpu_cost.provider
        and shared.billing_currency = deployment_gpu_cost.billing_currency

),

unattributed as (

    select
        shared.usage_date,
        shared.provider,
        shared.billing_currency,
        cast(null as {{ dbt.type_string() }}) as deployment,
        shared.shared_cost
    from shared
    left join provider_gpu_cost
        on shared.usage_date = provider_gpu_cost.usage_date
        and shared.provider = provider_gpu_cost.provider
        and shared.billing_currency = provider_gpu_cost.billing_currency
    where provider_gpu_cost.usage_date is null

)

select * from allocated
union all
select * from unattributed
