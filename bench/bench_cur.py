"""How fast does the CUR connector normalize a big month, against a bare DuckDB lower bound?

    .venv/bin/python bench/bench_cur.py --rows 1000000

Generates N CUR rows (vectorized, in a temporary folder) twice: as a CUR 2.0 Parquet file
(snake_case columns, `resource_tags` / `product` maps) and as a legacy CUR 1.0 CSV
(`lineItem/...` columns, one column per tag). For each file it times, each in its own
child process so peak memory is that measurement's alone:

- **connector**: `read_cur_file` (parse, validate, map to billing_line_items) and the
  lake write of its rows as Parquet;
- **lower bound**: DuckDB reads the same file, casts the cost columns to DECIMAL(38,12)
  and writes Parquet, nothing else.

It prints a markdown table: seconds, rows/s, peak RSS of the child, and the connector's
ratio to the lower bound. Targets: ratio <= 2.5 and peak < 1.5 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
COST_COLUMNS = [
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "line_item_blended_cost",
    "pricing_public_on_demand_cost",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
    "reservation_effective_cost",
]
TARGET_RATIO = 2.5
TARGET_PEAK_MB = 1536


# --- data -------------------------------------------------------------------------------


def _pick(i: pl.Expr, values: list) -> pl.Expr:
    """values[i mod len], vectorized."""
    return pl.lit(pl.Series(values)).get(i % len(values))


def generate_cur2(rows: int) -> pl.DataFrame:
    """A month of CUR 2.0 lines: EC2 GPU fleets (on demand and Savings Plan covered),
    S3, data transfer, EKS pods, Bedrock tokens and tax, with tags and product maps."""
    i = pl.int_range(rows, dtype=pl.Int64)
    hour = (i // 1400) % 720  # ~1,400 lines an hour over 30 days
    start = pl.datetime(2026, 3, 1) + pl.duration(hours=hour)
    kind = (i * 2654435761) % 100  # spread line types without a Python loop
    line_type = (
        pl.when(kind < 70)
        .then(pl.lit("Usage"))
        .when(kind < 82)
        .then(pl.lit("SavingsPlanCoveredUsage"))
        .when(kind < 94)
        .then(pl.lit("SavingsPlanNegation"))
        .when(kind < 97)
        .then(pl.lit("DiscountedUsage"))
        .when(kind < 99)
        .then(pl.lit("SavingsPlanRecurringFee"))
        .otherwise(pl.lit("Tax"))
    )
    product = _pick(i, ["AmazonEC2", "AmazonEC2", "AmazonS3", "AWSDataTransfer", "AmazonBedrock"])
    usage_type = _pick(
        i,
        [
            "USE1-BoxUsage:p5.48xlarge",
            "USE1-BoxUsage:g6e.xlarge",
            "USE1-TimedStorage-ByteHrs",
            "USE1-DataTransfer-Out-Bytes",
            "USE1-Claude3.5Sonnet-InputTokenCount",
        ],
    )
    instance = _pick(i, ["p5.48xlarge", "g6e.xlarge", None, None, None])
    cost = ((i * 7919) % 100_000).cast(pl.Float64) / 1000.0  # up to 99.999, 3 decimals
    frame = pl.select(
        identity_line_item_id=(i * 11400714819323198485 % (2**61)).cast(pl.String),
        identity_time_interval=pl.format(
            "{}/{}",
            start.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            (start + pl.duration(hours=1)).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
        bill_invoice_id=pl.lit("2026-03-INV-1"),
        bill_invoicing_entity=pl.lit("Amazon Web Services, Inc."),
        bill_billing_entity=pl.lit("AWS"),
        bill_bill_type=pl.lit("Anniversary"),
        bill_payer_account_id=pl.lit("111122223333"),
        bill_billing_period_start_date=pl.datetime(2026, 3, 1),
        bill_billing_period_end_date=pl.datetime(2026, 4, 1),
        line_item_usage_account_id=_pick(i, ["111122223333", "444455556666", "777788889999"]),
        line_item_line_item_type=line_type,
        line_item_usage_start_date=start,
        line_item_usage_end_date=start + pl.duration(hours=1),
        line_item_product_code=product,
        line_item_usage_type=usage_type,
        line_item_operation=_pick(i, ["RunInstances", "RunInstances:SV001", "StandardStorage"]),
        line_item_availability_zone=_pick(i, ["us-east-1a", "us-east-1b", None]),
        line_item_resource_id=pl.format("i-{}", (i % 5000).cast(pl.String)),
        line_item_usage_amount=pl.lit(1.0),
        line_item_normalization_factor=pl.lit(64.0),
        line_item_currency_code=pl.lit("USD"),
        line_item_unblended_rate=cost,
        line_item_unblended_cost=pl.when(line_type == "SavingsPlanNegation")
        .then(-cost)
        .otherwise(cost),
        line_item_net_unblended_cost=pl.lit(None, dtype=pl.Float64),
        line_item_blended_cost=cost,
        line_item_line_item_description=pl.format("{} usage", usage_type),
        line_item_tax_type=pl.when(line_type == "Tax").then(pl.lit("VAT")),
        product_servicecode=product,
        product_region_code=pl.lit("us-east-1"),
        product_instance_type=instance,
        product_sku=pl.format("SKU{}", (i % 300).cast(pl.String)),
        product=pl.struct(
            product_name=pl.format("Amazon {}", product),
            region=pl.lit("us-east-1"),
            instance_family=pl.lit("GPU instance"),
        ).struct.json_encode(),
        pricing_public_on_demand_cost=cost,
        pricing_public_on_demand_rate=cost,
        pricing_term=pl.lit("OnDemand"),
        pricing_unit=_pick(i, ["Hrs", "Hrs", "GB-Mo", "GB", "Tokens"]),
        savings_plan_savings_plan_a_r_n=pl.when(line_type.str.starts_with("SavingsPlan")).then(
            pl.lit("arn:aws:savingsplans::111122223333:savingsplan/sp-1")
        ),
        savings_plan_savings_plan_effective_cost=pl.when(
            line_type == "SavingsPlanCoveredUsage"
        ).then(cost * 0.7),
        savings_plan_total_commitment_to_date=pl.when(line_type == "SavingsPlanRecurringFee").then(
            cost
        ),
        savings_plan_used_commitment=pl.when(line_type == "SavingsPlanRecurringFee").then(
            cost * 0.9
        ),
        reservation_reservation_a_r_n=pl.when(line_type == "DiscountedUsage").then(
            pl.lit("arn:aws:ec2:us-east-1:111122223333:reserved-instances/ri-1")
        ),
        reservation_effective_cost=pl.when(line_type == "DiscountedUsage").then(cost * 0.6),
        resource_tags=pl.struct(
            user_team=_pick(i, ["ml", "search", "platform"]),
            user_deployment=_pick(i, ["llama-70b", "qwen-32b", None, "mixtral"]),
            user_cost_center=pl.lit("ml-inference"),
        ).struct.json_encode(),
    )
    # Both maps as CUR 2.0 writes them: Parquet maps of string -> string.
    as_map = pl.Map(pl.String, pl.String)
    return frame.with_columns(
        pl.col("product").str.json_decode(as_map),
        pl.col("resource_tags").str.json_decode(as_map),
    )


def legacy_csv_frame(cur2: pl.DataFrame) -> pl.DataFrame:
    """The same lines with legacy CUR 1.0 names and one column per tag."""
    renames = {
        "identity_line_item_id": "identity/LineItemId",
        "identity_time_interval": "identity/TimeInterval",
        "bill_invoice_id": "bill/InvoiceId",
        "bill_invoicing_entity": "bill/InvoicingEntity",
        "bill_billing_entity": "bill/BillingEntity",
        "bill_bill_type": "bill/BillType",
        "bill_payer_account_id": "bill/PayerAccountId",
        "bill_billing_period_start_date": "bill/BillingPeriodStartDate",
        "bill_billing_period_end_date": "bill/BillingPeriodEndDate",
        "line_item_usage_account_id": "lineItem/UsageAccountId",
        "line_item_line_item_type": "lineItem/LineItemType",
        "line_item_usage_start_date": "lineItem/UsageStartDate",
        "line_item_usage_end_date": "lineItem/UsageEndDate",
        "line_item_product_code": "lineItem/ProductCode",
        "line_item_usage_type": "lineItem/UsageType",
        "line_item_operation": "lineItem/Operation",
        "line_item_availability_zone": "lineItem/AvailabilityZone",
        "line_item_resource_id": "lineItem/ResourceId",
        "line_item_usage_amount": "lineItem/UsageAmount",
        "line_item_normalization_factor": "lineItem/NormalizationFactor",
        "line_item_currency_code": "lineItem/CurrencyCode",
        "line_item_unblended_rate": "lineItem/UnblendedRate",
        "line_item_unblended_cost": "lineItem/UnblendedCost",
        "line_item_net_unblended_cost": "lineItem/NetUnblendedCost",
        "line_item_blended_cost": "lineItem/BlendedCost",
        "line_item_line_item_description": "lineItem/LineItemDescription",
        "line_item_tax_type": "lineItem/TaxType",
        "product_servicecode": "product/servicecode",
        "product_region_code": "product/regionCode",
        "product_instance_type": "product/instanceType",
        "product_sku": "product/sku",
        "pricing_public_on_demand_cost": "pricing/publicOnDemandCost",
        "pricing_public_on_demand_rate": "pricing/publicOnDemandRate",
        "pricing_term": "pricing/term",
        "pricing_unit": "pricing/unit",
        "savings_plan_savings_plan_a_r_n": "savingsPlan/SavingsPlanARN",
        "savings_plan_savings_plan_effective_cost": "savingsPlan/SavingsPlanEffectiveCost",
        "savings_plan_total_commitment_to_date": "savingsPlan/TotalCommitmentToDate",
        "savings_plan_used_commitment": "savingsPlan/UsedCommitment",
        "reservation_reservation_a_r_n": "reservation/ReservationARN",
        "reservation_effective_cost": "reservation/EffectiveCost",
    }
    tags = pl.col("resource_tags")
    return cur2.select(
        *[pl.col(old).alias(new) for old, new in renames.items()],
        pl.col("product").map.get("product_name").alias("product/ProductName"),
        tags.map.get("user_team").alias("resourceTags/user:team"),
        tags.map.get("user_deployment").alias("resourceTags/user:deployment"),
        tags.map.get("user_cost_center").alias("resourceTags/user:cost_center"),
    ).with_columns(
        pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


# --- measurements (each run in a child process) ----------------------------------------------


def measure_connector(path: Path, fmt: str, out: Path) -> dict:
    from connectors.aws_cur import read_cur_file

    started = time.perf_counter()
    result = read_cur_file(path, source_file=path.name, export_version="bench", fmt=fmt)
    result.rows.write_parquet(out)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result.rows_written, "quarantined": result.rows_quarantined}


def measure_duckdb(path: Path, fmt: str, out: Path) -> dict:
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect()
    if path.suffix == ".parquet":
        source = f"read_parquet('{path}')"
        names = COST_COLUMNS
    else:
        source = f"read_csv('{path}', header = true)"
        names = [legacy for legacy in _legacy_cost_names()]
    columns = con.sql(f"select * from {source} limit 0").columns
    casts = ", ".join(
        f'cast("{c}" as decimal(38, 12)) as "{c}"' for c in names if c in columns
    )
    con.execute(
        f"copy (select * replace ({casts}) from {source}) to '{out}' (format parquet)"
    )
    rows = con.execute(f"select count(*) from read_parquet('{out}')").fetchall()[0][0]
    con.close()
    return {"seconds": time.perf_counter() - started, "rows": rows, "quarantined": 0}


def _legacy_cost_names() -> list[str]:
    from connectors.aws_cur import legacy_column_name

    legacy = legacy_csv_frame(generate_cur2(1)).columns
    return [c for c in legacy if legacy_column_name(c) in COST_COLUMNS]


def _peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM).

    Not getrusage's ru_maxrss: Linux carries a process's high-water mark across fork and
    exec, so a child started by this (big) parent would report the parent's memory.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _child(kind: str, path: Path, fmt: str, out: Path) -> dict:
    """Run one measurement in a fresh interpreter, so its peak memory is its own."""
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", kind, str(path), fmt, str(out)],
        capture_output=True,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} measurement of {path.name} failed: {proc.stderr.decode()}")
    return json.loads(proc.stdout)


def _best(runs: list[dict]) -> dict:
    """The fastest run, with the highest peak memory seen over all runs."""
    fastest = min(runs, key=lambda r: r["seconds"])
    return {**fastest, "peak_mb": max(r["peak_mb"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best)")
    parser.add_argument("--measure", nargs=4, metavar=("KIND", "PATH", "FMT", "OUT"))
    args = parser.parse_args()
    if args.measure:
        kind, path, fmt, out = args.measure
        sys.path.insert(0, str(REPO))
        measure = measure_connector if kind == "connector" else measure_duckdb
        print(json.dumps({**measure(Path(path), fmt, Path(out)), "peak_mb": _peak_rss_mb()}))
        return

    with tempfile.TemporaryDirectory(prefix="bench_cur_") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        cur2 = generate_cur2(args.rows)
        files = {
            "CUR 2.0 Parquet": (folder / "cur2.parquet", "cur2"),
            "legacy CUR CSV": (folder / "legacy.csv", "cur1"),
        }
        cur2.write_parquet(files["CUR 2.0 Parquet"][0])
        legacy_csv_frame(cur2).write_csv(files["legacy CUR CSV"][0])
        del cur2
        elapsed = time.perf_counter() - started
        print(f"generated {args.rows:,} rows in {elapsed:.1f} s", file=sys.stderr)

        print(f"\n{args.rows:,} CUR rows, {os.cpu_count()} cores, best of {args.repeat}\n")
        print("| file | size | reader | seconds | rows/s | peak RSS | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        failures = []
        for label, (path, fmt) in files.items():
            size_mb = path.stat().st_size / 2**20
            # Best of --repeat runs, alternating, so a busy moment of a shared machine
            # does not land on one side only.
            runs = [
                (_child("duckdb", path, fmt, folder / "bound.parquet"),
                 _child("connector", path, fmt, folder / "ours.parquet"))
                for _ in range(args.repeat)
            ]
            bound = _best([b for b, _ in runs])
            ours = _best([o for _, o in runs])
            if ours["rows"] + ours["quarantined"] != args.rows or bound["rows"] != args.rows:
                raise RuntimeError(f"{label}: row counts differ: {ours} vs {bound}")
            ratio = ours["seconds"] / bound["seconds"]
            for name, m in [("DuckDB read-cast-write", bound), ("read_cur_file + write", ours)]:
                print(
                    f"| {label} | {size_mb:.0f} MB | {name} | {m['seconds']:.2f} |"
                    f" {args.rows / m['seconds']:,.0f} | {m['peak_mb']:,.0f} MB |"
                    f" {'' if m is bound else f'{ratio:.2f}x'} |"
                )
            if ratio > TARGET_RATIO or ours["peak_mb"] > TARGET_PEAK_MB:
                failures.append(f"{label}: {ratio:.2f}x, {ours['peak_mb']:,.0f} MB")
        print()
        print("targets met" if not failures else f"targets missed: {'; '.join(failures)}")


if __name__ == "__main__":
    main()
