{% macro money(expression) -%}
    cast({{ expression }} as decimal(38, 12))
{%- endmacro %}

{#- amount x weight / total_weight, back in DECIMAL(38,12).
    The ratio is a double because decimal division is a double on DuckDB and multiplying two
    DECIMAL(38,12) loses scale on Spark; its relative error (~1e-16) stays far below a cent,
    and the result is cast back so the stored money stays decimal. -#}
{% macro allocate(amount, weight, total_weight) -%}
    cast({{ amount }} * (cast({{ weight }} as double) / cast({{ total_weight }} as double)) as decimal(38, 12))
{%- endmacro %}

{#- Money per `per` units (cost per 1M tokens, per request); null when there are no units. -#}
{% macro cost_per(amount, units, per=1) -%}
    case when {{ units }} > 0 then {{ allocate(amount, per, units) }} end
{%- endmacro %}

{#- A plain share (0..1) as a double; null when the whole is zero. -#}
{% macro share_of(part, whole) -%}
    case when {{ whole }} <> 0 then cast({{ part }} as double) / cast({{ whole }} as double) end
{%- endmacro %}
