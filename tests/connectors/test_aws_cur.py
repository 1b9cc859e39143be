import gzip
import json
import os
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest

from connectors.aws_cur import find_exports, legacy_column_name, read_cur_file, read_export
from connectors.focus import read_focus
from connectors.landing import LocalStore
from connectors.result import SourceFormatError
from pipelines.demo import bill
from pipelines.demo.world import build_world

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"
LEGACY = CONFORMANCE / "cur_legacy" / "aws_cur_legacy_sample.csv"
SP_ARN = "arn:aws:savingsplans::111122223333:savingsplan/sp-1"
RI_ARN = "arn:aws:ec2:us-east-1:111122223333:reserved-instances/ri-1"


def _by_type(rows: pl.DataFrame) -> dict[str, list[Decimal]]:
    return {
        t: rows.filter(pl.col("charge_type") == t)["effective_cost"].to_list()
        for t in rows["charge_type"].unique().to_list()
    }


def test_legacy_cur_sample_sums_exactly():
    result = read_cur_file(LEGACY, source_file="legacy.csv", export_version="a1", fmt="cur1")
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (1281, 1281, 0)
    rows = result.rows
    assert rows["billed_cost"].sum() == Decimal("1.6823086974")
    by_category = {
        r["charge_category"]: r
        for r in rows.group_by("charge_category")
        .agg(pl.len().alias("n"), pl.col("billed_cost").sum())
        .to_dicts()
    }
    assert by_category["Usage"]["n"] == 1269 and by_category["Usage"]["billed_cost"] == Decimal(
        "1.6023086974"
    )
    assert by_category["Tax"]["n"] == 12 and by_category["Tax"]["billed_cost"] == Decimal("0.08")
    assert rows["effective_cost"].sum() == Decimal("1.6823086974")  # no commitments in the sample
    assert rows["source"].unique().to_list() == ["aws_cur_legacy"]
    assert rows["source_line_id"].n_unique() == 1281
    assert rows["invoice_issuer"].unique().to_list() == ["Amazon Web Services Canada, Inc."]


def test_legacy_names_become_cur2_names():
    assert legacy_column_name("lineItem/UnblendedCost") == "line_item_unblended_cost"
    assert legacy_column_name("savingsPlan/SavingsPlanARN") == "savings_plan_savings_plan_a_r_n"
    assert legacy_column_name("pricing/publicOnDemandCost") == "pricing_public_on_demand_cost"
    assert legacy_column_name("product/servicecode") == "product_servicecode"


def _savings_plan_hour() -> pl.DataFrame:
    """One hour: two covered instances (10.00 and 4.00 on demand, 7.00 and 2.80 at the SP
    rate), their negations, a 12.00 commitment of which 9.80 is used, an on-demand
    instance at 3.25 and 0.50 tax."""
    rows = [
        ("SavingsPlanCoveredUsage", "i-a", 10.0, 10.0, 7.0, None, None, {"user_cost_center": "ml"}),
        ("SavingsPlanNegation", "i-a", -10.0, 0.0, None, None, None, {"user_cost_center": "ml"}),
        ("SavingsPlanCoveredUsage", "i-b", 4.0, 4.0, 2.8, None, None, {}),
        ("SavingsPlanNegation", "i-b", -4.0, 0.0, None, None, None, {}),
        ("SavingsPlanRecurringFee", SP_ARN, 12.0, 0.0, None, 12.0, 9.8, {}),
        (
            "Usage",
            "i-c",
            3.25,
            3.25,
            None,
            None,
            None,
            {"user_cost_center": "web", "aws_createdBy": "x"},
        ),
        ("Tax", None, 0.5, 0.0, None, None, None, {}),
    ]
    start, end = datetime(2026, 3, 1, 0), datetime(2026, 3, 1, 1)
    return pl.DataFrame(
        {
            "identity_line_item_id": [f"id{i}" for i in range(len(rows))],
            "identity_time_interval": ["2026-03-01T00:00:00Z/2026-03-01T01:00:00Z"] * len(rows),
            "bill_billing_period_start_date": [datetime(2026, 3, 1)] * len(rows),
            "bill_payer_account_id": ["111122223333"] * len(rows),
            "line_item_line_item_type": [r[0] for r in rows],
            "line_item_resource_id": [r[1] for r in rows],
            "line_item_usage_start_date": [start] * len(rows),
            "line_item_usage_end_date": [end] * len(rows),
            "line_item_product_code": ["AmazonEC2"] * len(rows),
            "line_item_usage_amount": [1.0] * len(rows),
            "line_item_unblended_cost": [r[2] for r in rows],
            "line_item_currency_code": ["USD"] * len(rows),
            "pricing_public_on_demand_cost": [r[3] for r in rows],
            "savings_plan_savings_plan_a_r_n": [
                SP_ARN if r[0].startswith("SavingsPlan") else None for r in rows
            ],
            "savings_plan_savings_plan_effective_cost": [r[4] for r in rows],
            "savings_plan_total_commitment_to_date": [r[5] for r in rows],
            "savings_plan_used_commitment": [r[6] for r in rows],
            "resource_tags": pl.Series(
                [[{"key": k, "value": v} for k, v in r[7].items()] for r in rows],
                dtype=pl.List(pl.Struct({"key": pl.String, "value": pl.String})),
            ),
        }
    ).with_columns(pl.col("resource_tags").list.to_map())


def test_savings_plan_hour_gives_hand_computed_effective_cost(tmp_path):
    path = tmp_path / "sp.parquet"
    _savings_plan_hour().write_parquet(path)
    result = read_cur_file(path, source_file="sp.parquet", export_version="e1", fmt="cur2")
    rows = result.rows
    assert (result.rows_read, result.rows_quarantined) == (7, 0)
    assert _by_type(rows) == {
        "SavingsPlanCoveredUsage": [Decimal("7.00"), Decimal("2.80")],
        "SavingsPlanNegation": [Decimal(0), Decimal(0)],
        "SavingsPlanRecurringFee": [Decimal("2.20")],  # 12.00 committed - 9.80 used
        "Usage": [Decimal("3.25")],
        "Tax": [Decimal("0.50")],
    }
    # 7.00 + 2.80 + 2.20 + 3.25 + 0.50; billed: 10 - 10 + 4 - 4 + 12 + 3.25 + 0.50
    assert rows["effective_cost"].sum() == Decimal("15.75")
    assert rows["billed_cost"].sum() == Decimal("15.75")
    fee = rows.filter(pl.col("charge_type") == "SavingsPlanRecurringFee").row(0, named=True)
    assert (
        fee["charge_category"],
        fee["commitment_discount_status"],
        fee["commitment_discount_id"],
    ) == ("Purchase", "Unused", SP_ARN)
    covered = rows.filter(pl.col("charge_type") == "SavingsPlanCoveredUsage").row(0, named=True)
    assert (
        covered["charge_category"],
        covered["pricing_category"],
        covered["commitment_discount_status"],
    ) == ("Usage", "Committed", "Used")
    assert covered["tags"] == '{"cost_center":"ml"}'
    assert (
        rows.filter(pl.col("resource_id") == "i-c")["tags"][0]
        == '{"cost_center":"web","aws_createdBy":"x"}'
    )
    # A negation line does not count the covered hour a second time.
    assert (
        rows.filter(pl.col("charge_type") == "SavingsPlanNegation")[
            "consumed_quantity"
        ].null_count()
        == 2
    )


RI_EDP_SPLIT_CSV = f"""\
line_item_line_item_type,line_item_usage_start_date,line_item_usage_end_date,line_item_product_code,\
line_item_usage_type,line_item_resource_id,line_item_unblended_cost,line_item_net_unblended_cost,\
line_item_currency_code,reservation_reservation_a_r_n,reservation_effective_cost,\
reservation_unused_amortized_upfront_fee_for_billing_period,reservation_unused_recurring_fee,\
split_line_item_parent_resource_id,split_line_item_split_cost,split_line_item_unused_cost,resource_tags
DiscountedUsage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,AmazonEC2,BoxUsage:g6e.xlarge,i-r,6.0,,USD,{RI_ARN},3.5,,,,,,
RIFee,2026-03-01T00:00:00Z,2026-04-01T00:00:00Z,AmazonEC2,HeavyUsage:g6e.xlarge,,5.0,,USD,{RI_ARN},,1.1,0.4,,,,
Fee,2026-03-01T00:00:00Z,2026-04-01T00:00:00Z,AmazonEC2,,,100.0,,USD,{RI_ARN},,,,,,,
Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,AmazonS3,TimedStorage-ByteHrs,bucket,3.0,2.7,USD,,,,,,,,"{{""user_team"":""ml""}}"
EdpDiscount,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,AmazonS3,TimedStorage-ByteHrs,bucket,-0.3,0,USD,,,,,,,,
Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,AmazonEC2,BoxUsage:m7i.4xlarge,i-parent,8.0,,USD,,,,,,,,
Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,AmazonEC2,EKSPod-EC2:vCPUHours,arn:pod/a,0,,USD,,,,,i-parent,5.0,3.0,
"""


def test_reservations_net_costs_and_split_lines_count_once():
    result = read_cur_file(
        gzip.compress(RI_EDP_SPLIT_CSV.encode()),
        source_file="ri.csv.gz",
        export_version="e1",
        fmt="cur2",
    )
    rows = result.rows
    assert (result.rows_read, result.rows_quarantined) == (7, 0)
    effective = dict(
        zip(
            rows["charge_type"] + "/" + rows["resource_id"].fill_null("-"),
            rows["effective_cost"],
            strict=True,
        )
    )
    assert effective == {
        "DiscountedUsage/i-r": Decimal("3.5"),
        "RIFee/-": Decimal("1.5"),  # unused upfront 1.1 + unused recurring 0.4
        "Fee/-": Decimal(0),  # the upfront payment is amortized by AWS
        "Usage/bucket": Decimal("2.7"),  # net of the EDP discount
        "EdpDiscount/bucket": Decimal(0),  # already inside the net cost above
        "Usage/i-parent": Decimal("8.0"),  # the instance line carries its cost
        "Usage/arn:pod/a": Decimal(0),  # the pod's split line does not count it again
    }
    assert rows["effective_cost"].sum() == Decimal("15.7")
    assert rows["billed_cost"].sum() == Decimal("121.7")
    pod = rows.filter(pl.col("resource_id") == "arn:pod/a").row(0, named=True)
    assert json.loads(pod["tags"]) == {
        "split:parent_resource_id": "i-parent",
        "split:cost": "5.0",
        "split:unused_cost": "3.0",
    }
    assert rows.filter(pl.col("resource_id") == "bucket")["tags"][0] == '{"team":"ml"}'
    assert rows.filter(pl.col("charge_type") == "EdpDiscount")["charge_category"][0] == "Adjustment"
    assert rows.filter(pl.col("charge_type") == "Fee")["commitment_discount_id"][0] == RI_ARN


def test_missing_required_column_names_file_and_column():
    csv = (
        "line_item_line_item_type,line_item_usage_start_date,line_item_usage_end_date,line_item_currency_code\n"
        "Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,USD\n"
    )
    with pytest.raises(
        SourceFormatError, match=r"export-00001\.csv\.gz.*line_item_unblended_cost"
    ) as err:
        read_cur_file(
            csv.encode(), source_file="export-00001.csv.gz", export_version="e", fmt="cur2"
        )
    assert "Data Export" in str(err.value)  # says what to do


def test_bad_rows_are_quarantined_with_reasons():
    csv = (
        "lineItem/LineItemType,lineItem/UsageStartDate,lineItem/UsageEndDate,lineItem/UnblendedCost,"
        "lineItem/CurrencyCode\n"
        "Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,1.10,USD\n"
        "Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,2.20,XYZ\n"
        "Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,n/a,USD\n"
        "Usage,2026-02-30T00:00:00Z,2026-03-01T01:00:00Z,3.30,USD\n"
    )
    result = read_cur_file(csv.encode(), source_file="legacy.csv", export_version="e", fmt="cur1")
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (4, 1, 3)
    assert result.rows_read == result.rows_written + result.rows_quarantined
    assert result.rows["billed_cost"].to_list() == [Decimal("1.10")]
    assert dict(zip(result.quarantine["row_number"], result.quarantine["reason"], strict=True)) == {
        2: "unknown currency 'XYZ' in lineItem/CurrencyCode: not an ISO 4217 code;"
        " fix the export or add the code to the FX table",
        3: "non-numeric cost 'n/a' in lineItem/UnblendedCost",
        4: "unparseable timestamp '2026-02-30T00:00:00Z' in lineItem/UsageStartDate",
    }
    assert json.loads(result.quarantine["raw"][0])["lineItem/CurrencyCode"] == "XYZ"


def _cur2_export(root: Path, execution: str, cost: float, mtime: int) -> None:
    name, period = "team-cur", "2026-03"
    data_key = (
        f"aws_cur/{name}/data/BILLING_PERIOD={period}/{execution}/{name}-00001.snappy.parquet"
    )
    (root / data_key).parent.mkdir(parents=True, exist_ok=True)
    _savings_plan_hour().with_columns(
        pl.when(pl.col("line_item_line_item_type") == "Tax")
        .then(pl.lit(cost))
        .otherwise(pl.col("line_item_unblended_cost"))
        .alias("line_item_unblended_cost")
    ).write_parquet(root / data_key)
    manifest = (
        root / f"aws_cur/{name}/metadata/BILLING_PERIOD={period}/{execution}/{name}-Manifest.json"
    )
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps(
            {
                "exportName": name,
                "executionId": execution,
                "billingPeriod": {
                    "start": "2026-03-01T00:00:00.000Z",
                    "end": "2026-04-01T00:00:00.000Z",
                },
                "dataFiles": [
                    f"s3://their-bucket/their/prefix/{data_key.removeprefix('aws_cur/')}"
                ],
            }
        )
    )
    os.utime(manifest, (mtime, mtime))


def test_restated_month_replaces_previous_export(tmp_path):
    _cur2_export(tmp_path, "exec-new", 0.75, mtime=1_775_000_000)
    _cur2_export(tmp_path, "exec-old", 0.50, mtime=1_774_000_000)
    store = LocalStore(tmp_path)
    (export,) = find_exports(store)
    assert (export.name, export.billing_period, export.version, export.format) == (
        "team-cur",
        "2026-03",
        "exec-new",
        "cur2",
    )
    assert export.data_keys == (
        "aws_cur/team-cur/data/BILLING_PERIOD=2026-03/exec-new/team-cur-00001.snappy.parquet",
    )
    result = read_export(store, export)
    assert result.rows.filter(pl.col("charge_type") == "Tax")["billed_cost"].to_list() == [
        Decimal("0.75")
    ]
    assert result.rows["export_version"].unique().to_list() == ["exec-new"]


def test_legacy_manifest_is_found_and_read(tmp_path):
    report, assembly = "legacy-report", "9a8b7c6d-0000-4000-8000-000000000001"
    folder = tmp_path / "aws_cur" / report / "20231101-20231201"
    (folder / assembly).mkdir(parents=True)
    (folder / assembly / f"{report}-1.csv.gz").write_bytes(gzip.compress(LEGACY.read_bytes()))
    (folder / f"{report}-Manifest.json").write_text(
        json.dumps(
            {
                "assemblyId": assembly,
                "reportName": report,
                "billingPeriod": {"start": "20231101T000000.000Z", "end": "20231201T000000.000Z"},
                "reportKeys": [
                    f"cur-prefix/{report}/20231101-20231201/{assembly}/{report}-1.csv.gz"
                ],
            }
        )
    )
    (export,) = find_exports(LocalStore(tmp_path))
    assert (export.billing_period, export.version, export.format) == ("2023-11", assembly, "cur1")
    result = read_export(LocalStore(tmp_path), export)
    assert result.rows_written == 1281
    assert result.rows["billed_cost"].sum() == Decimal("1.6823086974")


def test_manifest_pointing_at_a_missing_file_fails_loudly(tmp_path):
    _cur2_export(tmp_path, "exec-1", 0.5, mtime=1_775_000_000)
    (export,) = find_exports(LocalStore(tmp_path))
    Path(tmp_path / export.data_keys[0]).unlink()
    with pytest.raises(SourceFormatError, match="not in the landing store"):
        read_export(LocalStore(tmp_path), export)


def _expected_demo_bill(world) -> tuple[int, Decimal]:
    """The demo bill recomputed line by line from the world, independently of bill.py."""
    rows, total = 0, Decimal(0)
    commitment = Decimal(str(world.savings_plan_hourly_commitment))
    for day in world.day_list:
        for _hour in range(24):
            for inst in world.instances:
                if inst.provider != "AWS" or not world.instance_active(inst, day):
                    continue
                price = Decimal(str(inst.on_demand_usd_per_hour))
                # Covered: usage + negation cancel out in billed cost.
                rows += 2 if inst.savings_plan_covered else 1
                total += 0 if inst.savings_plan_covered else price
            rows += 1  # the hourly Savings Plan fee
            total += commitment
        rows += len(bill.AWS_DAILY_SERVICES)
        total += sum(s.cost for s in bill.AWS_DAILY_SERVICES)
    tax = (total * bill.TAX_RATE).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return rows + 2, total + tax + bill.CREDIT


def test_demo_bill_reads_back_through_manifest_and_focus(tmp_path):
    world = build_world(days=2, requests_per_day=100)
    totals = bill.write_bill(world, tmp_path)
    store = LocalStore(tmp_path)
    (export,) = find_exports(store)
    assert (export.name, export.billing_period, export.format) == (
        bill.EXPORT_NAME,
        "2026-10",
        "cur2",
    )
    result = read_export(store, export)
    expected_rows, expected_total = _expected_demo_bill(world)
    # By hand: hourly on demand 98.32 + 1.861 + 1.861 (+ 1.861 on day 2), 70.00 commitment,
    # 18.1575 of daily services: 8338.995 before tax, 500.34 tax, -250 credit.
    assert (expected_rows, expected_total) == (324, Decimal("8589.335"))
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (
        expected_rows,
        expected_rows,
        0,
    )
    assert result.rows["billed_cost"].sum() == expected_total
    assert result.rows["effective_cost"].sum() == expected_total  # unused commitment stays visible
    assert totals["aws_cur_rows"] == expected_rows and totals["aws_billed_cost"] == expected_total
    gpu = result.rows.filter(pl.col("usage_type").str.starts_with("BoxUsage:"))
    assert gpu["tags"].str.contains('"cost_center":"ml-inference"').all()
    platform = result.rows.filter(pl.col("tags").str.contains('"cost_center":"ml-platform"'))
    assert sorted(platform["service_category"].unique().to_list()) == [
        "Compute",
        "Storage",
    ]  # EKS, EFS
    fee = result.rows.filter(pl.col("charge_type") == "SavingsPlanRecurringFee")
    assert fee["effective_cost"][0] == Decimal("1.176")  # 70 - 0.7 * 98.32 unused each hour

    azure = read_focus(store)
    assert (azure.rows_written, azure.rows_quarantined) == (
        6,
        0,
    )  # 2 days x (VM + disk + bandwidth)
    assert azure.rows["billed_cost"].sum() == Decimal("4729.84")  # 2 x (24 x 98.32 + 4.37 + 0.87)
    assert azure.rows.filter(pl.col("instance_type").is_not_null())[
        "instance_type"
    ].unique().to_list() == ["Standard_ND96isr_H100_v5"]
    assert totals["azure_billed_cost"] == Decimal("4729.84")


def test_split_lines_sharing_an_identity_get_numbered_ids():
    csv = (
        "identity_line_item_id,identity_time_interval,line_item_line_item_type,"
        "line_item_usage_start_date,line_item_usage_end_date,line_item_usage_type,"
        "line_item_unblended_cost,line_item_currency_code,split_line_item_parent_resource_id\n"
        "abc,2026-03-01T00:00:00Z/2026-03-01T01:00:00Z,Usage,2026-03-01T00:00:00Z,"
        "2026-03-01T01:00:00Z,BoxUsage:m7i.4xlarge,8.0,USD,\n"
        "pod,2026-03-01T00:00:00Z/2026-03-01T01:00:00Z,Usage,2026-03-01T00:00:00Z,"
        "2026-03-01T01:00:00Z,EKSPod-EC2:vCPUHours,0,USD,i-parent\n"
        "pod,2026-03-01T00:00:00Z/2026-03-01T01:00:00Z,Usage,2026-03-01T00:00:00Z,"
        "2026-03-01T01:00:00Z,EKSPod-EC2:vCPUHours,0,USD,i-parent\n"
    )
    rows = read_cur_file(csv.encode(), source_file="s.csv", export_version="e", fmt="cur2").rows
    interval = "2026-03-01T00:00:00Z/2026-03-01T01:00:00Z"
    assert rows["source_line_id"].to_list() == [
        f"abc|{interval}",
        f"pod|{interval}",
        f"pod|{interval}#2",
    ]


def test_resource_tags_that_are_not_json_fail_the_file():
    csv = (
        "line_item_line_item_type,line_item_usage_start_date,line_item_usage_end_date,"
        "line_item_unblended_cost,line_item_currency_code,resource_tags\n"
        'Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,1.0,USD,"{""user_team"": ""ml""}"\n'
        "Usage,2026-03-01T00:00:00Z,2026-03-01T01:00:00Z,1.0,USD,team=ml\n"
    )
    with pytest.raises(SourceFormatError, match=r"tags\.csv.*resource_tags.*JSON object"):
        read_cur_file(csv.encode(), source_file="tags.csv", export_version="e", fmt="cur2")
