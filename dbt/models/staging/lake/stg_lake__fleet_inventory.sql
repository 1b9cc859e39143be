with

source as (

    select * from {{ source('lake', 'fleet_inventory') }}

),

renamed as (

    select
        hostname,
        provider,
        resource_id,
        deployment,
        {{ lake_timestamp("valid_from") }} as valid_from,
        {{ lake_timestamp("valid_to") }} as valid_to,
        cast({{ adapter.quote('date') }} as date) as partition_date

    from source

),

-- Each run writes the whole current inventory as one partition: the newest partition
-- that has rows is the inventory (older ones are superseded snapshots, not history).
latest as (

    select max(partition_date) as partition_date from renamed

)

select renamed.*
from renamed
inner join latest on renamed.partition_date = latest.partition_date
