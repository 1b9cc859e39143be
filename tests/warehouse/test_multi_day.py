"""Three days, two clouds, two currencies: conservation per day, provider and currency, and
reruns of a window that replace exactly that window.

AWS bills in USD (hourly CUR-like lines), Microsoft in EUR (daily FOCUS-like lines). The lake
has a 48-hour shared line crossing days, a spare GPU node in no inventory, tax, a credit, an
unused commitment, a zero-cost Savings Plan negation, and a day on which Microsoft bills shared
cost but no GPU at all (that shared cost can only be unattributed).
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

D1, D2, D3 = date(2026, 10, 4), date(2026, 10, 5), date(2026, 10, 6)
DAYS = (D1, D2, D3)
HALF_CENT = Decimal("0.005")
CATALOG = Path(__file__).resolve().parents[2] / "dbt" / "seeds" / "gpu_instance_catalog.csv"
# The dbt tests that check conservation at each grain (day, hour, provider over the window).
CONSERVATION_TESTS = {
    "assert_cost_conserved",
    "assert_cost_conserved_hourly",
    "assert_cost_conserved_by_provider",
}
QWEN_VM = "/subscriptions/5c7d/resourceGroups/inference/providers/Microsoft.Compute/virtualMachines/nd-qwen-0"


def write_lake(wh) -> None:
    utc, bill, req, gpu = wh.utc, wh.bill_line, wh.request, wh.gpu_hour
    rng = random.Random(20261004)
    ml = {"cost_center": "ml-platform"}
    lines, telemetry, requests = [], [], []
    for d in DAYS:
        for h in range(24):
            t = utc(d, h)
            lines.append(
                bill(f"a-{t:%d%H}", t, 1, "98.32", instance_type="p5.48xlarge", resource_id="i-a")
            )
            lines.append(
                bill(f"b-{t:%d%H}", t, 1, "1.861", instance_type="g6e.xlarge", resource_id="i-b")
            )
            if d == D2 and h < 12:
                lines.append(
                    bill(
                        f"c-{t:%d%H}", t, 1, "1.861", instance_type="g6e.xlarge", resource_id="i-c"
                    )
                )
            if d != D3:
                telemetry += [
                    gpu("a-host", t, i, rng.choice([0.2, 0.45, 0.7, 0.9]), 550.0) for i in range(2)
                ]
            if d == D1:
                telemetry.append(gpu("qwen-host", t, 0, rng.choice([0.3, 0.6]), 600.0))
            for dep, model, share in (
                ("llama-70b", "meta-llama/Llama-3.1-70B-Instruct", 0.9),
                ("llama-8b", "meta-llama/Llama-3.1-8B-Instruct", 0.5),
                ("qwen-72b", "Qwen/Qwen2.5-72B-Instruct", 0.6),
            ):
                for n in range(rng.randint(0, 4) if rng.random() < share else 0):
                    requests.append(
                        req(
                            f"{dep}-{t:%d%H}-{n}",
                            t + timedelta(minutes=n),
                            deployment=dep,
                            model=model,
                            customer=rng.choice(["cust_a", "cust_b", "cust_c"]),
                            feature=rng.choice(["chat", "summarize"]),
                            input_uncached=rng.randint(0, 4000),
                            cache_read=rng.randint(0, 3000),
                            output=rng.randint(0, 1500),
                            status="failure" if rng.random() < 0.05 else "success",
                        )
                    )
            if h % 3 == 0:
                requests.append(
                    req(
                        f"api-{t:%d%H}",
                        t,
                        deployment=None,
                        model=rng.choice(["gpt-4o", "claude-sonnet-4-5"]),
                        customer="cust_b",
                        feature="chat",
                        input_uncached=2000,
                        output=500,
                        provider="openai",
                        self_hosted=False,
                    )
                )
        day0 = utc(d)
        lines.append(bill(f"elb-{d}", day0, 24, "37.25", service="Elastic Load Balancing", tags=ml))
        lines.append(bill(f"s3-{d}", day0, 24, "3.21", service="Amazon Simple Storage Service"))
        lines.append(
            bill(
                f"az-shared-{d}",
                day0,
                24,
                "12.00",
                provider="Microsoft",
                currency="EUR",
                service="Azure Monitor",
                tags=ml,
            )
        )
        if d != D3:
            lines.append(
                bill(
                    f"az-vm-{d}",
                    day0,
                    24,
                    "2150.40",
                    provider="Microsoft",
                    currency="EUR",
                    instance_type="Standard_ND96isr_H100_v5",
                    resource_id=QWEN_VM.lower(),  # Azure exports lower-case ARM ids
                    service="Virtual Machines",
                )
            )
    lines += [
        bill("shared-48h", utc(D1, 12), 48, "96.00", service="Amazon EKS", tags=ml),
        bill("sp-negation", utc(D1, 0), 1, "0", instance_type="p5.48xlarge", resource_id="i-a"),
        bill("tax", utc(D1), 24, "12.34", category="Tax", service="Tax"),
        bill("credit", utc(D2), 24, "-5.00", category="Credit", service="Credits"),
        bill(
            "unused-sp",
            utc(D3),
            24,
            "20.00",
            instance_type="p5.48xlarge",
            commitment_status="Unused",
            service="Savings Plans",
        ),
    ]
    wh.write("billing_line_items", lines)
    wh.write("gpu_hourly", telemetry)
    wh.write("gateway_requests", requests)
    inventory = [
        wh.inventory_row("a-host", "AWS", "i-a", "llama-70b"),
        wh.inventory_row("b-host", "AWS", "i-b", "llama-8b"),
        wh.inventory_row("qwen-host", "Microsoft", QWEN_VM, "qwen-72b"),
    ]
    wh.write("fleet_inventory", inventory, day=D3)
    wh.finish_lake()


@pytest.fixture(scope="module")
def built(warehouse):
    write_lake(warehouse)
    # The models' unit tests run once, in test_economics_scenario.
    result = warehouse.dbt("build", "--exclude-resource-type", "unit_test")
    statuses = {r.node.name: str(r.status) for r in result.result}
    assert all(statuses[test] == "pass" for test in CONSERVATION_TESTS)
    return warehouse


@pytest.fixture(scope="module")
def full_build_marts(built) -> dict[str, list[tuple]]:
    return built.marts()


def expected_in_scope(lake) -> dict[tuple[date, str, str], Decimal]:
    """In-scope EffectiveCost per day, provider and currency, straight from the lake's Parquet."""
    with open(CATALOG) as f:
        gpu_types = {row["instance_type"] for row in csv.DictReader(f)}
    bill = pl.read_parquet(f"{lake}/billing_line_items/*/*.parquet")
    totals: dict[tuple[date, str, str], Decimal] = defaultdict(Decimal)
    for line in bill.iter_rows(named=True):
        shared = json.loads(line["tags"]).get("cost_center") == "ml-platform"
        if (
            line["charge_category"] != "Usage"
            or line["commitment_discount_status"] == "Unused"
            or not (line["instance_type"] in gpu_types or shared)
        ):
            continue
        hours = int(
            (line["charge_period_end"] - line["charge_period_start"]).total_seconds() // 3600
        )
        for h in range(hours):
            day = (line["charge_period_start"] + timedelta(hours=h)).date()
            totals[(day, line["provider"], line["billing_currency"])] += (
                line["effective_cost"] / hours
            )
    return dict(totals)


def test_rerun_window_is_idempotent(built, full_build_marts) -> None:
    assert all(full_build_marts.values())
    # D2 again (it was built once inside the full build): only D2 is replaced, nothing doubles.
    built.dbt("run", vars={"min_date": str(D2), "max_date": str(D3)})
    assert built.marts() == full_build_marts
    # A wider window overlapping it, [D1, D3): same rows again.
    built.dbt("run", vars={"min_date": str(D1), "max_date": str(D3)})
    assert built.marts() == full_build_marts


def test_a_window_takes_from_the_lookback_only_lines_reaching_into_it(built, tmp_path) -> None:
    copy = _copy_of(built, tmp_path)
    copy.dbt(
        "run",
        "--select",
        "int_billing_line_items_scoped",
        vars={"min_date": str(D2), "max_date": str(D3)},
    )
    keys = copy.query("select billing_line_key, usage_date from int_billing_line_items_scoped")
    by_day = dict(keys.group_by("usage_date").len().iter_rows())
    # D2: 24 x (a, b) + 12 x c + elb, s3, az-shared, az-vm + credit = 65. From D1 only the
    # 48-hour line (to D3 12:00); D1's daily lines end at D2 00:00, outside the window.
    assert by_day == {D2: 65, D1: 1}
    from_d1 = keys.filter(keys["usage_date"] == D1)["billing_line_key"].to_list()
    assert from_d1 == ["test:shared-48h"]


def test_cost_is_conserved_per_day_provider_currency(built, tmp_path) -> None:
    expected = expected_in_scope(built.lake)
    # Hand check of two cells: AWS D2 = 24 x (98.32 + 1.861) = 2404.344, + 12 x 1.861 = 22.332
    # (spare node), + 37.25 (daily shared), + 48 (the 48-hour line's 24 hours of D2) = 2511.926;
    # Microsoft D3 = its shared 12 only.
    assert abs(expected[(D2, "AWS", "USD")] - Decimal("2511.926")) < HALF_CENT
    assert expected[(D3, "Microsoft", "EUR")] == Decimal("12.00")

    recon = {
        (r["usage_date"], r["provider"], r["billing_currency"]): r
        for r in built.query("select * from billing_reconciliation_daily").iter_rows(named=True)
    }
    assert set(recon) == set(expected) and len(recon) == 6
    for key, billed in expected.items():
        r = recon[key]
        assert abs(r["billed_in_scope"] - billed) < HALF_CENT, key
        accounted = r["allocated"] + r["idle"] + r["shared"] + r["unattributed"]
        assert abs(accounted - billed) < HALF_CENT, key
        assert r["passed"] is True, key
    # No GPU on Microsoft on D3: its shared cost has nowhere to go but unattributed.
    assert recon[(D3, "Microsoft", "EUR")]["unattributed"] == Decimal(12)
    assert abs(recon[(D2, "AWS", "USD")]["unattributed"] - Decimal("22.332")) < HALF_CENT

    # The hourly mart's lines add up to the bill as well, per billing currency.
    lines = built.query(
        "select usage_date, provider, billing_currency, sum(total_cost_billing_currency) as cost, "
        "sum(total_cost) as usd from fct_inference_costs_hourly "
        "where line_type in ('request', 'idle') group by all"
    )
    by_key = {}
    for r in lines.iter_rows(named=True):
        if r["billing_currency"] is None:  # requests on a deployment with no GPU bill: no cost
            assert r["cost"] == 0
            continue
        key = (r["usage_date"], r["provider"], r["billing_currency"])
        assert abs(r["cost"] + recon[key]["unattributed"] - expected[key]) < HALF_CENT, key
        by_key[key] = r
    # The Azure VM (its id lower-cased by the export) matched the inventory: all of Microsoft's
    # D1 cost is on qwen-72b's lines, at 1.16 USD per EUR (the 2026-10-01 rate, the latest
    # on or before the day).
    assert recon[(D1, "Microsoft", "EUR")]["unattributed"] == 0
    usd = by_key[(D1, "Microsoft", "EUR")]["usd"]
    assert abs(usd - (Decimal("2150.40") + 12) * Decimal("1.16")) < HALF_CENT

    # Break the allocation (idle lines dropped) on a copy: the dbt conservation test fails.
    broken = _copy_of(built, tmp_path)
    result = broken.dbt(
        "build",
        "--select",
        "int_request_costs_hourly+",
        "--exclude-resource-type",
        "unit_test",
        vars={"break_allocation_for_test": True},
        expect_success=False,
    )
    failed = {r.node.name for r in result.result if str(r.status) in ("fail", "error")}
    assert not result.success and failed == CONSERVATION_TESTS
    assert broken.query("select bool_and(passed) from billing_reconciliation_daily").item() is False


def test_data_tests_read_only_the_run_window(built, tmp_path) -> None:
    # On a copy: one of D1's idle lines twice in fct_inference_costs_hourly (a broken grain,
    # and its GPU cost counted twice).
    copy = _copy_of(built, tmp_path)
    with duckdb.connect(str(copy.path)) as con:
        con.execute(
            "insert into fct_inference_costs_hourly select * from fct_inference_costs_hourly "
            "where usage_date = ? and line_type = 'idle' and gpu_idle_cost > 1 limit 1",
            [D1],
        )
    select = [
        "test",
        "--select",
        "fct_inference_costs_hourly",
        "--exclude-resource-type",
        "unit_test",
    ]

    # A run of D2 tests D2's rows only: it passes.
    result = copy.dbt(*select, vars={"min_date": str(D2), "max_date": str(D3)})
    # On the model: its required columns (one not_null_columns test), usd_per_unit where
    # the line has a currency, the grain and two accepted_values; and 3 conservation tests.
    assert len(result.result) == 8

    # A run of D1 sees the duplicate: the grain test and every conservation test fail.
    result = copy.dbt(
        *select, vars={"min_date": str(D1), "max_date": str(D2)}, expect_success=False
    )
    failed = {r.node.name for r in result.result if str(r.status) in ("fail", "error")}
    grain = "unique_combination_of_columns_fct_inference_costs_hourly"
    assert {n for n in failed if not n.startswith(grain)} == CONSERVATION_TESTS
    assert len([n for n in failed if n.startswith(grain)]) == 1


def test_required_columns_are_one_test_that_names_the_null_columns(built, tmp_path) -> None:
    # On a copy: two of D1's lines lose their feature and one its model.
    copy = _copy_of(built, tmp_path)
    with duckdb.connect(str(copy.path)) as con:
        lines = con.execute(
            "select hour_start, customer_id, feature, line_type from fct_inference_costs_hourly "
            "where usage_date = ? and line_type = 'request' order by all limit 3", [D1]).fetchall()
        assert len(lines) == 3
        for i, (hour, customer, feature, line_type) in enumerate(lines):
            column = "model" if i == 2 else "feature"
            con.execute(
                f"update fct_inference_costs_hourly set {column} = null where hour_start = ? "
                "and customer_id = ? and feature = ? and line_type = ?",
                [hour, customer, feature, line_type])
    window = {"min_date": str(D1), "max_date": str(D2)}
    result = copy.dbt("test", "--select", "test_name:not_null_columns,fct_inference_costs_hourly",
                      "--store-failures", vars=window, expect_success=False)
    [test] = result.result
    assert str(test.status) == "fail" and test.failures == 3  # null values in all
    # The stored failures say which columns, and how many nulls each.
    rows = copy.query(f"select column_name, null_rows from {test.node.relation_name} order by 1")
    assert rows.rows() == [("feature", 2), ("model", 1)]
    # D2's rows are untouched: the same test passes on D2's window.
    result = copy.dbt("test", "--select", "test_name:not_null_columns,fct_inference_costs_hourly",
                      vars={"min_date": str(D2), "max_date": str(D3)})
    assert [str(r.status) for r in result.result] == ["pass"]


def _copy_of(built, tmp_path: Path):
    """A copy of the built warehouse (checkpointed first) on the same lake, to break."""
    with duckdb.connect(str(built.path)) as con:
        con.execute("checkpoint")
    copy = type(built)(tmp_path, lake=built.lake)
    shutil.copy(built.path, copy.path)
    return copy
