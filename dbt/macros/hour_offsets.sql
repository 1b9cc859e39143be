{#- Integers 0 .. 10^digits - 1 from a cross join of ten digits: plain SQL that every
    engine runs (no generate_series / sequence / range, which differ per engine). -#}
{% macro integer_spine(digits) -%}
    {%- set digit_rows -%}
        {%- for d in range(10) %}select {{ d }} as d{% if not loop.last %} union all {% endif %}{% endfor -%}
    {%- endset -%}
    select
        {% for i in range(digits) -%}
            d{{ i }}.d * {{ 10 ** i }}{% if not loop.last %} + {% endif %}
        {%- endfor %} as n
    from
        {% for i in range(digits) -%}
            ({{ digit_rows }}) as d{{ i }}{% if not loop.last %} cross join {% endif %}
        {%- endfor %}
{%- endmacro %}
