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
    {% if is_incremental() %}
        delete from {{ this }} where {{ in_run_window(date_column) }}
    {% endif %}
{%- endmacro %}
