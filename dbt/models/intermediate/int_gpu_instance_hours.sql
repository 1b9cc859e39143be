-- GPU compute from the bill per instance and hour, with the deployments the fleet inventory
-- gives it (one normally; several on a shared host) or none: an instance-hour nobody claims
-- is unattributed cost. How a shared instance's cost splits is int_gpu_deployment_hours'.

with

gpu_lines as (

    select * from {{ ref('int_in_scope_costs_hourly') }}
    where scope_reason = 'gpu_compute'

),

inventory as (

    select * from {{ ref('stg_lake__fleet_inventory') }}

),

-- Several lines make one instance-hour (CUR: covered usage plus its Savings Plan negation).
instance_hours as (

    select
        hour_start,
        usage_date,
        provider,
        billing_currency,
        resource_id,
        instance_type,
        max(gpu_count) as gpu_count,
        max(region_id) as region_id,
        sum(effective_cost) as effective_cost,
        sum(list_cost) as list_cost,
        sum(committed_list_cost) as committed_list_cost,
        sum(lines_missing_list_cost) as lines_missing_list_cost,
        -- Hours the bill says the instance ran in this hour: a fraction for an instance
        -- started or stopped within it, several for a scale set billed as one resource;
        -- a full hour when no line of it carries a time unit.
        coalesce(sum(consumed_hours), 1) as run_hours
    from gpu_lines
    group by hour_start, usage_date, provider, billing_currency, resource_id, instance_type

),

-- An inventory listing the same resource twice for one hour must not double its cost: the
-- deployments are counted here and the cost split later. Ids compare without case: Azure
-- exports write ARM resource ids in lower case, inventories often do not.
deployment_matches as (

    select
        instance_hours.hour_start,
        instance_hours.provider,
        instance_hours.resource_id,
        min(inventory.deployment) as deployment,
        count(distinct inventory.deployment) as deployment_count
    from instance_hours
    inner join inventory
        on lower(inventory.provider) = lower(instance_hours.provider)
        and lower(inventory.resource_id) = lower(instance_hours.resource_id)
        and (inventory.valid_from is null or inventory.valid_from <= instance_hours.hour_start)
        and (inventory.valid_to is null or instance_hours.hour_start < inventory.valid_to)
    group by instance_hours.hour_start, instance_hours.provider, instance_hours.resource_id

)

select
    instance_hours.*,
    deployment_matches.deployment,
    coalesce(deployment_matches.deployment_count, 0) as deployment_count
from instance_hours
left join deployment_matches
    on instance_hours.hour_start = deployment_matches.hour_start
    and instance_hours.provider = deployment_matches.provider
    and instance_hours.resource_id = deployment_matches.resource_id
