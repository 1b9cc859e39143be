{#- The USD rate of each (usage_date, billing_currency) of `keys` (a CTE or relation with
    those two columns): the charge day's rate, else the latest earlier one. Rows without a
    rate are absent; USD is always 1. -#}
{% macro fx_usd_per_unit(keys) -%}
    select usage_date, billing_currency, usd_per_unit
    from (
        select
            keys.usage_date,
            keys.billing_currency,
            fx_rates.usd_per_unit,
            row_number() over (
                partition by keys.usage_date, keys.billing_currency
                order by fx_rates.rate_date desc
            ) as recency
        from {{ keys }} as keys
        inner join {{ ref('stg_lake__fx_rates') }} as fx_rates
            on fx_rates.currency = keys.billing_currency
            and fx_rates.rate_date <= keys.usage_date
        where keys.billing_currency <> 'USD'
    ) as candidates
    where recency = 1
    union all
    select distinct usage_date, billing_currency, {{ money(1) }} as usd_per_unit
    from {{ keys }} as keys
    where billing_currency = 'USD'
{%- endmacro %}
