{#- Make the lake's tables a staging model reads readable as `lake.<table>` (its pre-hook).
    DuckDB reads the Parquet files straight through each source's `external_location`, so
    there is nothing to do. Spark reads through its catalog: each lake table is (re)declared
    as an external Parquet table over its folder and its day partitions are recovered, so
    days written since the last run are seen. A table with `columns` declared in the sources
    file (an optional one, whose folder may not exist yet) gets that schema and reads as
    empty until data lands; the others take their schema from the files (merged across
    days, as DuckDB's union_by_name does). On a shared catalog (Databricks Unity, Glue) the
    tables can be registered once instead and this macro left to re-recover partitions. -#}
{% macro register_lake_tables(depends_on_nodes) -%}
    {{ return(adapter.dispatch('register_lake_tables', 'inferledger')(depends_on_nodes)) }}
{%- endmacro %}

{% macro default__register_lake_tables(depends_on_nodes) -%}
    {{ return('') }}
{%- endmacro %}

{% macro spark__register_lake_tables(depends_on_nodes) -%}
    {%- if execute -%}
        {%- set lake = env_var('INFERLEDGER_LAKE') -%}
        {%- do run_query('create schema if not exists lake') -%}
        {%- for node_id in depends_on_nodes if node_id in graph.sources -%}
            {%- set node = graph.sources[node_id] -%}
            {%- set relation = 'lake.' ~ node.name -%}
            {%- set location = lake ~ '/' ~ node.name -%}
            {%- do run_query('drop table if exists ' ~ relation) -%}
            {%- if node.columns -%}
                {%- set column_list = [] -%}
                {%- for column in node.columns.values() -%}
                    {%- do column_list.append(column.name ~ ' ' ~ column.data_type) -%}
                {%- endfor -%}
                {%- do run_query(
                    'create table ' ~ relation ~ ' (' ~ column_list | join(', ') ~ ', `date` date)'
                    ~ " using parquet partitioned by (`date`) location '" ~ location ~ "'"
                ) -%}
            {%- else -%}
                {%- do run_query(
                    'create table ' ~ relation
                    ~ " using parquet options (path '" ~ location ~ "', mergeSchema 'true')"
                ) -%}
            {%- endif -%}
            {%- do run_query('alter table ' ~ relation ~ ' recover partitions') -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}
