-- The FX table the marts convert with: lake/fx_rates, which the ingestion writes as the
-- fx_rates seed overridden by the fx/*.csv files in the landing store (treasury rates),
-- the same table billing ingestion checks each row's currency against. A lake without it
-- (written before the table existed, or built by hand) converts with the seed alone.
-- depends_on: {{ ref('fx_rates') }}

{% if lake_table_exists('fx_rates') %}

with

source as (

    select * from {{ source('lake', 'fx_rates') }}

),

renamed as (

    select
        cast(rate_date as date) as rate_date,
        currency,
        {{ money('usd_per_unit') }} as usd_per_unit,
        source as rate_source

    from source

)

select * from renamed

{% else %}

select
    cast({{ adapter.quote('date') }} as date) as rate_date,
    currency,
    {{ money('usd_per_unit') }} as usd_per_unit,
    'seed' as rate_source
from {{ ref('fx_rates') }}

{% endif %}
