with

source as (

    select * from {{ source('lake', 'gateway_requests') }}

),

renamed as (

    select
        request_id,
        source,
        source_file,
        {{ lake_timestamp("ts_start") }} as ts_start,
        {{ lake_timestamp("ts_end") }} as ts_end,
        latency_ms,
        provider,
        model_requested,
        model_served,
        deployment,
        is_self_hosted,
        customer_id,
        team_id,
        project_id,
        api_key_hash,
        user_id,
        feature,
        tags,
        status,
        gateway_cache_hit,
        -- Files written before the column existed read as null: one row, one request.
        cast(coalesce(request_count, 1) as bigint) as request_count,
        cast(input_uncached_tokens as bigint) as input_uncached_tokens,
        cast(cache_read_tokens as bigint) as cache_read_tokens,
        cast(cache_write_tokens as bigint) as cache_write_tokens,
        cast(output_tokens as bigint) as output_tokens,
        cast(reasoning_tokens as bigint) as reasoning_tokens,
        cast(gateway_reported_cost as decimal(38, 12)) as gateway_reported_cost,
        cast({{ adapter.quote('date') }} as date) as partition_date

    from source

)

select * from renamed
