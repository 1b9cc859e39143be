"""Fixtures for the warehouse tests: write a small lake, run the dbt project on it in-process.

Each test module builds its own lake and DuckDB file under a temporary folder and keeps dbt's
target and logs there too, so parallel runs never share state with the checkout's dbt/target.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from connectors.lake import ensure_table, replace_partition
from connectors.schemas import LAKE_TABLES, conform

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt"

# Which column decides a row's lake partition (DESIGN.md: the hive `date` of each table).
PARTITION_COLUMN = {
    "billing_line_items": "charge_period_start",
    "gateway_requests": "ts_start",
    "gpu_hourly": "hour_start",
    "vllm_hourly": "hour_start",
}
SCHEMAS = LAKE_TABLES

MARTS = (
    "fct_billing_line_items",
    "fct_inference_costs_hourly",
    "cost_per_token_daily",
    "feature_costs_daily",
    "customer_costs_daily",
    "billing_reconciliation_daily",
    "cache_savings_daily",
    "self_hosting_break_even_daily",
    "gpu_rates_daily",
)


class Warehouse:
    """A lake and a DuckDB warehouse in one folder, and the dbt project run against them."""

    def __init__(self, root: Path, lake: Path | None = None) -> None:
        self.root = root
        self.lake = lake or root / "lake"
        self.path = root / "warehouse.duckdb"

    # Row builders in the normalized schemas, with the defaults a test does not care about.
    @staticmethod
    def utc(day: date, hour: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)

    @staticmethod
    def bill_line(
        line_id: str,
        start: datetime,
        hours: int,
        cost: str,
        *,
        provider: str = "AWS",
        currency: str = "USD",
        category: str = "Usage",
        instance_type: str | None = None,
        resource_id: str | None = None,
        service: str = "Amazon Elastic Compute Cloud",
        tags: dict[str, str] | None = None,
        commitment_status: str | None = None,
        billed: str | None = None,
        charge_type: str | None = None,
        commitment_id: str | None = None,
        region: str | None = None,
        usage_type: str | None = None,
        list_cost: str | None = None,
        consumed: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """A normalized bill line; `cost` is a decimal string used as effective cost, and as
        billed cost unless `billed` says otherwise (Savings Plan covered usage, negations);
        `list_cost` is the on-demand cost (none unless given); `consumed` the consumed
        quantity and its unit ("0.25", "Hrs")."""
        return {
            "source": "test",
            "source_file": "bill.csv",
            "source_line_id": line_id,
            "provider": provider,
            "billing_account_id": "acct-1",
            "billing_period_start": start.replace(day=1, hour=0),
            "charge_period_start": start,
            "charge_period_end": start + timedelta(hours=hours),
            "charge_category": category,
            "service_name": service,
            "resource_id": resource_id,
            "instance_type": instance_type,
            "commitment_discount_status": commitment_status,
            "commitment_discount_id": commitment_id,
            "charge_type": charge_type,
            "region_id": region,
            "usage_type": usage_type,
            "billed_cost": Decimal(billed if billed is not None else cost),
            "effective_cost": Decimal(cost),
            "list_cost": Decimal(list_cost) if list_cost is not None else None,
            "consumed_quantity": Decimal(consumed[0]) if consumed else None,
            "consumed_unit": consumed[1] if consumed else None,
            "billing_currency": currency,
            "tags": json.dumps(tags or {}),
        }

    @staticmethod
    def request(
        request_id: str,
        ts: datetime,
        *,
        deployment: str | None,
        model: str,
        customer: str,
        feature: str,
        input_uncached: int = 0,
        cache_read: int = 0,
        cache_write: int = 0,
        output: int = 0,
        reasoning: int = 0,
        status: str = "success",
        provider: str = "hosted_vllm",
        self_hosted: bool = True,
    ) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "source": "generic",
            "source_file": "gw.jsonl",
            "ts_start": ts,
            "ts_end": ts + timedelta(seconds=2),
            "latency_ms": 2000.0,
            "provider": provider,
            "model_requested": model,
            "model_served": model,
            "deployment": deployment,
            "is_self_hosted": self_hosted,
            "customer_id": customer,
            "feature": feature,
            "status": status,
            "gateway_cache_hit": False,
            "input_uncached_tokens": input_uncached,
            "cache_read_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "output_tokens": output,
            "reasoning_tokens": reasoning,
        }

    @staticmethod
    def gpu_hour(
        hostname: str,
        hour_start: datetime,
        gpu_index: int,
        busy: float | None,
        energy_wh: float,
        gpu_fraction: float = 1.0,
        *,
        mig_profile: str | None = None,
        mig_instance_id: str | None = None,
        k8s_namespace: str | None = None,
        k8s_pod: str | None = None,
    ) -> dict[str, Any]:
        """A GPU's hour; with `mig_profile` one MIG slice of it (slices share the GPU's UUID)."""
        return {
            "hour_start": hour_start,
            "hostname": hostname,
            "gpu_uuid": f"GPU-{hostname}-{gpu_index}",
            "gpu_index": gpu_index,
            "gpu_model": "NVIDIA H100 80GB HBM3",
            "mig_profile": mig_profile,
            "mig_instance_id": mig_instance_id,
            "k8s_namespace": k8s_namespace,
            "k8s_pod": k8s_pod,
            "gpu_fraction": gpu_fraction,
            "samples": 60,
            "gpu_util_pct_avg": None if busy is None else busy * 100,
            "busy_fraction": busy,
            "power_w_avg": energy_wh,
            "energy_wh": energy_wh,
        }

    @staticmethod
    def inventory_row(
        hostname: str,
        provider: str,
        resource_id: str,
        deployment: str,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
    ) -> dict[str, Any]:
        return {
            "hostname": hostname,
            "provider": provider,
            "resource_id": resource_id,
            "deployment": deployment,
            "valid_from": valid_from,
            "valid_to": valid_to,
        }

    def write(self, table: str, rows: list[dict[str, Any]], day: date | None = None) -> None:
        """Write rows as the lake's partitions: by their own date, or all into `day`."""
        schema = SCHEMAS[table]
        by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_day[day or row[PARTITION_COLUMN[table]].date()].append(row)
        for partition_day, day_rows in by_day.items():
            full = [{name: row.get(name) for name in schema} for row in day_rows]
            frame = conform(pl.DataFrame(full, schema=schema), schema)
            replace_partition(self.lake, table, partition_day, frame)

    def finish_lake(self) -> None:
        """Give every table at least one (empty) partition, as the ingestion does."""
        for table in ("billing_line_items", "gpu_hourly", "gateway_requests", "fleet_inventory"):
            ensure_table(self.lake, table)

    def dbt(self, *args: str, vars: dict[str, Any] | None = None, expect_success: bool = True):
        """Run a dbt command in-process; returns dbt's result."""
        from dbt.cli.main import dbtRunner  # dbt is heavy: import only when a test runs it

        cli = [
            *args,
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(self.root / "target"),
            "--log-path",
            str(self.root / "logs"),
            "--quiet",
        ]
        if vars:
            cli += ["--vars", json.dumps(vars)]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("INFERLEDGER_LAKE", str(self.lake))
            mp.setenv("INFERLEDGER_WAREHOUSE", str(self.path))
            mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            mp.setenv("DBT_VERSION_CHECK", "false")
            result = dbtRunner().invoke(cli)
        if expect_success:
            assert result.success, (
                f"dbt {' '.join(args)} failed: {result.exception or _failures(result)}"
            )
        return result

    def query(self, sql: str) -> pl.DataFrame:
        with duckdb.connect(str(self.path)) as con:
            return con.sql(sql).pl()

    def marts(self) -> dict[str, list[tuple]]:
        """Every mart's rows, sorted, for comparing whole builds."""
        with duckdb.connect(str(self.path)) as con:
            return {m: sorted(con.sql(f"select * from {m}").fetchall(), key=repr) for m in MARTS}


def _failures(result: Any) -> list[str]:
    return [
        f"{r.node.name}: {r.status} {r.message}"
        for r in (result.result or [])
        if str(r.status) not in ("success", "pass")
    ]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    yield Warehouse(tmp_path_factory.mktemp("warehouse"))
