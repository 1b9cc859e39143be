{#- A consumed quantity in hours when its unit is a time unit (CUR "Hrs", FOCUS "Hours",
    Azure "1 Hour", GCP "seconds"), else null: a line counted in requests or gigabytes says
    nothing about how long an instance ran. Through a double, as allocate() does, so DuckDB
    and Spark round the same way. -#}
{% macro usage_hours(quantity, unit) -%}
    case
        when lower(trim({{ unit }})) in ('hour', 'hours', 'hrs', 'hr', 'h', '1 hour')
            then cast({{ quantity }} as decimal(38, 12))
        when lower(trim({{ unit }})) in ('minute', 'minutes', 'min', 'mins')
            then cast(cast({{ quantity }} as double) / 60 as decimal(38, 12))
        when lower(trim({{ unit }})) in ('second', 'seconds', 'sec', 'secs', 's')
            then cast(cast({{ quantity }} as double) / 3600 as decimal(38, 12))
    end
{%- endmacro %}
