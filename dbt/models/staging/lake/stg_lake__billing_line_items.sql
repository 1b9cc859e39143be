with

source as (

    select * from {{ source('lake', 'billing_line_items') }}

),

renamed as (

    select
        {{ dbt.concat(["source", "':'", "source_line_id"]) }} as billing_line_key,
        source,
        source_file,
        source_line_id,
        provider,
        publisher,
        invoice_issuer,
        billing_account_id,
        sub_account_id,
        {{ lake_timestamp("billing_period_start") }} as billing_period_start,
        {{ lake_timestamp("charge_period_start") }} as charge_period_start,
        {{ lake_timestamp("charge_period_end") }} as charge_period_end,
        charge_category,
        charge_class,
        charge_frequency,
        charge_type,
        pricing_category,
        service_name,
        service_category,
        region_id,
        resource_id,
        resource_name,
        resource_type,
        instance_type,
        sku_id,
        usage_type,
        cast(consumed_quantity as decimal(38, 12)) as consumed_quantity,
        consumed_unit,
        cast(pricing_quantity as decimal(38, 12)) as pricing_quantity,
        pricing_unit,
        commitment_discount_id,
        commitment_discount_status,
        cast(billed_cost as decimal(38, 12)) as billed_cost,
        cast(effective_cost as decimal(38, 12)) as effective_cost,
        cast(list_cost as decimal(38, 12)) as list_cost,
        cast(contracted_cost as decimal(38, 12)) as contracted_cost,
        billing_currency,
        tags,
        export_version,
        cast({{ adapter.quote('date') }} as date) as partition_date

    from source

)

select * from renamed
