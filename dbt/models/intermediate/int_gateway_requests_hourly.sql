-- Gateway requests of the run window summed to the mart grain. Only successful requests
-- carry tokens (and therefore cost); failures are counted. A row can stand for several
-- requests (a usage-API bucket): requests are summed from request_count, not rows counted.

with

requests as (

    select * from {{ ref('stg_lake__gateway_requests') }}
    where {{ in_run_window('partition_date') }}

),

keyed as (

    select
        {{ dbt.date_trunc('hour', 'ts_start') }} as hour_start,
        coalesce(is_self_hosted, false) as is_self_hosted,
        coalesce(provider, 'unknown') as gateway_provider,
        coalesce(model_served, model_requested, 'unknown') as model,
        coalesce(deployment, model_served, model_requested, 'unknown') as deployment,
        coalesce(customer_id, 'unknown') as customer_id,
        coalesce(feature, 'unknown') as feature,
        case when status = 'success' then 1 else 0 end as is_success,
        coalesce(request_count, 1) as request_count,
        coalesce(input_uncached_tokens, 0) as input_uncached_tokens,
        coalesce(cache_read_tokens, 0) as cache_read_tokens,
        coalesce(cache_write_tokens, 0) as cache_write_tokens,
        coalesce(output_tokens, 0) as output_tokens,
        coalesce(reasoning_tokens, 0) as reasoning_tokens
    from requests

)

select
    hour_start,
    cast(hour_start as date) as usage_date,
    is_self_hosted,
    gateway_provider,
    model,
    deployment,
    customer_id,
    feature,
    cast(sum(is_success * request_count) as bigint) as requests,
    cast(sum((1 - is_success) * request_count) as bigint) as failed_requests,
    cast(sum(is_success * input_uncached_tokens) as bigint) as input_uncached_tokens,
    cast(sum(is_success * cache_read_tokens) as bigint) as cache_read_tokens,
    cast(sum(is_success * cache_write_tokens) as bigint) as cache_write_tokens,
    cast(sum(is_success * output_tokens) as bigint) as output_tokens,
    cast(sum(is_success * reasoning_tokens) as bigint) as reasoning_tokens
from keyed
group by hour_start, is_self_hosted, gateway_provider, model, deployment, customer_id, feature
