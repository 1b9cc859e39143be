-- vLLM's own counters per deployment and hour. The table is written by the vLLM metrics
-- reader; a lake without it (no vLLM scrapes landed yet) reads as no rows, and allocation
-- falls back to the configured token weights.

{% if lake_table_exists('vllm_hourly') %}

with

source as (

    select * from {{ source('lake', 'vllm_hourly') }}

),

renamed as (

    select
        {{ lake_timestamp("hour_start") }} as hour_start,
        deployment,
        cast(replicas as bigint) as replicas,
        cast(prompt_tokens as bigint) as prompt_tokens,
        cast(generation_tokens as bigint) as generation_tokens,
        cast(requests as bigint) as requests,
        cast(prefill_seconds as double) as prefill_seconds,
        cast(decode_seconds as double) as decode_seconds,
        cast(counter_resets as bigint) as counter_resets,
        cast({{ adapter.quote('date') }} as date) as partition_date

    from source

)

select * from renamed

{% else %}

select
    cast(null as timestamp) as hour_start,
    cast(null as {{ dbt.type_string() }}) as deployment,
    cast(null as bigint) as replicas,
    cast(null as bigint) as prompt_tokens,
    cast(null as bigint) as generation_tokens,
    cast(null as bigint) as requests,
    cast(null as double) as prefill_seconds,
    cast(null as double) as decode_seconds,
    cast(null as bigint) as counter_resets,
    cast(null as date) as partition_date
where 1 = 0

{% endif %}
