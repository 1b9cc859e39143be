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

{#- Tokens x a price per 1M tokens, in dollars, as decimal(28,12). Spark keeps few
    decimals of wide decimal arithmetic (the product of a bigint and a decimal(38,12) keeps 6,
    and each sum of two decimal(38,s) loses one more), so every operand is narrowed: tokens
    below 10^14 per row, prices below 10^6 per 1M tokens, amounts below 10^16. DuckDB
    computes the same exactly (its 64-bit path is avoided: one operand is wider than 18). -#}
{% macro token_cost(tokens, usd_per_mtok) -%}
    cast(
        cast({{ tokens }} as decimal(14, 0))
        * cast(cast({{ usd_per_mtok }} as decimal(18, 12)) * 0.000001 as decimal(24, 18))
        as decimal(28, 12)
    )
{%- endmacro %}

{#- An amount in its billing currency, in USD at `usd_per_unit`. Both sides are narrowed
    (amounts below 10^12, rates below 100) so the product keeps its 12 decimals on Spark too,
    where two decimal(38,12) multiply to 6 decimals. -#}
{% macro to_usd(amount, usd_per_unit) -%}
    cast(cast({{ amount }} as decimal(24, 12)) * cast({{ usd_per_unit }} as decimal(14, 12)) as decimal(38, 12))
{%- endmacro %}

{#- The sum of money columns, kept at 12 decimals on Spark too (a chain of decimal(38,12)
    additions loses a decimal per addition there): each addend narrowed to decimal(28,12). -#}
{% macro money_total(columns) -%}
    {%- for column in columns -%}
        cast({{ column }} as decimal(28, 12)){% if not loop.last %} + {% endif %}
    {%- endfor -%}
{%- endmacro %}
