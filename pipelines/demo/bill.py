"""The demo company's bill, written in the formats the real providers deliver.

- AWS: a CUR 2.0 Data Export (Parquet + Manifest.json) per billing month, one export
  version each, under `aws_cur/<export>/data|metadata/BILLING_PERIOD=YYYY-MM/`:
  hourly GPU instance lines (on-demand `Usage`, or `SavingsPlanCoveredUsage` plus its
  `SavingsPlanNegation` for the Savings-Plan covered node), an hourly
  `SavingsPlanRecurringFee` for the commitment (partly unused), daily non-GPU services
  (S3, CloudWatch, data transfer, and the EKS control plane and EFS tagged
  `cost_center=ml-platform`, the shared platform cost), one `Tax` line per month and
  one `Credit` line.
- Microsoft: a FOCUS 1.2 CSV export per month under `focus/azure/`, daily rows (Azure's
  FOCUS exports are daily) for the GPU VM and two non-GPU services, in USD.

Amounts are computed in Decimal and written the way AWS writes them (doubles in Parquet;
every amount has few enough digits that its double prints back exactly). Everything is a
pure function of the world, so reruns write identical bytes.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl

from pipelines.demo.world import Instance, World

EXPORT_NAME = "inferledger-demo-cur2"
S3_BUCKET = "inferledger-demo-billing"
S3_PREFIX = "cur"
FOCUS_EXPORT_NAME = "inferledger-demo-focus"
AZURE_BILLING_ACCOUNT = "/providers/Microsoft.Billing/billingAccounts/80012345"

SAVINGS_PLAN_RATE = Decimal("0.7")  # Savings Plan price as a share of on-demand
TAX_RATE = Decimal("0.06")  # on the month's pre-tax charges, rounded to the cent
CREDIT = Decimal("-250.00")  # one promotional credit, in the first month


@dataclass(frozen=True)
class DailyService:
    """A non-GPU line billed once a day (AWS CUR or Azure FOCUS)."""

    product_code: str
    service_name: str
    usage_type: str
    operation: str
    pricing_unit: str
    usage_amount: Decimal
    cost: Decimal
    resource_id: str | None
    tags: dict[str, str] = field(default_factory=dict)


AWS_DAILY_SERVICES: tuple[DailyService, ...] = (
    DailyService(
        "AmazonS3",
        "Amazon Simple Storage Service",
        "TimedStorage-ByteHrs",
        "StandardStorage",
        "GB-Mo",
        Decimal("2.5"),
        Decimal("0.0575"),
        "inferledger-model-artifacts",
        {"cost_center": "data", "team": "analytics"},
    ),
    DailyService(
        "AmazonCloudWatch",
        "AmazonCloudWatch",
        "CW:MetricMonitorUsage",
        "MetricStorage",
        "Metrics",
        Decimal(1),
        Decimal("0.1"),
        None,
    ),
    DailyService(
        "AWSDataTransfer",
        "AWS Data Transfer",
        "DataTransfer-Out-Bytes",
        "",
        "GB",
        Decimal(120),
        Decimal("10.8"),
        None,
    ),
    DailyService(
        "AmazonEKS",
        "Amazon Elastic Kubernetes Service",
        "AmazonEKS-Hours:perCluster",
        "CreateOperation",
        "Hours",
        Decimal(24),
        Decimal("2.4"),
        "arn:aws:eks:us-east-1:111122223333:cluster/inference",
        {"cost_center": "ml-platform"},
    ),
    DailyService(
        "AmazonEFS",
        "Amazon Elastic File System",
        "TimedStorage-ByteHrs",
        "",
        "GB-Mo",
        Decimal(16),
        Decimal("4.8"),
        "fs-0a1b2c3d4e5f67890",
        {"cost_center": "ml-platform", "team": "platform"},
    ),
)

AZURE_DAILY_SERVICES: tuple[DailyService, ...] = (
    DailyService(
        "Storage",
        "Storage",
        "P30 LRS Disk",
        "",
        "1/Month",
        Decimal("0.0333333333"),
        Decimal("4.37"),
        "/subscriptions/5c7d1a2e-3f4b-4c5d-8e9f-0a1b2c3d4e5f/resourceGroups/"
        "inference/providers/Microsoft.Compute/disks/nd-h100-qwen-0-os",
        {"cost_center": "ml-inference"},
    ),
    DailyService(
        "Bandwidth",
        "Bandwidth",
        "Standard Data Transfer Out",
        "",
        "1 GB",
        Decimal(10),
        Decimal("0.87"),
        None,
    ),
)

_CUR_TIMESTAMP = pl.Datetime("ms")  # CUR 2.0 Parquet timestamps carry no zone (UTC)
_PRODUCT_NAMES = {
    "AmazonEC2": "Amazon Elastic Compute Cloud",
    "ComputeSavingsPlans": "Savings Plans for AWS Compute usage",
}


def _month_start(d: date) -> datetime:
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def _next_month(start: datetime) -> datetime:
    return (start + timedelta(days=32)).replace(day=1)


def _price(inst: Instance) -> Decimal:
    # str() of the world's float is its shortest form (98.32), the price as published.
    return Decimal(str(inst.on_demand_usd_per_hour))


def _line_id(world: World, *parts: str) -> str:
    """CUR keeps one identity_line_item_id per line across hours: derive it from the line."""
    return uuid.uuid5(uuid.UUID(int=world.seed), "|".join(parts)).hex


def _gpu_lines(world: World) -> pl.DataFrame:
    """One row per line kind of each AWS GPU instance (1, or 2 when Savings-Plan covered)."""
    rows = []
    for inst in world.instances:
        if inst.provider != "AWS":
            continue
        od = _price(inst)
        base = {
            "first_day": inst.first_day,
            "resource_id": inst.resource_id,
            "instance_type": inst.instance_type,
            "usage_type": f"BoxUsage:{inst.instance_type}",
            "od": od,
            "tags": {
                "cost_center": "ml-inference",
                "hostname": inst.hostname,
                **({"deployment": inst.deployment} if inst.deployment else {}),
            },
        }
        if inst.savings_plan_covered:
            sp = od * SAVINGS_PLAN_RATE
            rows.append(
                {
                    **base,
                    "line_type": "SavingsPlanCoveredUsage",
                    "cost": od,
                    "list": od,
                    "sp_eff": sp,
                    "desc": f"{inst.instance_type} covered by {world.savings_plan_arn}",
                }
            )
            rows.append(
                {
                    **base,
                    "line_type": "SavingsPlanNegation",
                    "cost": -od,
                    "list": Decimal(0),
                    "sp_eff": None,
                    "desc": f"SavingsPlanNegation used by AccountId : "
                    f"{world.aws_account_id} and UsageSku : {inst.instance_type}",
                }
            )
        else:
            rows.append(
                {
                    **base,
                    "line_type": "Usage",
                    "cost": od,
                    "list": od,
                    "sp_eff": None,
                    "desc": f"${od} per On Demand Linux {inst.instance_type} Instance Hour",
                }
            )
    for r in rows:
        r["line_id"] = _line_id(world, r["resource_id"], r["line_type"])
        r["tags"] = [{"key": f"user_{k}", "value": v} for k, v in r.pop("tags").items()]
    money = pl.Decimal(38, 12)
    return pl.DataFrame(
        rows, schema_overrides={"od": money, "cost": money, "list": money, "sp_eff": money}
    )


def _hours(world: World) -> pl.DataFrame:
    return pl.DataFrame(
        {"start": [h for d in world.day_list for h in world.hour_starts(d)]},
        schema={"start": pl.Datetime("us", "UTC")},
    ).with_columns(day_index=(pl.col("start").dt.date() - pl.lit(world.start)).dt.total_days())


def _aws_lines(world: World) -> pl.DataFrame:
    """All AWS lines of the world, in one frame (CUR 2.0 names, Decimal money)."""
    hours = _hours(world)
    gpu = hours.join(_gpu_lines(world), how="cross").filter(
        pl.col("day_index") >= pl.col("first_day")
    )
    gpu = gpu.with_columns(
        product_code=pl.lit("AmazonEC2"),
        operation=pl.lit("RunInstances"),
        pricing_unit=pl.lit("Hrs"),
        usage_amount=pl.lit(Decimal(1)),
        end=pl.col("start") + pl.duration(hours=1),
        sp_arn=pl.when(pl.col("line_type").str.starts_with("SavingsPlan")).then(
            pl.lit(world.savings_plan_arn)
        ),
    )
    commitment = Decimal(str(world.savings_plan_hourly_commitment))
    used = gpu.group_by("start").agg(used=pl.col("sp_eff").sum())
    fee = hours.join(used, on="start", how="left").select(
        "start",
        end=pl.col("start") + pl.duration(hours=1),
        line_type=pl.lit("SavingsPlanRecurringFee"),
        product_code=pl.lit("ComputeSavingsPlans"),
        usage_type=pl.lit("ComputeSP:1yrNoUpfront"),
        operation=pl.lit(""),
        pricing_unit=pl.lit("Hrs"),
        usage_amount=pl.lit(Decimal(1)),
        resource_id=pl.lit(world.savings_plan_arn),
        sp_arn=pl.lit(world.savings_plan_arn),
        cost=pl.lit(commitment),
        total_commitment=pl.lit(commitment),
        used_commitment=pl.col("used").fill_null(0),
        desc=pl.lit("1 year No Upfront Compute Savings Plan"),
        line_id=pl.lit(_line_id(world, world.savings_plan_arn, "SavingsPlanRecurringFee")),
    )
    if fee["used_commitment"].max() > commitment:
        raise ValueError("covered usage exceeds the Savings Plan commitment; raise the commitment")
    daily = pl.DataFrame(
        [
            {
                "start": datetime(d.year, d.month, d.day, tzinfo=UTC),
                "line_type": "Usage",
                "product_code": s.product_code,
                "usage_type": s.usage_type,
                "operation": s.operation,
                "pricing_unit": s.pricing_unit,
                "usage_amount": s.usage_amount,
                "resource_id": s.resource_id,
                "cost": s.cost,
                "list": s.cost,
                "desc": f"{s.service_name} {s.usage_type}",
                "line_id": _line_id(world, s.product_code, s.usage_type, s.resource_id or ""),
                "tags": [{"key": f"user_{k}", "value": v} for k, v in s.tags.items()],
            }
            for d in world.day_list
            for s in AWS_DAILY_SERVICES
        ],
        schema_overrides={
            "start": pl.Datetime("us", "UTC"),
            "usage_amount": pl.Decimal(38, 12),
            "cost": pl.Decimal(38, 12),
            "list": pl.Decimal(38, 12),
        },
    ).with_columns(end=pl.col("start") + pl.duration(days=1))
    lines = pl.concat([gpu, fee, daily], how="diagonal_relaxed")
    return pl.concat([lines, _monthly_lines(world, lines)], how="diagonal_relaxed").with_columns(
        billing_period_start=pl.col("start").dt.truncate("1mo"),
    )


def _monthly_lines(world: World, lines: pl.DataFrame) -> pl.DataFrame:
    """One Tax line per month on its pre-tax charges, and the Credit in the first month."""
    rows = []
    months = sorted({_month_start(d) for d in world.day_list})
    pre_tax = lines.group_by(pl.col("start").dt.truncate("1mo").alias("month")).agg(
        pl.col("cost").sum()
    )
    for month in months:
        subtotal = pre_tax.filter(pl.col("month") == month)["cost"].sum()
        charges = [
            (
                "Tax",
                (subtotal * TAX_RATE).quantize(Decimal("0.01"), ROUND_HALF_UP),
                "Tax for product code AmazonEC2",
            )
        ]
        if month == months[0]:
            charges.append(("Credit", CREDIT, "AWS Activate credits"))
        for line_type, cost, desc in charges:
            rows.append(
                {
                    "start": month,
                    "end": _next_month(month),
                    "line_type": line_type,
                    "product_code": "AmazonEC2",
                    "usage_type": "",
                    "operation": "",
                    "cost": cost,
                    "desc": desc,
                    "line_id": _line_id(world, line_type, month.isoformat()),
                }
            )
    return pl.DataFrame(
        rows,
        schema_overrides={
            "start": pl.Datetime("us", "UTC"),
            "end": pl.Datetime("us", "UTC"),
            "cost": pl.Decimal(38, 12),
        },
    )


def _as_cur2(world: World, lines: pl.DataFrame) -> pl.DataFrame:
    """The lines as AWS writes them in CUR 2.0 Parquet: snake_case, doubles, maps."""

    def double(c: str) -> pl.Expr:
        return pl.col(c).cast(pl.Float64)

    def iso(c: str) -> pl.Expr:
        return pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%SZ")

    product = pl.concat_list(
        pl.struct(
            pl.lit("product_name").alias("key"),
            pl.col("product_code").replace(_PRODUCT_NAMES).alias("value"),
        )
    ).list.to_map()
    return lines.sort("start", "line_type", "resource_id", nulls_last=True).select(
        identity_line_item_id=pl.col("line_id"),
        identity_time_interval=pl.format("{}/{}", iso("start"), iso("end")),
        bill_bill_type=pl.lit("Anniversary"),
        bill_billing_entity=pl.lit("AWS"),
        bill_billing_period_end_date=pl.col("billing_period_start")
        .dt.offset_by("1mo")
        .cast(_CUR_TIMESTAMP),
        bill_billing_period_start_date=pl.col("billing_period_start").cast(_CUR_TIMESTAMP),
        bill_invoice_id=pl.lit(None, dtype=pl.String),
        bill_invoicing_entity=pl.lit("Amazon Web Services, Inc."),
        bill_payer_account_id=pl.lit(world.aws_account_id),
        line_item_availability_zone=pl.when(pl.col("instance_type").is_not_null()).then(
            pl.lit("us-east-1a")
        ),
        line_item_currency_code=pl.lit("USD"),
        line_item_line_item_description=pl.col("desc"),
        line_item_line_item_type=pl.col("line_type"),
        line_item_operation=pl.col("operation"),
        line_item_product_code=pl.col("product_code"),
        line_item_resource_id=pl.col("resource_id"),
        line_item_unblended_cost=double("cost"),
        line_item_unblended_rate=(pl.col("cost") / pl.col("usage_amount"))
        .cast(pl.Float64)
        .cast(pl.String),
        line_item_usage_account_id=pl.lit(world.aws_account_id),
        line_item_usage_amount=double("usage_amount"),
        line_item_usage_end_date=pl.col("end").cast(_CUR_TIMESTAMP),
        line_item_usage_start_date=pl.col("start").cast(_CUR_TIMESTAMP),
        line_item_usage_type=pl.col("usage_type"),
        pricing_public_on_demand_cost=double("list"),
        pricing_term=pl.when(pl.col("line_type") == "Usage").then(pl.lit("OnDemand")),
        pricing_unit=pl.col("pricing_unit"),
        product=product,
        product_instance_type=pl.col("instance_type"),
        product_region_code=pl.when(pl.col("line_type") != "Tax").then(pl.lit("us-east-1")),
        product_servicecode=pl.col("product_code"),
        reservation_effective_cost=pl.lit(None, dtype=pl.Float64),
        reservation_reservation_a_r_n=pl.lit(None, dtype=pl.String),
        reservation_unused_amortized_upfront_fee_for_billing_period=pl.lit(None, dtype=pl.Float64),
        reservation_unused_recurring_fee=pl.lit(None, dtype=pl.Float64),
        resource_tags=pl.col("tags").fill_null([]).list.to_map(),
        savings_plan_savings_plan_a_r_n=pl.col("sp_arn"),
        savings_plan_savings_plan_effective_cost=double("sp_eff"),
        savings_plan_savings_plan_rate=double("sp_eff"),
        savings_plan_total_commitment_to_date=double("total_commitment"),
        savings_plan_used_commitment=double("used_commitment"),
    )


def _athena_type(dtype: pl.DataType) -> str:
    """The column type as a Data Exports manifest names it."""
    if isinstance(dtype, pl.Map):
        return "map<string,string>"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    return "double" if dtype == pl.Float64 else "string"


def _manifest(world: World, month: datetime, data_key: str, columns: pl.Schema) -> dict:
    period = month.strftime("%Y-%m")
    return {
        "exportArn": f"arn:aws:bcm-data-exports:us-east-1:{world.aws_account_id}:export/"
        f"{EXPORT_NAME}-"
        f"{uuid.uuid5(uuid.UUID(int=world.seed), EXPORT_NAME)}",
        "exportName": EXPORT_NAME,
        "executionId": str(uuid.uuid5(uuid.UUID(int=world.seed), f"{EXPORT_NAME}/{period}")),
        "billingPeriod": {
            "start": month.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "end": _next_month(month).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        },
        "dataFiles": [f"s3://{S3_BUCKET}/{S3_PREFIX}/{data_key}"],
        "columns": [{"name": name, "type": _athena_type(dtype)} for name, dtype in columns.items()],
        "tableConfigurations": {
            "COST_AND_USAGE_REPORT": {
                "TIME_GRANULARITY": "HOURLY",
                "INCLUDE_RESOURCES": "TRUE",
                "INCLUDE_SPLIT_COST_ALLOCATION_DATA": "FALSE",
                "INCLUDE_MANUAL_DISCOUNT_COMPATIBILITY": "FALSE",
            }
        },
    }


def _write_cur(world: World, landing: Path, lines: pl.DataFrame) -> list[str]:
    written = []
    for (month,), part in lines.partition_by(
        "billing_period_start", as_dict=True, maintain_order=True
    ).items():
        period = month.strftime("%Y-%m")
        data_key = f"{EXPORT_NAME}/data/BILLING_PERIOD={period}/{EXPORT_NAME}-00001.snappy.parquet"
        manifest_key = f"{EXPORT_NAME}/metadata/BILLING_PERIOD={period}/{EXPORT_NAME}-Manifest.json"
        cur = _as_cur2(world, part)
        (landing / "aws_cur" / data_key).parent.mkdir(parents=True, exist_ok=True)
        cur.write_parquet(landing / "aws_cur" / data_key, compression="snappy")
        (landing / "aws_cur" / manifest_key).parent.mkdir(parents=True, exist_ok=True)
        (landing / "aws_cur" / manifest_key).write_text(
            json.dumps(_manifest(world, month, data_key, cur.schema), indent=2)
        )
        written += [f"aws_cur/{data_key}", f"aws_cur/{manifest_key}"]
    return written


def _azure_rows(world: World) -> list[dict]:
    """Daily FOCUS 1.2 rows for the Microsoft VMs and two non-GPU services."""
    rows = []
    for d in world.day_list:
        start = datetime(d.year, d.month, d.day, tzinfo=UTC)
        common = {"start": start, "end": start + timedelta(days=1), "month": _month_start(d)}
        for inst in world.instances:
            if inst.provider != "Microsoft" or not world.instance_active(inst, d):
                continue
            rate = _price(inst)
            rows.append(
                {
                    **common,
                    "cost": rate * 24,
                    "unit_price": rate,
                    "quantity": Decimal(24),
                    "consumed_unit": "Hours",
                    "pricing_unit": "1 Hour",
                    "service": "Virtual Machines",
                    "category": "Compute",
                    "resource_id": inst.resource_id,
                    "resource_name": inst.hostname,
                    "resource_type": "Virtual machine",
                    "meter": inst.instance_type.removeprefix("Standard_"),
                    "sku_details": {"InstanceType": inst.instance_type},
                    "tags": {
                        "cost_center": "ml-inference",
                        "hostname": inst.hostname,
                        **({"deployment": inst.deployment} if inst.deployment else {}),
                    },
                }
            )
        for s in AZURE_DAILY_SERVICES:
            rows.append(
                {
                    **common,
                    "cost": s.cost,
                    "unit_price": s.cost / s.usage_amount,
                    "quantity": s.usage_amount,
                    "consumed_unit": s.pricing_unit,
                    "pricing_unit": s.pricing_unit,
                    "service": s.service_name,
                    "category": "Storage" if s.product_code == "Storage" else "Networking",
                    "resource_id": s.resource_id,
                    "resource_name": (s.resource_id or "").rsplit("/", 1)[-1] or None,
                    "resource_type": "Disk" if s.product_code == "Storage" else None,
                    "meter": s.usage_type,
                    "sku_details": {},
                    "tags": s.tags,
                }
            )
    return rows


def _focus_frame(world: World, rows: list[dict]) -> pl.DataFrame:
    def ts(v: datetime) -> str:
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")

    def money(v: Decimal) -> str:
        return format(v.quantize(Decimal("0.0000000001")).normalize(), "f")

    subscription = "/subscriptions/5c7d1a2e-3f4b-4c5d-8e9f-0a1b2c3d4e5f"
    return pl.DataFrame(
        [
            {
                "AvailabilityZone": None,
                "BilledCost": money(r["cost"]),
                "BillingAccountId": AZURE_BILLING_ACCOUNT,
                "BillingAccountName": "Demo Inference Co",
                "BillingAccountType": "Billing Account",
                "BillingCurrency": "USD",
                "BillingPeriodEnd": ts(_next_month(r["month"])),
                "BillingPeriodStart": ts(r["month"]),
                "ChargeCategory": "Usage",
                "ChargeClass": None,
                "ChargeDescription": f"{r['service']} {r['meter']}",
                "ChargeFrequency": "Usage-Based",
                "ChargePeriodEnd": ts(r["end"]),
                "ChargePeriodStart": ts(r["start"]),
                "CommitmentDiscountCategory": None,
                "CommitmentDiscountId": None,
                "CommitmentDiscountName": None,
                "CommitmentDiscountQuantity": None,
                "CommitmentDiscountStatus": None,
                "CommitmentDiscountType": None,
                "CommitmentDiscountUnit": None,
                "ConsumedQuantity": money(r["quantity"]),
                "ConsumedUnit": r["consumed_unit"],
                "ContractedCost": money(r["cost"]),
                "ContractedUnitPrice": money(r["unit_price"]),
                "EffectiveCost": money(r["cost"]),
                "InvoiceIssuerName": "Microsoft",
                "ListCost": money(r["cost"]),
                "ListUnitPrice": money(r["unit_price"]),
                "PricingCategory": "Standard",
                "PricingQuantity": money(r["quantity"]),
                "PricingUnit": r["pricing_unit"],
                "ProviderName": "Microsoft",
                "PublisherName": "Microsoft",
                "RegionId": "eastus",
                "RegionName": "East US",
                "ResourceId": r["resource_id"],
                "ResourceName": r["resource_name"],
                "ResourceType": r["resource_type"],
                "ServiceCategory": r["category"],
                "ServiceName": r["service"],
                "SkuId": r["meter"].replace(" ", "-"),
                "SkuMeter": r["meter"],
                "SkuPriceDetails": json.dumps(r["sku_details"]) if r["sku_details"] else None,
                "SkuPriceId": f"{r['meter'].replace(' ', '-')}/payg",
                "SubAccountId": subscription,
                "SubAccountName": "inference-prod",
                "SubAccountType": "Subscription",
                "Tags": json.dumps(r["tags"]) if r["tags"] else None,
                "x_ResourceGroupName": "inference",
                "x_SkuMeterCategory": r["service"],
            }
            for r in rows
        ],
        infer_schema_length=None,
    )


def _write_focus(world: World, landing: Path, rows: list[dict]) -> list[str]:
    written = []
    for month in sorted({r["month"] for r in rows}):
        end = _next_month(month) - timedelta(days=1)
        run_id = uuid.uuid5(uuid.UUID(int=world.seed), f"{FOCUS_EXPORT_NAME}/{month:%Y%m}")
        key = (
            f"focus/azure/{FOCUS_EXPORT_NAME}/{month:%Y%m%d}-{end:%Y%m%d}/{run_id}/part_0_0001.csv"
        )
        (landing / key).parent.mkdir(parents=True, exist_ok=True)
        _focus_frame(world, [r for r in rows if r["month"] == month]).write_csv(landing / key)
        written.append(key)
    return written


def write_bill(world: World, landing: Path) -> dict:
    """Write the world's AWS CUR 2.0 export and Azure FOCUS export under `landing`.

    Returns totals for logging and labels: rows and billed/effective cost per provider
    (Decimal), and the files written (keys relative to `landing`).
    """
    landing = Path(landing)
    aws = _aws_lines(world)
    azure = _azure_rows(world)
    aws_effective = aws.select(
        pl.when(pl.col("line_type") == "SavingsPlanCoveredUsage")
        .then(pl.col("sp_eff"))
        .when(pl.col("line_type") == "SavingsPlanNegation")
        .then(pl.lit(Decimal(0)))
        .when(pl.col("line_type") == "SavingsPlanRecurringFee")
        .then(pl.col("total_commitment") - pl.col("used_commitment"))
        .otherwise(pl.col("cost"))
        .sum()
    ).item()
    files = _write_cur(world, landing, aws) + _write_focus(world, landing, azure)
    return {
        "aws_cur_rows": aws.height,
        "aws_billed_cost": aws["cost"].sum(),
        "aws_effective_cost": aws_effective,
        "azure_focus_rows": len(azure),
        "azure_billed_cost": sum((r["cost"] for r in azure), Decimal(0)),
        "files": files,
    }
