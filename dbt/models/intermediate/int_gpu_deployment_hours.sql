-- Each attributed GPU instance-hour's cost split over the deployments that used it.
--
-- With telemetry, every GPU of the instance that reports costs C / m (m = GPUs reporting; a
-- GPU that does not report is assumed to look like those that do). A deployment is charged
-- for the share of those GPUs its slices hold: a whole GPU is 1, a MIG slice its fraction
-- (3g.40gb = 3/7). What no deployment holds (MIG slices not created or not claimed) is the
-- rest of the GPU: idle, carried by the instance's deployments in proportion to their share.
-- So a deployment's cost is C x claimed / all claimed, of which C x busy share / m was busy
-- by telemetry. Without telemetry the instance's deployments share it equally, busy unknown.

with

instance_hours as (

    select * from {{ ref('int_gpu_instance_hours') }}
    where deployment is not null

),

slices as (

    select * from {{ ref('int_gpu_slices_hourly') }}
    where resource_id is not null

),

inventory as (

    select * from {{ ref('stg_lake__fleet_inventory') }}

),

grid as (

    select * from {{ ref('grid_carbon_intensity') }}

),

-- DCGM reports power and energy per physical GPU; MIG rows repeat the device's reading,
-- so a GPU's energy is taken once.
gpu_energy as (

    select
        hour_start,
        lower(provider) as provider_key,
        lower(resource_id) as resource_key,
        gpu_key,
        max(energy_wh) as energy_wh
    from slices
    group by hour_start, lower(provider), lower(resource_id), gpu_key

),

instance_telemetry as (

    select
        hour_start,
        provider_key,
        resource_key,
        count(*) as gpus_reporting,
        -- Summed as decimals: a sum of doubles depends on the order rows arrive in, and a
        -- rerun must reproduce the same figures.
        cast(sum(cast(energy_wh as decimal(38, 9))) as double) as energy_wh
    from gpu_energy
    group by hour_start, provider_key, resource_key

),

claims as (

    select
        hour_start,
        lower(provider) as provider_key,
        lower(resource_id) as resource_key,
        deployment,
        sum(gpu_fraction) as claimed_gpus,
        sum(case when busy_fraction is not null
            then gpu_fraction * least(greatest(busy_fraction, 0), 1) end) as busy_gpus,
        sum(case when busy_fraction is not null then gpu_fraction else 0 end) as measured_gpus
    from slices
    where deployment is not null and gpu_fraction > 0
    group by hour_start, lower(provider), lower(resource_id), deployment

),

claim_totals as (

    select hour_start, provider_key, resource_key, sum(claimed_gpus) as claimed_total
    from claims
    group by hour_start, provider_key, resource_key

),

with_telemetry as (

    select
        instance_hours.hour_start,
        instance_hours.usage_date,
        instance_hours.provider,
        instance_hours.billing_currency,
        instance_hours.resource_id,
        instance_hours.instance_type,
        instance_hours.region_id,
        claims.deployment,
        cast(claims.claimed_gpus as double) as claimed_gpus,
        true as has_telemetry,
        {{ allocate('instance_hours.effective_cost', 'claims.claimed_gpus', 'claim_totals.claimed_total') }} as gpu_cost,
        -- Over-claimed GPUs (fractions summing above the GPUs reporting) scale down, never up.
        {{ allocate(
            'instance_hours.effective_cost',
            'coalesce(claims.busy_gpus, 0)',
            'case when claim_totals.claimed_total > instance_telemetry.gpus_reporting'
            ~ ' then claim_totals.claimed_total else instance_telemetry.gpus_reporting end'
        ) }} as measured_busy_cost,
        {{ allocate(
            'instance_hours.effective_cost',
            'claims.claimed_gpus - claims.measured_gpus',
            'case when claim_totals.claimed_total > instance_telemetry.gpus_reporting'
            ~ ' then claim_totals.claimed_total else instance_telemetry.gpus_reporting end'
        ) }} as unmeasured_cost,
        instance_telemetry.energy_wh * claims.claimed_gpus / claim_totals.claimed_total as energy_wh
    from instance_hours
    inner join claims
        on instance_hours.hour_start = claims.hour_start
        and lower(instance_hours.provider) = claims.provider_key
        and lower(instance_hours.resource_id) = claims.resource_key
    inner join claim_totals
        on claims.hour_start = claim_totals.hour_start
        and claims.provider_key = claim_totals.provider_key
        and claims.resource_key = claim_totals.resource_key
    inner join instance_telemetry
        on claims.hour_start = instance_telemetry.hour_start
        and claims.provider_key = instance_telemetry.provider_key
        and claims.resource_key = instance_telemetry.resource_key

),

-- No slice of the instance claimed this hour: its inventory deployments share it equally.
without_telemetry as (

    select
        instance_hours.hour_start,
        instance_hours.usage_date,
        instance_hours.provider,
        instance_hours.billing_currency,
        instance_hours.resource_id,
        instance_hours.instance_type,
        instance_hours.region_id,
        inventory_deployments.deployment,
        cast(instance_hours.gpu_count as double) / instance_hours.deployment_count as claimed_gpus,
        false as has_telemetry,
        {{ allocate('instance_hours.effective_cost', 1, 'instance_hours.deployment_count') }} as gpu_cost,
        {{ money(0) }} as measured_busy_cost,
        {{ allocate('instance_hours.effective_cost', 1, 'instance_hours.deployment_count') }} as unmeasured_cost,
        cast(null as double) as energy_wh
    from instance_hours
    inner join (
        select distinct
            instance_hours.hour_start,
            instance_hours.provider,
            instance_hours.resource_id,
            inventory.deployment
        from instance_hours
        inner join inventory
            on lower(inventory.provider) = lower(instance_hours.provider)
            and lower(inventory.resource_id) = lower(instance_hours.resource_id)
            and (inventory.valid_from is null or inventory.valid_from <= instance_hours.hour_start)
            and (inventory.valid_to is null or instance_hours.hour_start < inventory.valid_to)
    ) as inventory_deployments
        on instance_hours.hour_start = inventory_deployments.hour_start
        and instance_hours.provider = inventory_deployments.provider
        and instance_hours.resource_id = inventory_deployments.resource_id
    left join claim_totals
        on instance_hours.hour_start = claim_totals.hour_start
        and lower(instance_hours.provider) = claim_totals.provider_key
        and lower(instance_hours.resource_id) = claim_totals.resource_key
    where claim_totals.hour_start is null

),

split as (

    select * from with_telemetry
    union all
    select * from without_telemetry

)

-- Energy and CO2e as decimals to the micro-unit: sums of doubles depend on the order rows
-- arrive in, and a rerun must reproduce the same figures.
select
    split.hour_start,
    split.usage_date,
    split.provider,
    split.billing_currency,
    split.resource_id,
    split.instance_type,
    split.region_id,
    split.deployment,
    split.claimed_gpus,
    split.has_telemetry,
    split.gpu_cost,
    split.measured_busy_cost,
    split.unmeasured_cost,
    cast(split.energy_wh as decimal(38, 6)) as energy_wh,
    grid.gco2e_per_kwh,
    -- Grams: Wh x g/kWh / 1000. Null when the region has no intensity in the seed.
    cast(split.energy_wh * grid.gco2e_per_kwh / 1000 as decimal(38, 6)) as co2e_g
from split
left join grid
    on lower(split.provider) = lower(grid.provider)
    and split.region_id = grid.region_id
