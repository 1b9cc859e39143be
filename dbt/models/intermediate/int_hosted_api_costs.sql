-- Hosted-API requests priced at list price: tokens x the effective-dated price of their
-- provider and model. A model with no price gets a null cost and counts as unpriced, so a
-- missing price shows up instead of reading as free. The true-up to the provider's bill is
-- int_hosted_api_bills_daily's and int_hosted_api_costs_billed's.

with

requests as (

    select * from {{ ref('int_gateway_requests_hourly') }}
    where not is_self_hosted

),

prices as (

    select * from {{ ref('api_prices') }}
    -- Gateway logs carry no service tier (batch, flex, priority): list price it is.
    where service_tier = 'standard'

),

models_by_day as (

    select distinct usage_date, gateway_provider, model from requests

),

-- An exact name, or a dated snapshot of a listed model (gpt-4o-2024-08-06,
-- claude-sonnet-4-5-20250929); the longest listed name wins, so gpt-4o-mini-2024-07-18
-- is priced as gpt-4o-mini and not as gpt-4o.
price_candidates as (

    select
        models_by_day.usage_date,
        models_by_day.gateway_provider,
        models_by_day.model,
        prices.usd_per_mtok_input,
        coalesce(prices.usd_per_mtok_cache_read, prices.usd_per_mtok_input) as usd_per_mtok_cache_read,
        coalesce(prices.usd_per_mtok_cache_write, prices.usd_per_mtok_input) as usd_per_mtok_cache_write,
        prices.usd_per_mtok_output,
        row_number() over (
            partition by models_by_day.usage_date, models_by_day.gateway_provider, models_by_day.model
            order by {{ dbt.length('prices.model') }} desc, prices.effective_from desc
        ) as match_rank
    from models_by_day
    inner join prices
        on models_by_day.gateway_provider = prices.provider
        and (
            models_by_day.model = prices.model
            or models_by_day.model like {{ dbt.concat(['prices.model', "'-20%'"]) }}
        )
        and prices.effective_from <= models_by_day.usage_date
        and (prices.effective_to is null or models_by_day.usage_date < prices.effective_to)

),

model_prices as (

    select * from price_candidates where match_rank = 1

),

priced as (

    select
        requests.*,
        model_prices.usd_per_mtok_output is not null as is_priced,
        {{ token_cost('requests.input_uncached_tokens', 'model_prices.usd_per_mtok_input') }}
            + {{ token_cost('requests.cache_read_tokens', 'model_prices.usd_per_mtok_cache_read') }}
            + {{ token_cost('requests.cache_write_tokens', 'model_prices.usd_per_mtok_cache_write') }}
            + {{ token_cost('requests.output_tokens', 'model_prices.usd_per_mtok_output') }} as api_cost,
        {{ token_cost('requests.output_tokens', 'model_prices.usd_per_mtok_output') }} as api_output_cost,
        -- Cache reads at the input price they avoided, less the premium paid for cache writes.
        {{ token_cost('requests.cache_read_tokens', 'model_prices.usd_per_mtok_input - model_prices.usd_per_mtok_cache_read') }}
            - {{ token_cost('requests.cache_write_tokens', 'model_prices.usd_per_mtok_cache_write - model_prices.usd_per_mtok_input') }}
            as cache_savings
    from requests
    left join model_prices
        on requests.usage_date = model_prices.usage_date
        and requests.gateway_provider = model_prices.gateway_provider
        and requests.model = model_prices.model

),

bill_providers as (

    select gateway_provider, min(bill_provider) as billing_provider
    from {{ ref('hosted_api_billing_rules') }}
    group by gateway_provider

)

select
    priced.hour_start,
    priced.usage_date,
    priced.gateway_provider as provider,
    -- Whose bill would carry the cost (OpenAI, Anthropic, AWS for Bedrock); null when no
    -- billing rule names the gateway provider.
    bill_providers.billing_provider,
    -- List prices are in USD.
    'USD' as list_currency,
    model,
    deployment,
    customer_id,
    feature,
    requests,
    failed_requests,
    case when is_priced then cast(0 as bigint) else requests end as unpriced_requests,
    input_uncached_tokens,
    cache_read_tokens,
    cache_write_tokens,
    output_tokens,
    reasoning_tokens,
    {{ money('api_cost') }} as api_cost,
    {{ money('api_output_cost') }} as api_output_cost,
    {{ money('cache_savings') }} as cache_savings
from priced
left join bill_providers on priced.gateway_provider = bill_providers.gateway_provider
