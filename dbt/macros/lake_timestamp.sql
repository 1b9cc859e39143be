{#- A lake instant (Parquet timestamp adjusted to UTC) as the warehouse's plain UTC timestamp.
    Engine-specific, so dispatched. -#}
{% macro lake_timestamp(column) -%}
    {{ return(adapter.dispatch('lake_timestamp', 'inferledger')(column)) }}
{%- endmacro %}

{% macro default__lake_timestamp(column) -%}
    cast({{ column }} as timestamp)
{%- endmacro %}

{#- DuckDB casts TIMESTAMPTZ to TIMESTAMP through ICU's calendar, row by row: 1.25 CPU s
    for a day of 10 M requests, paid by every query that reads the column through a staging
    view. The instant's microseconds since the epoch are already the UTC wall clock, so the
    same value comes from integer arithmetic (0.2 s), whatever the session's TimeZone. -#}
{% macro duckdb__lake_timestamp(column) -%}
    make_timestamp(epoch_us({{ column }}))
{%- endmacro %}
