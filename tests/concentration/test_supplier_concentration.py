"""supplier_concentration: HHI, top share, bands and warnings against a hand computation."""

from __future__ import annotations

import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt"
# The reference data it reads: seeds, and the FX table (the seed, this lake having no fx_rates).
SEEDS = "concentration_settings gpu_instance_catalog fx_rates stg_lake__fx_rates"


def _dbt(root: Path, warehouse: Path, *args: str, vars: dict | None = None) -> None:
    from dbt.cli.main import dbtRunner  # heavy: only when a test runs dbt

    cli = [*args, "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT),
           "--target-path", str(root / "target"), "--log-path", str(root / "logs"), "--quiet"]
    if vars:
        cli += ["--vars", json.dumps(vars)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFERLEDGER_LAKE", str(root / "lake"))
        mp.setenv("INFERLEDGER_WAREHOUSE", str(warehouse))
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        mp.setenv("DBT_VERSION_CHECK", "false")
        result = dbtRunner().invoke(cli)
    failures = [f"{r.node.name}: {r.status} {r.message}" for r in (result.result or [])
                if str(r.status) not in ("success", "pass", "warn")]
    assert result.success and not failures, result.exception or failures


# (day, provider, region, instance_type, scope_reason, category, currency, effective_cost)
BILL = [
    ("2026-09-01", "AWS", "us-east-1", "p5.48xlarge", "gpu_compute", "Usage", "USD", "500"),
    ("2026-09-01", "Microsoft", "eastus", "Standard_ND96isr_H100_v5", "gpu_compute", "Usage", "USD", "500"),
    ("2026-10-01", "AWS", "us-east-1", "p5.48xlarge", "gpu_compute", "Usage", "USD", "500"),
    ("2026-10-01", "AWS", "us-east-1", "g6e.xlarge", "gpu_compute", "Usage", "USD", "100"),
    ("2026-10-01", "Microsoft", "eastus", "Standard_ND96isr_H100_v5", "gpu_compute", "Usage", "USD", "400"),
    # EUR 100 at the fx_rates seed's rate of the day (or the latest earlier one).
    ("2026-10-01", "Microsoft", "eastus", None, "other_service", "Usage", "EUR", "100"),
    ("2026-10-01", "AWS", None, None, "not_usage", "Tax", "USD", "999"),  # not spend on a supplier
]
# (day, provider, line_type, total_cost in USD)
INFERENCE = [
    ("2026-09-01", "AWS", "request", "500"), ("2026-09-01", "openai", "api", "500"),
    ("2026-10-01", "AWS", "request", "300"), ("2026-10-01", "AWS", "idle", "100"),
    ("2026-10-01", "openai", "api", "100"),
]


@pytest.fixture(scope="module")
def hand_case(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    root = tmp_path_factory.mktemp("concentration")
    warehouse = root / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table fct_billing_line_items (usage_date date, provider varchar, region_id varchar,"
                    " instance_type varchar, scope_reason varchar, charge_category varchar,"
                    " billing_currency varchar, effective_cost decimal(38,12))")
        con.executemany("insert into fct_billing_line_items values (?, ?, ?, ?, ?, ?, ?, ?)", BILL)
        con.execute("create table fct_inference_costs_daily (usage_date date, provider varchar,"
                    " line_type varchar, total_cost decimal(38,12))")
        con.executemany("insert into fct_inference_costs_daily values (?, ?, ?, ?)", INFERENCE)
    # The daily supplier spend of every day (the days before the window are what earlier
    # runs left), then the run of 1 October.
    _dbt(root, warehouse, "build", "--select", *SEEDS.split(), "supplier_spend_daily")
    _dbt(root, warehouse, "build", "--select", "supplier_concentration",
         vars={"min_date": "2026-10-01", "max_date": "2026-10-02"})
    with duckdb.connect(str(warehouse)) as con:
        rows = con.sql("select * from supplier_concentration").pl().rows(named=True)
        spend = {(d, s): v for d, s, v in con.sql("select dimension, supplier, spend_usd from supplier_spend_daily "
                                                  "where usage_date = '2026-10-01'").fetchall()}
        (eur,) = con.sql("select usd_per_unit from fx_rates where currency = 'EUR' "
                         "and date <= date '2026-10-01' order by date desc limit 1").fetchall()[0]
    return {"eur_usd": eur, "spend": spend, **{(r["period_type"], r["dimension"]): r for r in rows}}


def _hhi(*spend: float) -> float:
    total = sum(spend)
    return sum((s / total * 100) ** 2 for s in spend)


def test_the_daily_supplier_spend_is_the_usage_lines_and_the_priced_inference(hand_case: dict) -> None:
    eur = Decimal(str(hand_case["eur_usd"])) * 100
    assert hand_case["spend"] == {
        # The tax line is no spend on a supplier; the EUR line is converted at the day's rate.
        ("cloud_provider", "AWS"): Decimal(600), ("cloud_provider", "Microsoft"): 400 + eur,
        ("region", "us-east-1"): Decimal(600), ("region", "eastus"): 400 + eur,
        # GPU compute lines of a known instance type only.
        ("gpu_vendor", "NVIDIA"): Decimal(1000),
        ("gpu_model", "H100"): Decimal(900), ("gpu_model", "L40S"): Decimal(100),
        # Requests and idle GPUs are one self-hosted supplier.
        ("model_provider", "self-hosted"): Decimal(400), ("model_provider", "openai"): Decimal(100),
    }


def test_only_the_run_windows_periods_are_written(hand_case: dict) -> None:
    assert sorted(k for k in hand_case if isinstance(k, tuple)) == sorted(
        (period, dim) for period in ("month", "trailing_30d")
        for dim in ("cloud_provider", "gpu_model", "gpu_vendor", "model_provider", "region")
    )
    trailing = hand_case[("trailing_30d", "cloud_provider")]
    assert (trailing["period_start"], trailing["period_end"], trailing["usage_date"]) == (
        date(2026, 9, 2), date(2026, 10, 2), date(2026, 10, 1))
    month = hand_case[("month", "cloud_provider")]
    assert (month["period_start"], month["period_end"]) == (date(2026, 10, 1), date(2026, 11, 1))


@pytest.mark.parametrize("period", ["trailing_30d", "month"])
def test_hhi_and_top_share_match_the_hand_computation(hand_case: dict, period: str) -> None:
    cloud = hand_case[(period, "cloud_provider")]
    # AWS 500 + 100; Microsoft 400 + EUR 100 (116 USD at 1.16): shares 600/1116, 516/1116.
    microsoft = 400 + 100 * float(hand_case["eur_usd"])
    assert cloud["total_spend_usd"] == Decimal(1000) + 100 * hand_case["eur_usd"]
    assert cloud["hhi"] == pytest.approx(_hhi(600, microsoft))  # 5028.33 at 1.16
    assert (cloud["top_supplier"], cloud["supplier_count"]) == ("AWS", 2)
    assert cloud["top_share"] == pytest.approx(600 / (600 + microsoft))
    assert hand_case[(period, "region")]["hhi"] == pytest.approx(_hhi(600, microsoft))
    gpu_model = hand_case[(period, "gpu_model")]
    assert gpu_model["hhi"] == pytest.approx(8200)  # H100 900, L40S 100: 90^2 + 10^2
    assert gpu_model["effective_suppliers"] == pytest.approx(10000 / 8200)
    assert gpu_model["top_supplier"] == "H100"
    assert hand_case[(period, "gpu_vendor")]["hhi"] == pytest.approx(10000)
    model = hand_case[(period, "model_provider")]
    assert model["hhi"] == pytest.approx(6800)  # self-hosted 400, openai 100
    assert (model["top_supplier"], model["top_share"]) == ("self-hosted", pytest.approx(0.8))
    assert model["top_share_exceeded"] and cloud["top_share_exceeded"]  # 0.8 and 0.54 > 0.5


@pytest.mark.parametrize("period", ["trailing_30d", "month"])
def test_warning_when_hhi_rises_more_than_100_points(hand_case: dict, period: str) -> None:
    model = hand_case[(period, "model_provider")]  # 50/50 in September: 5000 -> 6800
    assert (model["previous_hhi"], model["hhi_change"]) == (pytest.approx(5000), pytest.approx(1800))
    assert model["concentration_warning"]
    cloud = hand_case[(period, "cloud_provider")]  # 5000 -> about 5028: under 100 points
    assert cloud["hhi_change"] == pytest.approx(_hhi(600, 400 + 100 * float(hand_case["eur_usd"])) - 5000)
    assert not cloud["concentration_warning"]
    gpu_model = hand_case[(period, "gpu_model")]  # fell from 10000
    assert gpu_model["hhi_change"] == pytest.approx(-1800) and not gpu_model["concentration_warning"]
    assert {r["risk_level"] for k, r in hand_case.items() if isinstance(k, tuple)} == {"highly_concentrated"}


def test_demo_month_has_a_highly_concentrated_dimension(demo_month: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(demo_month / "warehouse.duckdb", warehouse)
    _dbt(tmp_path, warehouse, "build", "--select", "concentration_settings", "supplier_concentration",
         vars={"min_date": "2026-10-01", "max_date": "2026-10-31"})
    with duckdb.connect(str(warehouse)) as con:
        rows = dict(con.sql("select dimension, hhi from supplier_concentration "
                            "where period_type = 'month' and risk_level = 'highly_concentrated'").fetchall())
    assert rows["gpu_vendor"] == 10000  # every GPU is NVIDIA
    assert rows["cloud_provider"] > 1800  # AWS and Microsoft, about 64/36
