"""One day of a small company, allocated by hand and by the dbt project: the marts must agree
with the arithmetic below to the cent.

Day 2026-10-05, AWS, USD. Hours 10 and 11 UTC.

Bill (EffectiveCost):
  p5.48xlarge  i-p5     -> deployment llama-70b   $100.00/h  hours 10, 11   = 200.00
  g6e.xlarge   i-g6e    -> deployment llama-8b      $2.00/h  hours 10, 11   =   4.00
  g6e.xlarge   i-spare  -> no deployment            $2.00    hour 10        =   2.00 unattributed
  Elastic Load Balancing tagged cost_center=ml-platform, one daily line    = 153.00 shared
  S3 (untagged)                                                             =   5.00 out of scope
  Tax                                                                       =  10.00 out of scope
  in scope = 200 + 4 + 2 + 153 = 359.00; billed total = 374.00

Weighted tokens w = 1 x uncached input + 0.1 x cache read + 3 x output.

llama-70b, hour 10: telemetry on two GPUs, busy 0.6 and 0.4 -> b = 0.5; energy 400 + 300 Wh.
  busy = 100 x 0.5 = 50, idle = 50.
  r1 cust_a chat       in 1000, cache 2000, out  600 -> w = 1000 + 200 + 1800 = 3000 -> 15.00
  r2 cust_b chat       in 1600, cache 1000, out  100 -> w = 1600 + 100 +  300 = 2000 -> 10.00
  r3 cust_c summarize  in 2000,             out 1000 -> w = 2000       + 3000 = 5000 -> 25.00
  r4 cust_a chat       failed: counted, no tokens, no cost
  W = 10000. Energy: busy 700 x 0.5 = 350 Wh by weight (105, 70, 175), idle line 350 Wh.
llama-70b, hour 11: no telemetry, requests served -> b = 1: busy 100, idle 0 (no idle line).
  r5 cust_b summarize  in 4000, out 2000 -> the only request: 100.00
llama-8b, hour 10: telemetry b = 0.25: busy 0.50, idle 1.50.
  r7 cust_a chat in 100, out 100 -> 0.50
llama-8b, hour 11: telemetry says 0.8 busy but no request served -> all idle: 2.00.

Shared 153 over the day's deployment GPU cost (200 + 4 = 204):
  llama-70b 153 x 200/204 = 150, llama-8b 153 x 4/204 = 3,
  then over each deployment's requests by busy cost:
  llama-70b busy of the day = 50 + 100 = 150 -> r1 15, r2 10, r3 25, r5 100
  llama-8b busy = 0.50 -> r7 3.

Hosted (openai), list prices per 1M: gpt-4o input 2.50, cache read 1.25, output 10.00.
  r8 cust_c chat gpt-4o-2024-08-06 (a dated snapshot of gpt-4o), hour 10:
     in 10000 x 2.5 + cache 20000 x 1.25 + out 5000 x 10 = 0.025 + 0.025 + 0.05 = 0.10
  r9 cust_a summarize "mystery-model": no price -> cost null, 1 unpriced request.

Reconciliation AWS/USD: allocated 50 + 100 + 0.5 = 150.5; idle 50 + 1.5 + 2 = 53.5;
  shared 153; unattributed 2; 150.5 + 53.5 + 153 + 2 = 359 = in scope, residual 0.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

DAY = date(2026, 10, 5)
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"


def write_scenario(wh) -> None:
    utc, bill_line, request = wh.utc, wh.bill_line, wh.request
    gpu_hour, inventory_row = wh.gpu_hour, wh.inventory_row
    H10, H11 = utc(DAY, 10), utc(DAY, 11)
    wh.write(
        "billing_line_items",
        [
            bill_line("p5-10", H10, 1, "100.00", instance_type="p5.48xlarge", resource_id="i-p5"),
            bill_line("p5-11", H11, 1, "100.00", instance_type="p5.48xlarge", resource_id="i-p5"),
            bill_line("g6e-10", H10, 1, "2.00", instance_type="g6e.xlarge", resource_id="i-g6e"),
            bill_line("g6e-11", H11, 1, "2.00", instance_type="g6e.xlarge", resource_id="i-g6e"),
            bill_line(
                "spare-10", H10, 1, "2.00", instance_type="g6e.xlarge", resource_id="i-spare"
            ),
            bill_line(
                "elb",
                utc(DAY),
                24,
                "153.00",
                service="Elastic Load Balancing",
                tags={"cost_center": "ml-platform"},
            ),
            bill_line("s3", utc(DAY), 24, "5.00", service="Amazon Simple Storage Service"),
            bill_line("tax", utc(DAY), 24, "10.00", category="Tax", service="Tax"),
        ],
    )
    wh.write(
        "gpu_hourly",
        [
            gpu_hour("p5-host", H10, 0, 0.6, 400.0),
            gpu_hour("p5-host", H10, 1, 0.4, 300.0),
            gpu_hour("g6e-host", H10, 0, 0.25, 100.0),
            gpu_hour("g6e-host", H11, 0, 0.8, 200.0),
        ],
    )
    shared = {"provider": "hosted_vllm"}
    wh.write(
        "gateway_requests",
        [
            request(
                "r1",
                H10,
                deployment="llama-70b",
                model=LLAMA_70B,
                customer="cust_a",
                feature="chat",
                input_uncached=1000,
                cache_read=2000,
                output=600,
                **shared,
            ),
            request(
                "r2",
                H10,
                deployment="llama-70b",
                model=LLAMA_70B,
                customer="cust_b",
                feature="chat",
                input_uncached=1600,
                cache_read=1000,
                output=100,
                **shared,
            ),
            request(
                "r3",
                H10,
                deployment="llama-70b",
                model=LLAMA_70B,
                customer="cust_c",
                feature="summarize",
                input_uncached=2000,
                output=1000,
                **shared,
            ),
            request(
                "r4",
                H10,
                deployment="llama-70b",
                model=LLAMA_70B,
                customer="cust_a",
                feature="chat",
                status="failure",
                **shared,
            ),
            request(
                "r5",
                H11,
                deployment="llama-70b",
                model=LLAMA_70B,
                customer="cust_b",
                feature="summarize",
                input_uncached=4000,
                output=2000,
                **shared,
            ),
            request(
                "r7",
                H10,
                deployment="llama-8b",
                model=LLAMA_8B,
                customer="cust_a",
                feature="chat",
                input_uncached=100,
                output=100,
                **shared,
            ),
            request(
                "r8",
                H10,
                deployment=None,
                model="gpt-4o-2024-08-06",
                customer="cust_c",
                feature="chat",
                input_uncached=10000,
                cache_read=20000,
                output=5000,
                provider="openai",
                self_hosted=False,
            ),
            request(
                "r9",
                H11,
                deployment=None,
                model="mystery-model",
                customer="cust_a",
                feature="summarize",
                input_uncached=100,
                output=100,
                provider="openai",
                self_hosted=False,
            ),
        ],
    )
    # An older inventory snapshot still lists the spare node: only the latest one counts.
    wh.write(
        "fleet_inventory",
        [
            inventory_row("p5-host", "AWS", "i-p5", "llama-70b"),
            inventory_row("spare-host", "AWS", "i-spare", "retired-deployment"),
        ],
        day=date(2026, 10, 1),
    )
    wh.write(
        "fleet_inventory",
        [
            inventory_row("p5-host", "AWS", "i-p5", "llama-70b", valid_from=utc(date(2026, 9, 1))),
            inventory_row("g6e-host", "AWS", "i-g6e", "llama-8b", valid_from=utc(date(2026, 9, 1))),
        ],
        day=DAY,
    )
    wh.finish_lake()


@pytest.fixture(scope="module")
def built(warehouse):
    write_scenario(warehouse)
    # The models' unit tests run once, in test_economics_scenario.
    warehouse.dbt("build", "--exclude-resource-type", "unit_test")
    return warehouse


def cents(value: Decimal | float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


def test_cost_per_token_per_deployment(built) -> None:
    rows = {
        r["deployment"]: r
        for r in built.query(
            f"select * from cost_per_token_daily where usage_date = '{DAY}'"
        ).iter_rows(named=True)
    }
    big = rows["llama-70b"]
    # Tokens: r1 3600 + r2 2700 + r3 3000 + r5 6000 = 15300; input 11600, output 3700.
    assert (big["total_tokens"], big["output_tokens"], big["requests"], big["failed_requests"]) == (
        15300,
        3700,
        4,
        1,
    )
    assert big["provider"] == "AWS" and big["model"] == LLAMA_70B
    # busy 150, idle 50, shared 150 -> fully loaded 350.
    assert cents(big["busy_cost"]) == Decimal("150.00")
    assert cents(big["idle_cost"]) == Decimal("50.00")
    assert cents(big["shared_cost"]) == Decimal("150.00")
    assert cents(big["fully_loaded_cost"]) == Decimal("350.00")
    # 350 / 15300 x 1e6 = 22875.816...; busy only 150 / 15300 x 1e6 = 9803.921...
    assert cents(big["cost_per_1m_tokens"]) == Decimal("22875.82")
    assert cents(big["busy_only_cost_per_1m_tokens"]) == Decimal("9803.92")
    # Output part of the busy cost: r1 15 x 1800/3000 = 9, r2 10 x 300/2000 = 1.5,
    # r3 25 x 3000/5000 = 15, r5 100 x 6000/10000 = 60 -> 85.5 of 150 = 0.57.
    # Output: 350 x 0.57 / 3700 x 1e6 = 53918.918...; input: 350 x 0.43 / 11600 x 1e6 = 12974.137...
    assert cents(big["cost_per_1m_output_tokens"]) == Decimal("53918.92")
    assert cents(big["cost_per_1m_input_tokens"]) == Decimal("12974.14")
    assert big["gpu_utilization"] == pytest.approx(0.75)  # 150 busy of 200 GPU cost
    assert big["idle_share"] == pytest.approx(50 / 350)
    # Energy: hour 10 only (700 Wh; hour 11 has no telemetry): 700 / 15300 x 1000.
    assert big["energy_wh"] == Decimal(700)
    assert big["wh_per_1k_tokens"] == pytest.approx(700 / 15.3)

    small = rows["llama-8b"]
    # busy 0.5, idle 1.5 + 2, shared 3 -> 7.00 over 200 tokens: 35000 per 1M; busy only 2500.
    assert cents(small["fully_loaded_cost"]) == Decimal("7.00")
    assert cents(small["cost_per_1m_tokens"]) == Decimal("35000.00")
    assert cents(small["busy_only_cost_per_1m_tokens"]) == Decimal("2500.00")

    hosted = rows["gpt-4o-2024-08-06"]
    # 0.10 over 35000 tokens = 2.857... per 1M; no GPUs, so no utilization.
    assert hosted["provider"] == "openai"
    assert cents(hosted["fully_loaded_cost"]) == Decimal("0.10")
    assert cents(hosted["cost_per_1m_tokens"]) == Decimal("2.86")
    assert hosted["gpu_utilization"] is None

    unpriced = rows["mystery-model"]
    assert unpriced["unpriced_requests"] == 1 and unpriced["fully_loaded_cost"] is None


def test_cost_per_customer(built) -> None:
    cost = {
        r["customer_id"]: (cents(r["cost"]), r["requests"], r["unpriced_requests"])
        for r in built.query(
            f"select * from customer_costs_daily where usage_date = '{DAY}'"
        ).iter_rows(named=True)
    }
    assert cost == {
        # r1 15 + 15 shared, r7 0.5 + 3 shared; r9 is unpriced (counted, no cost); r4 failed.
        "cust_a": (Decimal("33.50"), 3, 1),
        # r2 10 + 10, r5 100 + 100
        "cust_b": (Decimal("220.00"), 2, 0),
        # r3 25 + 25, r8 0.10
        "cust_c": (Decimal("50.10"), 2, 0),
        # 50 + 1.5 + 2
        "__idle__": (Decimal("53.50"), 0, 0),
    }


def test_cost_per_feature(built) -> None:
    rows = built.query(f"select * from feature_costs_daily where usage_date = '{DAY}'").iter_rows(
        named=True
    )
    cost = {(r["feature"], r["model"]): cents(r["cost"]) for r in rows}
    assert cost == {
        ("chat", LLAMA_70B): Decimal("50.00"),  # r1 30 + r2 20
        ("summarize", LLAMA_70B): Decimal("250.00"),  # r3 50 + r5 200
        ("chat", LLAMA_8B): Decimal("3.50"),  # r7
        ("chat", "gpt-4o-2024-08-06"): Decimal("0.10"),  # r8
        ("summarize", "mystery-model"): None,  # unpriced
        ("__idle__", LLAMA_70B): Decimal("50.00"),
        ("__idle__", LLAMA_8B): Decimal("3.50"),
    }
    share = built.query(
        f"select share_of_total from feature_costs_daily where usage_date = '{DAY}' "
        f"and feature = 'summarize' and model = '{LLAMA_70B}'"
    ).item()
    assert share == pytest.approx(250 / 357.10)  # of 150.5 + 53.5 + 153 + 0.10


def test_reconciliation_balances_to_the_cent(built) -> None:
    rows = built.query("select * from billing_reconciliation_daily").to_dicts()
    assert len(rows) == 1
    r = rows[0]
    assert (r["usage_date"], r["provider"], r["billing_currency"]) == (DAY, "AWS", "USD")
    assert {
        k: cents(r[k])
        for k in (
            "billed_total",
            "billed_in_scope",
            "allocated",
            "idle",
            "shared",
            "unattributed",
            "out_of_scope",
            "residual",
        )
    } == {
        "billed_total": Decimal("374.00"),
        "billed_in_scope": Decimal("359.00"),
        "allocated": Decimal("150.50"),
        "idle": Decimal("53.50"),
        "shared": Decimal("153.00"),
        "unattributed": Decimal("2.00"),
        "out_of_scope": Decimal("15.00"),
        "residual": Decimal("0.00"),
    }
    assert r["passed"] is True


def test_hourly_lines_carry_idle_energy_and_failures(built) -> None:
    idle = built.query(
        "select hour_start, gpu_idle_cost, energy_wh from fct_inference_costs_hourly "
        "where line_type = 'idle' and deployment = 'llama-70b'"
    ).to_dicts()
    # Only hour 10 idles (b = 0.5); hour 11 ran fully busy, so it has no idle line.
    assert [(cents(r["gpu_idle_cost"]), r["energy_wh"]) for r in idle] == [
        (Decimal("50.00"), Decimal(350))
    ]
    r1 = built.query(
        "select requests, failed_requests, gpu_busy_cost, shared_cost, energy_wh "
        "from fct_inference_costs_hourly where customer_id = 'cust_a' and deployment = 'llama-70b'"
    ).to_dicts()
    assert [
        (
            r["requests"],
            r["failed_requests"],
            cents(r["gpu_busy_cost"]),
            cents(r["shared_cost"]),
            r["energy_wh"],
        )
        for r in r1
    ] == [(1, 1, Decimal("15.00"), Decimal("15.00"), Decimal(105))]
    scope = dict(
        built.query(
            "select scope_reason, count(*) from fct_billing_line_items group by scope_reason"
        ).iter_rows()
    )
    assert scope == {"gpu_compute": 5, "shared_platform": 1, "other_service": 1, "not_usage": 1}


def test_daily_facts_add_up_to_the_hourly_ones_and_the_bill(built) -> None:
    # The bill's allocated, idle and shared cost (150.50 + 53.50 + 153.00, the
    # reconciliation above) and gpt-4o's list-priced 0.10, which no bill reconciles.
    daily = built.query(
        "select count(*) as n, sum(total_cost) as cost, sum(gpu_idle_cost) as idle, sum(requests) as requests "
        "from fct_inference_costs_daily"
    ).to_dicts()[0]
    hourly = built.query(
        "select sum(total_cost) as cost, sum(gpu_idle_cost) as idle, sum(requests) as requests, "
        "count(distinct (usage_date, provider, model, deployment, customer_id, feature, line_type)) as n "
        "from fct_inference_costs_hourly"
    ).to_dicts()[0]
    assert cents(daily["cost"]) == Decimal("357.10")
    assert cents(daily["idle"]) == Decimal("53.50")
    assert (daily["cost"], daily["idle"], daily["requests"], daily["n"]) == (
        hourly["cost"], hourly["idle"], hourly["requests"], hourly["n"])
