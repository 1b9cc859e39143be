-- One row per deployment, hour, cloud provider and billing currency: the GPU cost it ran
-- on, what it served, the split of the cost into busy and idle, and the token weights its
-- busy cost is shared out by.

with

gpu as (

    select
        hour_start,
        usage_date,
        provider,
        billing_currency,
        deployment,
        sum(claimed_gpus) as gpu_count,
        sum(gpu_cost) as gpu_cost,
        sum(measured_busy_cost) as measured_busy_cost,
        sum(unmeasured_cost) as unmeasured_cost,
        max(case when has_telemetry then 1 else 0 end) = 1 as has_telemetry,
        -- Sums of doubles depend on the order rows arrive in: kept as decimals, so a rerun
        -- reproduces the same figures.
        cast(sum(energy_wh) as decimal(38, 6)) as energy_wh,
        cast(sum(co2e_g) as decimal(38, 6)) as co2e_g
    from {{ ref('int_gpu_deployment_hours') }}
    group by hour_start, usage_date, provider, billing_currency, deployment

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
        -- Cache writes are prefilled like uncached input.
        sum(input_uncached_tokens + cache_write_tokens) as prefill_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(output_tokens) as output_tokens
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

vllm as (

    select
        hour_start,
        deployment as vllm_model_name,
        sum(prefill_seconds) as prefill_seconds,
        sum(decode_seconds) as decode_seconds
    from {{ ref('stg_lake__vllm_hourly') }}
    where {{ in_run_window('partition_date') }}
    group by hour_start, deployment

),

joined as (

    select
        gpu.*,
        coalesce(deployment_models.model, gpu.deployment) as model,
        coalesce(served.requests, 0) as requests,
        coalesce(served.prefill_tokens, 0) as prefill_tokens,
        coalesce(served.cache_read_tokens, 0) as cache_read_tokens,
        coalesce(served.output_tokens, 0) as output_tokens,
        -- vLLM names a deployment by its served model name: the deployment's own name first,
        -- else the model it served.
        coalesce(vllm_by_deployment.prefill_seconds, vllm_by_model.prefill_seconds) as vllm_prefill_seconds,
        coalesce(vllm_by_deployment.decode_seconds, vllm_by_model.decode_seconds) as vllm_decode_seconds,
        -- A deployment on two clouds in one hour: its request counts go on the line of the
        -- costlier one, so counts are never doubled (costs are split on both).
        row_number() over (
            partition by gpu.hour_start, gpu.deployment
            order by gpu.gpu_cost desc, gpu.provider, gpu.billing_currency
        ) = 1 as is_primary_provider
    from gpu
    left join served
        on gpu.hour_start = served.hour_start
        and gpu.deployment = served.deployment
    left join deployment_models
        on gpu.usage_date = deployment_models.usage_date
        and gpu.deployment = deployment_models.deployment
    left join vllm as vllm_by_deployment
        on gpu.hour_start = vllm_by_deployment.hour_start
        and gpu.deployment = vllm_by_deployment.vllm_model_name
    left join vllm as vllm_by_model
        on gpu.hour_start = vllm_by_model.hour_start
        and deployment_models.model = vllm_by_model.vllm_model_name
        and vllm_by_deployment.vllm_model_name is null

),

-- Token weights: GPU seconds per token when vLLM measured them this hour, else the
-- configured defaults. With vLLM, the hour's prefill seconds spread over its prefill tokens
-- (a cached token counting w_cache_read / w_input of one) and its decode seconds over its
-- output tokens, so the busy cost splits between the phases as the engine's time did.
weights as (

    select
        *,
        coalesce(vllm_prefill_seconds, 0) + coalesce(vllm_decode_seconds, 0) > 0 as uses_vllm,
        prefill_tokens + {{ var('w_cache_read') }} / {{ var('w_input') }} * cache_read_tokens as prefill_weighted_tokens
    from joined

),

weighted as (

    select
        *,
        case
            when not uses_vllm then cast({{ var('w_input') }} as double)
            when prefill_weighted_tokens > 0 then coalesce(vllm_prefill_seconds, 0) / prefill_weighted_tokens
            else 0
        end as w_input,
        case
            when not uses_vllm then cast({{ var('w_output') }} as double)
            when output_tokens > 0 then coalesce(vllm_decode_seconds, 0) / output_tokens
            else 0
        end as w_output
    from weights

),

costed as (

    select
        hour_start,
        usage_date,
        provider,
        billing_currency,
        deployment,
        model,
        gpu_count,
        gpu_cost,
        has_telemetry,
        energy_wh,
        co2e_g,
        requests,
        prefill_tokens,
        cache_read_tokens,
        output_tokens,
        vllm_prefill_seconds,
        vllm_decode_seconds,
        case when uses_vllm then 'vllm' else 'default' end as weight_source,
        w_input,
        w_input * {{ var('w_cache_read') }} / {{ var('w_input') }} as w_cache_read,
        w_output,
        w_input * prefill_tokens
            + w_input * {{ var('w_cache_read') }} / {{ var('w_input') }} * cache_read_tokens
            + w_output * output_tokens as weighted_tokens,
        is_primary_provider,
        -- No request served: the whole hour is idle, whatever the GPUs did. Otherwise the
        -- busy share telemetry measured, and GPU time it did not measure counts as busy.
        case when requests = 0 then {{ money(0) }}
            else {{ money('measured_busy_cost + unmeasured_cost') }} end as gpu_busy_cost
    from weighted

)

select
    *,
    case
        when gpu_cost <> 0 then cast(gpu_busy_cost as double) / cast(gpu_cost as double)
        when requests > 0 then 1.0
        else 0.0
    end as busy_fraction,
    -- The remainder, so busy + idle equals the bill exactly.
    gpu_cost - gpu_busy_cost as gpu_idle_cost
from costed
