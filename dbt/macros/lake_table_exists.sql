{#- Whether the lake holds any Parquet file of a table. A table another connector writes may
    not exist yet in an older lake (vllm_hourly): its staging view then reads as empty instead
    of failing the build. Only answered at execution; at parse time the source is referenced
    as usual, so lineage and docs always show it. -#}
{% macro lake_table_exists(table_name) -%}
    {{ return(adapter.dispatch('lake_table_exists', 'inferledger')(table_name)) }}
{%- endmacro %}

{#- Engines that read the lake through a catalog (Spark, Trino) have the table registered. -#}
{% macro default__lake_table_exists(table_name) -%}
    {{ return(true) }}
{%- endmacro %}

{% macro duckdb__lake_table_exists(table_name) -%}
    {%- if not execute -%}{{ return(true) }}{%- endif -%}
    {%- set pattern = env_var('INFERLEDGER_LAKE') ~ '/' ~ table_name ~ '/*/*.parquet' -%}
    {%- set found = run_query("select count(*) from glob('" ~ pattern | replace("'", "''") ~ "')") -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}
