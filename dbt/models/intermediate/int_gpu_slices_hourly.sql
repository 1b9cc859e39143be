-- GPU telemetry per GPU or MIG slice and hour, with the cloud resource its host is (fleet
-- inventory) and the deployment the slice works for. A host serving one deployment gives
-- it all its GPUs; on a host the inventory shares between deployments, a slice belongs to
-- the deployment its Kubernetes labels name (pod name starting with the deployment name, or
-- a namespace of that name; the longest matching name wins), else to none (unclaimed).

with

gpu_hourly as (

    select * from {{ ref('stg_lake__gpu_hourly') }}
    where {{ in_run_window('partition_date') }}

),

inventory as (

    select * from {{ ref('stg_lake__fleet_inventory') }}

),

slices as (

    select
        gpu_hourly.*,
        -- The physical GPU a row is on: MIG slices of one GPU share its UUID.
        coalesce(
            gpu_hourly.gpu_uuid,
            cast(gpu_hourly.gpu_index as {{ dbt.type_string() }}),
            'gpu'
        ) as gpu_key,
        -- A GPU in MIG mode may also report a row of its own (device-level fields, no
        -- profile): that row carries energy but is not a slice anyone works on.
        max(case when gpu_hourly.mig_profile is not null then 1 else 0 end) over (
            partition by gpu_hourly.hour_start, gpu_hourly.hostname,
                coalesce(gpu_hourly.gpu_uuid, cast(gpu_hourly.gpu_index as {{ dbt.type_string() }}), 'gpu')
        ) = 1 as is_mig_gpu,
        -- A slice's own key on its GPU (a whole GPU has none), never null so it joins plainly.
        coalesce(gpu_hourly.mig_instance_id, '-') as slice_key
    from gpu_hourly

),

-- Every inventory deployment of the slice's host, valid at the hour.
host_deployments as (

    select
        slices.hour_start,
        slices.hostname,
        slices.gpu_key,
        slices.slice_key,
        inventory.provider,
        inventory.resource_id,
        inventory.deployment,
        case
            when slices.k8s_pod like {{ dbt.concat(['inventory.deployment', "'%'"]) }} then true
            when slices.k8s_namespace = inventory.deployment then true
            else false
        end as labels_match
    from slices
    inner join inventory
        on slices.hostname = inventory.hostname
        and (inventory.valid_from is null or inventory.valid_from <= slices.hour_start)
        and (inventory.valid_to is null or slices.hour_start < inventory.valid_to)

),

-- Counted apart (not as a distinct window count, which not every engine has).
host_deployment_counts as (

    select
        hour_start,
        hostname,
        gpu_key,
        slice_key,
        count(distinct deployment) as host_deployment_count
    from host_deployments
    group by hour_start, hostname, gpu_key, slice_key

),

claims as (

    select
        host_deployments.hour_start,
        host_deployments.hostname,
        host_deployments.gpu_key,
        host_deployments.slice_key,
        host_deployments.provider,
        host_deployments.resource_id,
        case when host_deployment_counts.host_deployment_count = 1 or host_deployments.labels_match
            then host_deployments.deployment end as deployment,
        row_number() over (
            partition by host_deployments.hour_start, host_deployments.hostname,
                host_deployments.gpu_key, host_deployments.slice_key
            order by
                case when host_deployment_counts.host_deployment_count = 1
                    or host_deployments.labels_match then 0 else 1 end,
                {{ dbt.length('host_deployments.deployment') }} desc,
                host_deployments.deployment
        ) as claim_rank
    from host_deployments
    inner join host_deployment_counts
        on host_deployments.hour_start = host_deployment_counts.hour_start
        and host_deployments.hostname = host_deployment_counts.hostname
        and host_deployments.gpu_key = host_deployment_counts.gpu_key
        and host_deployments.slice_key = host_deployment_counts.slice_key

)

select
    slices.hour_start,
    cast(slices.hour_start as date) as usage_date,
    slices.hostname,
    claims.provider,
    claims.resource_id,
    slices.gpu_key,
    slices.gpu_model,
    slices.mig_profile,
    slices.mig_instance_id,
    slices.k8s_namespace,
    slices.k8s_pod,
    claims.deployment,
    slices.is_mig_gpu and slices.mig_profile is null as is_device_row,
    -- Share of the physical GPU the row holds. A MIG GPU's device row holds none; a profile
    -- the reader could not size holds none either, so its share stays with the GPU's idle
    -- remainder instead of being guessed.
    case
        when slices.is_mig_gpu and slices.mig_profile is null then 0
        when slices.mig_profile is null then coalesce(slices.gpu_fraction, 1)
        else coalesce(slices.gpu_fraction, 0)
    end as gpu_fraction,
    slices.busy_fraction,
    slices.energy_wh
from slices
left join claims
    on slices.hour_start = claims.hour_start
    and slices.hostname = claims.hostname
    and slices.gpu_key = claims.gpu_key
    and slices.slice_key = claims.slice_key
    and claims.claim_rank = 1
