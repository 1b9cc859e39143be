{{ config(
    unique_key=['period_type', 'period_start', 'dimension'],
    partition_by=(['period_type', 'period_start'] if target.type == 'spark' else none),
) }}

-- How much of the spend depends on how few suppliers, per dimension: the HHI (sum of the
-- suppliers' squared percentage shares of spend, 0..10,000; 10,000 / HHI is the effective
-- number of suppliers), the top supplier and its share. Two periods: the trailing 30 days
-- ending on each day of the run window, and the calendar month (to date while it is open).
-- Risk bands from the 2023 US Merger Guidelines and a top-share limit, both configured in
-- the concentration_settings seed; a warning when the band worsens or the HHI rises by
-- more than the configured points against the period 30 days (one month) earlier.
--
-- Dimensions: cloud_provider, region, gpu_vendor and gpu_model from the bill's Usage lines
-- (effective cost, in USD); model_provider from the inference costs (the hosted API's
-- provider, and self-hosted inference as one supplier of its own): supplier_spend_daily
-- keeps each day's spend per supplier.

with

settings as (

    select * from {{ ref('concentration_settings') }}

),

-- The run's trailing windows, the windows 30 days before them and the previous calendar
-- month all start at most 92 days before the run window: a few rows per supplier and day.
daily as (

    select usage_date, dimension, supplier, spend_usd
    from {{ ref('supplier_spend_daily') }}
    where usage_date >= cast({{ dbt.dateadd('day', -92, window_start_date()) }} as date)
        and usage_date < {{ window_end_date() }}

),

-- Days whose trailing window is reported, and the days 30 days before them.
as_of_days as (

    select distinct usage_date as as_of_date
    from daily
    where usage_date >= cast({{ dbt.dateadd('day', -30, window_start_date()) }} as date)

),

trailing_windows as (

    select
        'trailing_30d' as period_type,
        cast({{ dbt.dateadd('day', -29, 'as_of_days.as_of_date') }} as date) as period_start,
        cast({{ dbt.dateadd('day', 1, 'as_of_days.as_of_date') }} as date) as period_end,
        as_of_days.as_of_date,
        daily.dimension,
        daily.supplier,
        sum(daily.spend_usd) as spend_usd
    from as_of_days
    inner join daily
        on daily.usage_date <= as_of_days.as_of_date
        and daily.usage_date > cast({{ dbt.dateadd('day', -30, 'as_of_days.as_of_date') }} as date)
    group by as_of_days.as_of_date, daily.dimension, daily.supplier

),

-- The months touching the run window (to date), and the month before the first of them.
daily_months as (

    select daily.*, cast({{ dbt.date_trunc('month', 'usage_date') }} as date) as month_start
    from daily
    where usage_date >= cast({{ dbt.dateadd('month', -1, dbt.date_trunc('month', window_start_date())) }} as date)

),

monthly as (

    select
        'month' as period_type,
        month_start as period_start,
        cast({{ dbt.dateadd('month', 1, 'month_start') }} as date) as period_end,
        max(usage_date) as as_of_date,
        dimension,
        supplier,
        sum(spend_usd) as spend_usd
    from daily_months
    group by month_start, dimension, supplier

),

supplier_spend as (

    select * from trailing_windows where spend_usd > 0
    union all
    select * from monthly where spend_usd > 0

),

shares as (

    select
        supplier_spend.*,
        -- A double: a decimal quotient keeps only 6 decimals on Spark.
        cast(spend_usd as double)
            / cast(sum(spend_usd) over (partition by period_type, period_start, dimension) as double) as share,
        row_number() over (
            partition by period_type, period_start, dimension
            order by spend_usd desc, supplier
        ) as spend_rank
    from supplier_spend

),

concentration as (

    select
        period_type,
        period_start,
        max(period_end) as period_end,
        max(as_of_date) as as_of_date,
        dimension,
        sum(spend_usd) as total_spend_usd,
        count(*) as supplier_count,
        sum(cast(share as double) * cast(share as double)) * 10000 as hhi,
        max(case when spend_rank = 1 then supplier end) as top_supplier,
        max(case when spend_rank = 1 then cast(share as double) end) as top_share
    from shares
    group by period_type, period_start, dimension

),

banded as (

    select
        concentration.*,
        case
            when hhi > settings.hhi_highly_concentrated then 'highly_concentrated'
            when hhi >= settings.hhi_moderately_concentrated then 'moderately_concentrated'
            else 'unconcentrated'
        end as risk_level,
        case
            when hhi > settings.hhi_highly_concentrated then 3
            when hhi >= settings.hhi_moderately_concentrated then 2
            else 1
        end as risk_rank,
        top_share > settings.top_share_limit as top_share_exceeded,
        settings.hhi_rise_warning_points
    from concentration
    cross join settings

),

compared as (

    select
        current_period.*,
        previous.hhi as previous_hhi,
        previous.risk_level as previous_risk_level,
        current_period.hhi - previous.hhi as hhi_change
    from banded as current_period
    left join banded as previous
        on previous.dimension = current_period.dimension
        and previous.period_type = current_period.period_type
        and previous.period_start = case
            when current_period.period_type = 'month'
                then cast({{ dbt.dateadd('month', -1, 'current_period.period_start') }} as date)
            else cast({{ dbt.dateadd('day', -30, 'current_period.period_start') }} as date)
        end

)

select
    cast(period_type as {{ dbt.type_string() }}) as period_type,
    cast(period_start as date) as period_start,
    cast(period_end as date) as period_end,
    cast(as_of_date as date) as usage_date,
    cast(dimension as {{ dbt.type_string() }}) as dimension,
    {{ money('total_spend_usd') }} as total_spend_usd,
    cast(supplier_count as bigint) as supplier_count,
    cast(hhi as double) as hhi,
    cast(10000 / hhi as double) as effective_suppliers,
    cast(top_supplier as {{ dbt.type_string() }}) as top_supplier,
    cast(top_share as double) as top_share,
    cast(risk_level as {{ dbt.type_string() }}) as risk_level,
    top_share_exceeded,
    cast(previous_hhi as double) as previous_hhi,
    cast(previous_risk_level as {{ dbt.type_string() }}) as previous_risk_level,
    cast(hhi_change as double) as hhi_change,
    coalesce(
        previous_risk_level is not null
        and (
            risk_rank > case previous_risk_level
                when 'highly_concentrated' then 3 when 'moderately_concentrated' then 2 else 1 end
            or hhi_change > hhi_rise_warning_points
        ),
        false
    ) as concentration_warning
from compared
where (period_type = 'trailing_30d' and {{ in_run_window('as_of_date') }})
    or (period_type = 'month' and period_end > {{ window_start_date() }})
