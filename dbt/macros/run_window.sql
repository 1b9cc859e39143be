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

{#- A period [start_column, end_column) that overlaps the run window. -#}
{% macro overlaps_run_window(start_column, end_column) -%}
    ({{ start_column }} < {{ window_end_date() }} and {{ end_column }} > {{ window_start_date() }})
{%- endmacro %}

{#- Data tests limited to the run window: a test's `where` config may say `__run_window__(column)`
    (the rows whose date column is in the window) or `__run_window__(start, end)` (the rows whose
    period overlaps it). Config in .yml cannot call macros, so dbt's get_where_subquery is
    overridden here to expand the placeholder into in_run_window / overlaps_run_window. -#}
{% macro get_where_subquery(relation) -%}
    {%- set filter = namespace(where=config.get('where', '') or '') -%}
    {%- for args in modules.re.findall('__run_window__[(]([^)]*)[)]', filter.where) -%}
        {%- set columns = args.split(',') | map('trim') | list -%}
        {%- if columns | length == 1 -%}
            {%- set condition = in_run_window(columns[0]) -%}
        {%- elif columns | length == 2 -%}
            {%- set condition = overlaps_run_window(columns[0], columns[1]) -%}
        {%- else -%}
            {{ exceptions.raise_compiler_error(
                "where '" ~ filter.where ~ "': __run_window__ takes a date column or a start and an end column") }}
        {%- endif -%}
        {%- set filter.where = filter.where | replace('__run_window__(' ~ args ~ ')', condition) -%}
    {%- endfor -%}
    {%- if filter.where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ filter.where ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
