"""The whole pipeline on a small generated month: conservation, balance, idempotency."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl

from pipelines.config import Settings
from pipelines.runner import run_range

MART_KEYS = {
    "cost_per_token_daily": "usage_date, provider, model, deployment",
    "customer_costs_daily": "usage_date, customer_id",
    "feature_costs_daily": "usage_date, feature, model",
    "billing_reconciliation_daily": "usage_date, provider, billing_currency",
}


def _query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(settings.warehouse, read_only=True) as con:
        return con.execute(sql).fetchall()


def test_marts_conserve_the_in_scope_bill_per_day_provider_currency(built: Settings) -> None:
    rows = _query(
        built,
        """
        select usage_date, provider, billing_currency, billed_in_scope,
               allocated + idle + shared + unattributed, passed
        from billing_reconciliation_daily order by 1, 2, 3
        """,
    )
    assert len(rows) == 4 * 2  # 4 days x (AWS, Microsoft), all USD
    for day, provider, currency, billed, parts, passed in rows:
        assert billed > 0, (day, provider)
        assert abs(billed - parts) < Decimal("0.005"), (day, provider, currency, billed, parts)
        assert passed


def test_in_scope_bill_equals_lake_recomputed_independently(built: Settings) -> None:
    """The lake's GPU-instance and shared-platform rows, summed with polars, match the mart."""
    lake = pl.read_parquet(Path(built.lake) / "billing_line_items" / "*" / "*.parquet", hive_partitioning=True)
    gpu_types = {"p5.48xlarge", "g6e.xlarge", "Standard_ND96isr_H100_v5"}
    in_scope = lake.filter(
        ((pl.col("charge_category") == "Usage") & pl.col("instance_type").is_in(gpu_types))
        | pl.col("tags").str.contains('"cost_center": ?"ml-platform"')
    )
    expected = in_scope.select(pl.col("effective_cost").sum()).item()
    mart = _query(built, "select sum(billed_in_scope) from billing_reconciliation_daily")[0][0]
    assert abs(Decimal(str(expected)) - mart) < Decimal("0.01")


def test_every_partition_balances_rows_read_written_quarantined(built: Settings) -> None:
    manifests = pl.read_parquet(Path(built.lake) / "_manifests" / "*" / "*" / "*.parquet")
    assert manifests.height == 4 * 5  # billing, inventory, gateway, gpu samples, vllm x 4 days
    bad = manifests.filter(pl.col("rows_read") != pl.col("rows_written") + pl.col("rows_quarantined"))
    assert bad.height == 0, bad
    gateway = manifests.filter(pl.col("table_name") == "gateway_requests")
    assert gateway.get_column("rows_written").sum() > 4 * 300


def test_gateway_tokens_survive_to_the_marts(built: Settings) -> None:
    lake = pl.read_parquet(Path(built.lake) / "gateway_requests" / "*" / "*.parquet")
    ok = lake.filter(pl.col("status") == "success")
    expected_out = ok.get_column("output_tokens").sum()
    mart_out = _query(built, "select sum(output_tokens) from fct_inference_costs_hourly")[0][0]
    assert mart_out == expected_out


def test_rerunning_a_partition_changes_no_mart_row(built: Settings) -> None:
    before = {m: sorted(_query(built, f"select * from {m} order by {k}")) for m, k in MART_KEYS.items()}
    run_range(built, date(2026, 10, 2), date(2026, 10, 2))
    after = {m: sorted(_query(built, f"select * from {m} order by {k}")) for m, k in MART_KEYS.items()}
    for mart in MART_KEYS:
        assert len(after[mart]) == len(before[mart]), mart
        assert after[mart] == before[mart], mart
