{#- A model's required columns, checked in one test: one scan of the model instead of one
    test (and one scan) per column. dbt's own `not_null` made 117 nodes of a daily build of
    ~210, each with its dbt overhead; this makes one per model.

    Fails with one row per column that has nulls (its name and how many), so the failure
    says which column; the failure count is the number of null values in all of them. -#}
{% test not_null_columns(model, columns) %}
    {{ config(fail_calc = 'coalesce(sum(null_rows), 0)') }}
    with null_counts as (
        select
        {%- for column in columns %}
            sum(case when {{ column }} is null then 1 else 0 end) as nulls_{{ loop.index }}{{ ',' if not loop.last }}
        {%- endfor %}
        from {{ model }}
    )
    {%- for column in columns %}
    select '{{ column }}' as column_name, nulls_{{ loop.index }} as null_rows
    from null_counts where nulls_{{ loop.index }} > 0
    {{ 'union all' if not loop.last }}
    {%- endfor %}
{% endtest %}
