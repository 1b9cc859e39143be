{#- The text value of a key in a JSON object held as text; the key may be a column.
    Engine-specific, so dispatched. -#}
{% macro json_text_value(json_column, key_expression) -%}
    {{ return(adapter.dispatch('json_text_value', 'inferledger')(json_column, key_expression)) }}
{%- endmacro %}

{% macro default__json_text_value(json_column, key_expression) -%}
    json_extract_scalar({{ json_column }}, {{ dbt.concat(["'$.\"'", key_expression, "'\"'"]) }})
{%- endmacro %}

{#- Malformed tag text must not stop the build (DuckDB raises on it): it matches nothing. -#}
{% macro duckdb__json_text_value(json_column, key_expression) -%}
    json_extract_string(
        case when json_valid({{ json_column }}) then {{ json_column }} end,
        {{ dbt.concat(["'$.\"'", key_expression, "'\"'"]) }}
    )
{%- endmacro %}

{% macro spark__json_text_value(json_column, key_expression) -%}
    get_json_object({{ json_column }}, {{ dbt.concat(["'$.'", key_expression]) }})
{%- endmacro %}
