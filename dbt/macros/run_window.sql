{#- The run window, half-open [min_date, max_date), as the only way a date range reaches SQL.

    Where a bound comes from, first found wins:
    1. the var (`--vars '{min_date: ..., max_date: ...}'`, or a unit test's overrides);
    2. the environment (INFERLEDGER_MIN_DATE / INFERLEDGER_MAX_DATE), read only when a node
       executes. This is how the Dagster assets pass their partition window: a var that
       changes every day makes dbt re-parse the whole project on every run (~4 s), while an
       environment variable read at execution is not part of what dbt parsed;
    3. everything: 1970-01-01 to 2999-01-01. -#}

{% macro run_window_bound(name) -%}
    {%- set defaults = {'min_date': '1970-01-01', 'max_date': '2999-01-01'} -%}
    {%- set value = var(name, none) -%}
    {%- if value is none and execute -%}
        {%- set value = env_var('INFERLEDGER_' ~ name | upper, '') -%}
    {%- endif -%}
    {{ return(value or defaults[name]) }}
{%- endmacro %}

{% macro window_start_date() -%}
    cast('{{ run_window_bound("min_date") }}' as date)
{%- endmacro %}

{% macro window_end_date() -%}
    cast('{{ run_window_bound("max_date") }}' as date)
{%- endmacro %}

{% macro window_start_ts() -%}
    cast('{{ run_window_bound("min_date") }} 00:00:00' as timestamp)
{%- endmacro %}

{% macro window_end_ts() -%}
    cast('{{ run_window_bound("max_date") }} 00:00:00' as timestamp)
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
        {%- set first = modules.datetime.date.fromisoformat(run_window_bound('min_date')) -%}
        {%- set last = modules.datetime.date.fromisoformat(run_window_bound('max_date')) -%}
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
