{#- The run window, half-open [min_date, max_date), as the only way a date range reaches SQL. -#}

{% macro window_start_date() -%}
    cast('{{ var("min_date") }}' as date)
{%- endmacro %}

{% macro window_end_date() -%}
    cast('{{ var("max_date") }}' as date)
{%- endmacro %}

{% macro window_start_ts() -%}
    cast('{{ var("min_date") }} 00:00:00' as timestamp)
{%- endmacro %}

{% macro window_end_ts() -%}
    cast('{{ var("max_date") }} 00:00:00' as timestamp)
{%- endmacro %}

{% macro in_run_window(date_column) -%}
    ({{ date_column }} >= {{ window_start_date() }} and {{ date_column }} < {{ window_end_date() }})
{%- endmacro %}

{#- Pre-hook of the incremental marts: empty the window first, so a day that lost all its
    rows in a rerun (a restated bill) is emptied too, which delete+insert alone would miss. -#}
{% macro delete_run_window(date_column) -%}
    {{ return(adapter.dispatch('delete_run_window', 'inferledger')(date_column)) }}
{%- endmacro %}

{% macro default__delete_run_window(date_column) -%}
    {% if is_incremental() %}
        delete from {{ this }} where {{ in_run_window(date_column) }}
    {% endif %}
{%- endmacro %}

{#- Spark's Parquet tables take no DELETE: the mart is partitioned by its date column, so the
    window's day partitions are dropped instead (insert_overwrite then writes the days that
    have rows). A window wider than `max_dropped_days` (the unbounded default of a full
    build) drops nothing: rebuild everything with --full-refresh. -#}
{% macro spark__delete_run_window(date_column, max_dropped_days=400) -%}
    {%- if is_incremental() -%}
        {%- set first = modules.datetime.date.fromisoformat(var('min_date')) -%}
        {%- set last = modules.datetime.date.fromisoformat(var('max_date')) -%}
        {%- set days = (last - first).days -%}
        {%- if 0 < days <= max_dropped_days -%}
            {%- set partitions = [] -%}
            {%- for offset in range(days) -%}
                {%- set day = first + modules.datetime.timedelta(days=offset) -%}
                {%- do partitions.append("partition (" ~ date_column ~ " = date'" ~ day.isoformat() ~ "')") -%}
            {%- endfor -%}
            alter table {{ this }} drop if exists {{ partitions | join(', ') }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
