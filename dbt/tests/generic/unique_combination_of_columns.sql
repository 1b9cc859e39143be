{#- The grain test of a model keyed by several columns (dbt_utils is not available here). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    {%- set columns_csv = combination_of_columns | join(', ') %}
    select {{ columns_csv }}, count(*) as rows_with_this_key
    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1
{% endtest %}
