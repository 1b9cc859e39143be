with

source as (

    select * from {{ source('lake', 'gpu_hourly') }}

),

renamed as (

    select
        {{ lake_timestamp("hour_start") }} as hour_start,
        hostname,
        gpu_uuid,
        gpu_index,
        gpu_model,
        mig_profile,
        mig_instance_id,
        cast(gpu_fraction as double) as gpu_fraction,
        k8s_namespace,
        k8s_pod,
        samples,
        gpu_util_pct_avg,
        cast(busy_fraction as double) as busy_fraction,
        power_w_avg,
        cast(energy_wh as double) as energy_wh,
        fb_used_mib_avg,
        cast({{ adapter.quote('date') }} as date) as partition_date

    from source

)

select * from renamed
