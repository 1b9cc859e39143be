-- One row per deployment, hour, cloud provider and billing currency: the GPU cost it ran
-- on, how busy its GPUs were, what it served, and the split of the cost into busy and idle.

with

gpu_cost as (

    select
        hour_start,
        usage_date,
        provider,
        billing_currency,
        deployment,
        sum(gpu_count) as gpu_count,
        sum(effective_cost) as gpu_cost
    from {{ ref('int_gpu_instance_hours') }}
    where deployment is not null
    group by hour_start, usage_date, provider, billing_currency, deployment

),

inventory as (

    select * from {{ ref('stg_lake__fleet_inventory') }}

),

gpu_hourly as (

    select * from {{ ref('stg_lake__gpu_hourly') }}
    where {{ in_run_window('partition_date') }}

),

-- Busy fraction of the deployment's GPUs, a MIG slice counting by its share of a GPU.
-- Sums of doubles depend on the order rows arrive in: the fraction is rounded to 1e-9 and
-- energy kept as a decimal, so a rerun reproduces the same costs.
telemetry as (

    select
        gpu_hourly.hour_start,
        inventory.provider,
        inventory.deployment,
        round(
            sum(case when gpu_hourly.busy_fraction is not null
                then gpu_hourly.busy_fraction * coalesce(gpu_hourly.gpu_fraction, 1) end)
            / nullif(sum(case when gpu_hourly.busy_fraction is not null
                then coalesce(gpu_hourly.gpu_fraction, 1) end), 0),
            9
        ) as busy_fraction,
        cast(sum(gpu_hourly.energy_wh) as decimal(38, 6)) as energy_wh
    from gpu_hourly
    inner join inventory
        on gpu_hourly.hostname = inventory.hostname
        and (inventory.valid_from is null or inventory.valid_from <= gpu_hourly.hour_start)
        and (inventory.valid_to is null or gpu_hourly.hour_start < inventory.valid_to)
    group by gpu_hourly.hour_start, inventory.provider, inventory.deployment

),

self_hosted_requests as (

    select * from {{ ref('int_gateway_requests_hourly') }}
    where is_self_hosted

),

served as (

    select
        hour_start,
        deployment,
        sum(requests) as requests,
        sum(weighted_tokens) as weighted_tokens
    from self_hosted_requests
    group by hour_start, deployment

),

-- The model an idle line is reported under: what the deployment served that day (by day,
-- so the answer does not depend on how wide the run window is).
deployment_models as (

    select usage_date, deployment, max(model) as model
    from self_hosted_requests
    group by usage_date, deployment

),

joined as (

    select
        gpu_cost.*,
        coalesce(deployment_models.model, gpu_cost.deployment) as model,
        telemetry.busy_fraction as telemetry_busy_fraction,
        telemetry.energy_wh,
        coalesce(served.requests, 0) as requests,
        coalesce(served.weighted_tokens, 0) as weighted_tokens,
        case
            -- No request served: the whole hour is idle, whatever the GPUs did.
            when coalesce(served.requests, 0) = 0 then 0
            -- Served requests but no telemetry: count the hour as fully busy.
            when telemetry.busy_fraction is null then 1
            else least(greatest(telemetry.busy_fraction, 0), 1)
        end as busy_fraction,
        -- A deployment on two clouds in one hour: its request counts go on the line of the
        -- costlier one, so counts are never doubled (costs are split on both).
        row_number() over (
            partition by gpu_cost.hour_start, gpu_cost.deployment
            order by gpu_cost.gpu_cost desc, gpu_cost.provider, gpu_cost.billing_currency
        ) = 1 as is_primary_provider
    from gpu_cost
    left join telemetry
        on gpu_cost.hour_start = telemetry.hour_start
        and lower(gpu_cost.provider) = lower(telemetry.provider)
        and gpu_cost.deployment = telemetry.deployment
    left join served
        on gpu_cost.hour_start = served.hour_start
        and gpu_cost.deployment = served.deployment
    left join deployment_models
        on gpu_cost.usage_date = deployment_models.usage_date
        and gpu_cost.deployment = deployment_models.deployment

),

costed as (

    select
        *,
        {{ allocate('gpu_cost', 'busy_fraction', 1) }} as gpu_busy_cost
    from joined

)

select
    *,
    -- The remainder, not C x (1 - b), so busy + idle equals the bill exactly.
    gpu_cost - gpu_busy_cost as gpu_idle_cost
from costed
