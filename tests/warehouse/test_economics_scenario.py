"""Two days of a small company, allocated by hand and by the dbt project: every mart the
scenario touches must agree with the arithmetic below to the cent. The build is the one the
product runs each day (assets.warehouse.DAILY_BUILD_ARGS, no unit tests); this module also
runs the dbt project's unit tests, which that build leaves out, and `dbt docs generate`.
The README (How costs are allocated) walks through hour 10 of D1 on llama-70b: keep them in step.

D1 = 2026-10-05, D2 = 2026-10-06. Customers and their tiers come from the price-plan seeds:
cust_acme (enterprise: per 1M tokens 2.00 input, 0.50 cached, 8.00 output), cust_hooli
(starter: 0.02 per request), cust_initech (growth: 3.00 / 0.75 / 12.00).

AWS (USD, hourly CUR lines, us-east-1)
  p5.48xlarge i-p5 -> llama-70b, covered by a Savings Plan: each hour billed 98.32 on demand
  with a negation of -98.32, EffectiveCost 60.00 (the plan's rate). Hours D1 10, D1 11, D2 10.
  Savings Plan recurring fee: 4.00 unused commitment per day (Purchase: out of scope).
  Load balancer tagged cost_center=ml-platform: 39.00 on D1, 24.00 on D2 (shared).

  D1 h10: telemetry 2 GPUs busy 0.6 and 0.4 (400 + 300 Wh) -> busy 30, idle 30. Default
  weights 1 / 0.1 / 3 (no vLLM figures for the hour):
    r1 cust_acme chat       in 1000, cached 2000, out  600 -> w 3000 -> 30 x 3000/10000 =  9.00
    r2 cust_hooli chat      in 1600, cached 1000, out  100 -> w 2000 ->                     6.00
    r3 cust_initech summ.   in 2000,              out 1000 -> w 5000 ->                    15.00
    r4 cust_acme chat       failed: counted, no tokens, no cost
  D1 h11: telemetry busy 0.9 and 0.7 (500 + 500 Wh) -> busy 48, idle 12. vLLM measured 11 s of
  prefill and 39 s of decode: prefill tokens 4000 + 1000 + 0.1 x 5000 = 5500 -> 0.002 s each
  (a cached one 0.0002); output 2000 + 1000 = 3000 -> 0.013 s each. Weight = GPU seconds:
    r5 cust_hooli summ.     in 4000,              out 2000 -> 8 + 26 = 34 s -> 48 x 34/50 = 32.64
    r6 cust_acme chat       in 1000, cached 5000, out 1000 -> 2 + 1 + 13 = 16 s ->          15.36
  Shared 39.00: llama-70b has all of AWS's GPU cost, spread by busy cost (78): 0.50 per busy
  dollar -> r1 4.50, r2 3.00, r3 7.50, r5 16.32, r6 7.68.
  D2 h10: nothing served -> an idle hour: 60.00 idle, and D2's shared 24.00 on that idle line.

Microsoft (EUR at 1.16 USD, daily FOCUS lines, eastus)
  Standard_NC24ads_A100_v4 (1 x A100) 168.00 for D1 -> 7.00 an hour, shared by chat-small and
  embed through MIG: 3g.40gb for chat-small (pod chat-small-...), 2g.20gb for embed (namespace
  embed), a 2g.20gb slice of a notebook nobody claims. Claimed 5/7: chat-small 7 x 3/5 = 4.20
  an hour, embed 2.80; the unclaimed 2/7 is idle. Only hour 10 serves requests (slices busy
  1.0 and 0.5): chat-small busy 7 x 3/7 = 3.00, embed 7 x 2/7 x 0.5 = 1.00; the other 23
  hours are all idle. Day: chat-small 100.80 (busy 3.00, idle 97.80), embed 67.20 (1.00,
  66.20). Azure Monitor tagged ml-platform 12.00: 7.20 and 4.80 by GPU cost, onto their one
  request each. GPU energy 70 Wh an hour, split 42 / 28.
    cust_acme chat on chat-small  (in 500, out 100): 3.00 + 7.20 = 10.20 EUR = 11.832 USD
    cust_initech search on embed  (in 2000):         1.00 + 4.80 =  5.80 EUR =  6.728 USD

OpenAI (USD; its FOCUS export): list prices gpt-4o 2.50 / 1.25 cached / 10.00.
  D1 r8 cust_initech chat gpt-4o-2024-08-06 in 10000, cached 20000, out 5000 = 0.10 (the cache
  saved 20000 x 1.25 = 0.025); r9 cust_acme summarize gpt-4o in 4000, out 4000 = 0.05. The
  bill says 0.18 (+ 0.01 tax): true-up 0.03 by list cost -> r8 0.12, r9 0.06.
  D2 r10 cust_initech chat gpt-4o in 4000, out 4000 = 0.05; no bill that day: list price, not
  reconciled.
Anthropic (USD): D2 bill 1.00 and no request to carry it: unattributed.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

D1, D2 = date(2026, 10, 5), date(2026, 10, 6)
DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
QWEN_7B = "Qwen/Qwen2.5-7B-Instruct"
BGE = "BAAI/bge-large-en-v1.5"
A100_VM = "/subscriptions/5c7d/resourceGroups/inference/providers/Microsoft.Compute/virtualMachines/nc-a100-0"
SP_ARN = "arn:aws:savingsplans::111122223333:savingsplan/sp-1"


def write_scenario(wh) -> None:
    utc, bill, req, gpu = wh.utc, wh.bill_line, wh.request, wh.gpu_hour
    lines = []
    for line_id, t in (("d1h10", utc(D1, 10)), ("d1h11", utc(D1, 11)), ("d2h10", utc(D2, 10))):
        p5 = {"instance_type": "p5.48xlarge", "resource_id": "i-p5", "region": "us-east-1"}
        lines += [
            bill(
                f"p5-{line_id}",
                t,
                1,
                "60.00",
                billed="98.32",
                list_cost="98.32",
                charge_type="SavingsPlanCoveredUsage",
                commitment_status="Used",
                commitment_id=SP_ARN,
                **p5,
            ),
            bill(
                f"p5-neg-{line_id}",
                t,
                1,
                "0",
                billed="-98.32",
                # The on-demand cost the negation cancels: not usage of its own at list price.
                list_cost="98.32",
                charge_type="SavingsPlanNegation",
                commitment_id=SP_ARN,
                **p5,
            ),
        ]
    ml = {"cost_center": "ml-platform"}
    for day, elb in ((D1, "39.00"), (D2, "24.00")):
        lines += [
            bill(
                f"sp-fee-{day}",
                utc(day),
                24,
                "4.00",
                billed="1680.00",
                category="Purchase",
                charge_type="SavingsPlanRecurringFee",
                commitment_status="Unused",
                commitment_id=SP_ARN,
                service="Savings Plans for AWS Compute usage",
            ),
            bill(
                f"elb-{day}",
                utc(day),
                24,
                elb,
                service="Elastic Load Balancing",
                tags=ml,
                region="us-east-1",
            ),
        ]
    azure = {"provider": "Microsoft", "currency": "EUR", "region": "eastus"}
    lines += [
        bill(
            "az-vm",
            utc(D1),
            24,
            "168.00",
            list_cost="201.60",
            instance_type="Standard_NC24ads_A100_v4",
            resource_id=A100_VM,
            service="Virtual Machines",
            **azure,
        ),
        bill("az-monitor", utc(D1), 24, "12.00", service="Azure Monitor", tags=ml, **azure),
        bill("openai-d1", utc(D1), 24, "0.18", provider="OpenAI", service="OpenAI API"),
        bill(
            "openai-tax-d1",
            utc(D1),
            24,
            "0.01",
            provider="OpenAI",
            service="OpenAI API",
            category="Tax",
        ),
        bill("anthropic-d2", utc(D2), 24, "1.00", provider="Anthropic", service="Claude API"),
    ]
    wh.write("billing_line_items", lines)

    telemetry = [
        gpu("p5-host", utc(D1, 10), 0, 0.6, 400.0),
        gpu("p5-host", utc(D1, 10), 1, 0.4, 300.0),
        gpu("p5-host", utc(D1, 11), 0, 0.9, 500.0),
        gpu("p5-host", utc(D1, 11), 1, 0.7, 500.0),
        gpu("p5-host", utc(D2, 10), 0, 0.2, 200.0),
        gpu("p5-host", utc(D2, 10), 1, 0.0, 100.0),
    ]
    for h in range(24):
        t = utc(D1, h)
        busy_chat, busy_embed = (1.0, 0.5) if h == 10 else (0.3, 0.3)
        telemetry += [
            gpu(
                "nc-a100-0",
                t,
                0,
                busy_chat,
                70.0,
                3 / 7,
                mig_profile="3g.40gb",
                mig_instance_id="1",
                k8s_namespace="serving",
                k8s_pod="chat-small-5f7c-x",
            ),
            gpu(
                "nc-a100-0",
                t,
                0,
                busy_embed,
                70.0,
                2 / 7,
                mig_profile="2g.20gb",
                mig_instance_id="2",
                k8s_namespace="embed",
                k8s_pod="encoder-0",
            ),
            gpu(
                "nc-a100-0",
                t,
                0,
                0.9,
                70.0,
                2 / 7,
                mig_profile="2g.20gb",
                mig_instance_id="3",
                k8s_namespace="research",
                k8s_pod="notebook-1",
            ),
            # The GPU's own device-level row: energy, no slice.
            gpu("nc-a100-0", t, 0, None, 70.0),
        ]
    wh.write("gpu_hourly", telemetry)
    wh.write(
        "vllm_hourly",
        [
            {
                "hour_start": utc(D1, 11),
                "deployment": "llama-70b",
                "replicas": 1,
                "prompt_tokens": 11000,
                "generation_tokens": 3000,
                "requests": 2,
                "prefill_seconds": 11.0,
                "decode_seconds": 39.0,
                "counter_resets": 0,
            }
        ],
    )

    def llama(rid, t, customer, feature, **tokens):
        return req(
            rid,
            t,
            deployment="llama-70b",
            model=LLAMA_70B,
            customer=customer,
            feature=feature,
            **tokens,
        )

    def openai(rid, t, model, customer, feature, **tokens):
        return req(
            rid,
            t,
            deployment="gpt-4o",
            model=model,
            customer=customer,
            feature=feature,
            provider="openai",
            self_hosted=False,
            **tokens,
        )

    h10, h11 = utc(D1, 10), utc(D1, 11)
    wh.write(
        "gateway_requests",
        [
            llama("r1", h10, "cust_acme", "chat", input_uncached=1000, cache_read=2000, output=600),
            llama(
                "r2", h10, "cust_hooli", "chat", input_uncached=1600, cache_read=1000, output=100
            ),
            llama("r3", h10, "cust_initech", "summarize", input_uncached=2000, output=1000),
            llama("r4", h10, "cust_acme", "chat", status="failure"),
            llama("r5", h11, "cust_hooli", "summarize", input_uncached=4000, output=2000),
            llama(
                "r6", h11, "cust_acme", "chat", input_uncached=1000, cache_read=5000, output=1000
            ),
            req(
                "r7",
                h10,
                deployment="chat-small",
                model=QWEN_7B,
                customer="cust_acme",
                feature="chat",
                input_uncached=500,
                output=100,
            ),
            req(
                "r11",
                h10,
                deployment="embed",
                model=BGE,
                customer="cust_initech",
                feature="search",
                input_uncached=2000,
            ),
            openai(
                "r8",
                h10,
                "gpt-4o-2024-08-06",
                "cust_initech",
                "chat",
                input_uncached=10000,
                cache_read=20000,
                output=5000,
            ),
            openai(
                "r9",
                utc(D1, 12),
                "gpt-4o",
                "cust_acme",
                "summarize",
                input_uncached=4000,
                output=4000,
            ),
            openai(
                "r10",
                utc(D2, 10),
                "gpt-4o",
                "cust_initech",
                "chat",
                input_uncached=4000,
                output=4000,
            ),
        ],
    )
    wh.write(
        "fleet_inventory",
        [
            wh.inventory_row("p5-host", "AWS", "i-p5", "llama-70b"),
            wh.inventory_row("nc-a100-0", "Microsoft", A100_VM, "chat-small"),
            wh.inventory_row("nc-a100-0", "Microsoft", A100_VM, "embed"),
        ],
        day=D2,
    )
    wh.finish_lake()


@pytest.fixture(scope="module")
def built(warehouse):
    from assets.warehouse import DAILY_BUILD_ARGS  # imports Dagster: only when a test runs

    write_scenario(warehouse)
    result = warehouse.dbt(*DAILY_BUILD_ARGS)
    kinds = {r.node.resource_type for r in result.result}
    assert "unit_test" not in kinds and {"model", "seed", "test"} <= kinds
    return warehouse


def declared_unit_tests() -> set[str]:
    names = set()
    for path in (DBT_PROJECT / "models").rglob("*.yml"):
        names |= {t["name"] for t in (yaml.safe_load(path.read_text()) or {}).get("unit_tests", [])}
    return names


def test_unit_tests_all_run_and_pass(built) -> None:
    # Against the built warehouse: a unit test needs its model's parents to exist.
    result = built.dbt("test", "--select", "test_type:unit")
    statuses = {r.node.name: str(r.status) for r in result.result}
    # 15 on the intermediate models, 9 on the marts.
    assert len(statuses) == 24
    assert statuses == {name: "pass" for name in declared_unit_tests()}


def cents(value: Decimal | float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


def rows(wh, sql: str) -> list[dict]:
    return wh.query(sql).to_dicts()


def test_commitment_covered_hours_cost_their_effective_rate(built) -> None:
    lines = {
        r["billing_line_key"]: r
        for r in rows(built, "select * from fct_billing_line_items where usage_date = '2026-10-05'")
    }
    covered, negation, fee = (
        lines["test:p5-d1h10"],
        lines["test:p5-neg-d1h10"],
        lines["test:sp-fee-2026-10-05"],
    )
    assert (covered["billed_cost"], covered["effective_cost"], covered["scope_reason"]) == (
        Decimal("98.32"),
        Decimal("60.00"),
        "gpu_compute",
    )
    assert (negation["billed_cost"], negation["effective_cost"]) == (Decimal("-98.32"), Decimal(0))
    # The unused commitment is the plan's cost, not any workload's.
    assert (fee["effective_cost"], fee["in_scope"], fee["scope_reason"]) == (
        Decimal(4),
        False,
        "not_usage",
    )
    assert lines["test:openai-d1"]["scope_reason"] == "hosted_api"
    assert lines["test:openai-d1"]["api_gateway_provider"] == "openai"


def test_requests_share_busy_cost_by_default_or_vllm_weights(built) -> None:
    got = {
        (r["hour_start"].hour, r["customer_id"], r["feature"]): (
            cents(r["gpu_busy_cost"]),
            cents(r["gpu_idle_cost"]),
            cents(r["shared_cost"]),
            cents(r["cache_savings"]),
            r["weight_source"],
            r["requests"],
            r["failed_requests"],
        )
        for r in rows(
            built,
            "select * from fct_inference_costs_hourly "
            "where deployment = 'llama-70b' and usage_date = '2026-10-05'",
        )
    }
    d = Decimal
    assert got == {
        (10, "cust_acme", "chat"): (d("9.00"), d("0.00"), d("4.50"), d("5.40"), "default", 1, 1),
        (10, "cust_hooli", "chat"): (d("6.00"), d("0.00"), d("3.00"), d("2.70"), "default", 1, 0),
        (10, "cust_initech", "summarize"): (
            d("15.00"),
            d("0.00"),
            d("7.50"),
            d("0.00"),
            "default",
            1,
            0,
        ),
        (10, "__idle__", "__idle__"): (
            d("0.00"),
            d("30.00"),
            d("0.00"),
            d("0.00"),
            "default",
            0,
            0,
        ),
        # GPU seconds from vLLM: r5 34 of 50, r6 16; r6's 5000 cached tokens saved
        # 5000 x (0.002 - 0.0002) = 9 s of the hour's 50: 48 x 9/50 = 8.64.
        (11, "cust_hooli", "summarize"): (
            d("32.64"),
            d("0.00"),
            d("16.32"),
            d("0.00"),
            "vllm",
            1,
            0,
        ),
        (11, "cust_acme", "chat"): (d("15.36"), d("0.00"), d("7.68"), d("8.64"), "vllm", 1, 0),
        (11, "__idle__", "__idle__"): (d("0.00"), d("12.00"), d("0.00"), d("0.00"), "vllm", 0, 0),
    }
    # r1's cache reads: 2000 x (1 - 0.1) = 1800 of the hour's 10000 weight, x 30 busy = 5.40.


def test_idle_hour_carries_the_days_shared_cost(built) -> None:
    d2 = rows(
        built,
        "select * from fct_inference_costs_hourly where usage_date = '2026-10-06' "
        "and line_type <> 'api'",
    )
    assert [
        (
            r["hour_start"].hour,
            r["line_type"],
            cents(r["gpu_idle_cost"]),
            cents(r["shared_cost"]),
            r["energy_wh"],
        )
        for r in d2
    ] == [(10, "idle", Decimal("60.00"), Decimal("24.00"), Decimal(300))]


def test_mig_shared_gpu_is_charged_by_fraction_and_the_rest_is_idle(built) -> None:
    by_deployment = {
        r["deployment"]: r
        for r in rows(
            built,
            """
            select deployment, sum(gpu_busy_cost) as busy, sum(gpu_idle_cost) as idle,
                sum(shared_cost) as shared, sum(total_cost_billing_currency) as eur,
                sum(total_cost) as usd, sum(energy_wh) as energy_wh,
                sum(requests) as requests, count(*) as lines
            from fct_inference_costs_hourly
            where provider = 'Microsoft' group by deployment""",
        )
    }
    chat, embed = by_deployment["chat-small"], by_deployment["embed"]
    # In USD at 1.16: busy 3.00 -> 3.48, idle 97.80 -> 113.448, shared 7.20 -> 8.352.
    assert (cents(chat["busy"]), cents(chat["idle"]), cents(chat["shared"])) == (
        Decimal("3.48"),
        Decimal("113.45"),
        Decimal("8.35"),
    )
    assert (cents(chat["eur"]), cents(chat["usd"])) == (Decimal("108.00"), Decimal("125.28"))
    assert (cents(embed["busy"]), cents(embed["idle"]), cents(embed["shared"])) == (
        Decimal("1.16"),
        Decimal("76.79"),
        Decimal("5.57"),
    )
    assert (cents(embed["eur"]), cents(embed["usd"])) == (Decimal("72.00"), Decimal("83.52"))
    # 24 idle lines and one request line each; 70 Wh an hour split 3:2 -> 42 x 24 and 28 x 24.
    assert (chat["lines"], chat["requests"], chat["energy_wh"]) == (25, 1, Decimal(1008))
    assert (embed["lines"], embed["requests"], embed["energy_wh"]) == (25, 1, Decimal(672))
    # The request hour: chat-small's 4.20 is 3.00 busy (its 3/7 slice fully busy) + 1.20 idle;
    # energy 42 Wh x 3.00/4.20 = 30 Wh on the request, 12 on the idle line.
    r7 = rows(
        built,
        "select * from fct_inference_costs_hourly where deployment = 'chat-small' "
        "and hour_start = '2026-10-05 10:00:00' order by line_type",
    )
    assert [
        (r["line_type"], cents(r["total_cost_billing_currency"]), r["energy_wh"]) for r in r7
    ] == [("idle", Decimal("1.20"), Decimal(12)), ("request", Decimal("10.20"), Decimal(30))]
    assert r7[1]["usd_per_unit"] == Decimal("1.16") and cents(r7[1]["total_cost"]) == Decimal(
        "11.83"
    )


def test_hosted_api_is_trued_up_to_the_days_bill(built) -> None:
    api = {
        (r["usage_date"], r["customer_id"]): (
            cents(r["api_cost"]),
            cents(r["true_up"]),
            cents(r["total_cost"]),
            r["is_reconciled"],
            r["billing_provider"],
        )
        for r in rows(built, "select * from fct_inference_costs_hourly where line_type = 'api'")
    }
    assert api == {
        (D1, "cust_initech"): (Decimal("0.10"), Decimal("0.02"), Decimal("0.12"), True, "OpenAI"),
        (D1, "cust_acme"): (Decimal("0.05"), Decimal("0.01"), Decimal("0.06"), True, "OpenAI"),
        # No OpenAI bill on D2 yet: list price, outside the reconciliation.
        (D2, "cust_initech"): (Decimal("0.05"), Decimal("0.00"), Decimal("0.05"), False, "OpenAI"),
    }


def test_reconciliation_balances_every_day_provider_and_currency(built) -> None:
    columns = (
        "billed_total",
        "billed_in_scope",
        "allocated_gpu",
        "allocated_api",
        "true_up",
        "idle",
        "shared",
        "unattributed",
        "out_of_scope",
        "residual",
    )
    got = {
        (r["usage_date"], r["provider"], r["billing_currency"]): (
            tuple(cents(r[c]) for c in columns),
            r["passed"],
        )
        for r in rows(built, "select * from billing_reconciliation_daily")
    }

    def row(*values: str) -> tuple:
        return tuple(Decimal(v) for v in values), True

    assert got == {
        # billed_total, billed_in_scope, allocated_gpu, allocated_api, true_up, idle, shared,
        # unattributed, out_of_scope, residual
        (D1, "AWS", "USD"): row(
            "163.00", "159.00", "78.00", "0.00", "0.00", "42.00", "39.00", "0.00", "4.00", "0.00"
        ),
        (D2, "AWS", "USD"): row(
            "88.00", "84.00", "0.00", "0.00", "0.00", "60.00", "24.00", "0.00", "4.00", "0.00"
        ),
        (D1, "Microsoft", "EUR"): row(
            "180.00", "180.00", "4.00", "0.00", "0.00", "164.00", "12.00", "0.00", "0.00", "0.00"
        ),
        (D1, "OpenAI", "USD"): row(
            "0.19", "0.18", "0.00", "0.18", "0.03", "0.00", "0.00", "0.00", "0.01", "0.00"
        ),
        (D2, "Anthropic", "USD"): row(
            "1.00", "1.00", "0.00", "0.00", "0.00", "0.00", "0.00", "1.00", "0.00", "0.00"
        ),
    }


def test_cost_per_token(built) -> None:
    got = {
        (r["usage_date"], r["deployment"]): r
        for r in rows(built, "select * from cost_per_token_daily")
    }
    llama = got[(D1, "llama-70b")]
    # Tokens 3600 + 2700 + 3000 + 6000 + 7000 = 22300 (output 4700, input 17600). Busy 78,
    # idle 42, shared 39: fully loaded 159. Output's part of the busy cost: 5.40 + 0.90 + 9.00
    # + 24.96 + 12.48 = 52.74 of 78.
    assert (llama["total_tokens"], llama["output_tokens"], llama["cache_read_tokens"]) == (
        22300,
        4700,
        8000,
    )
    assert (
        cents(llama["busy_cost"]),
        cents(llama["idle_cost"]),
        cents(llama["shared_cost"]),
        cents(llama["fully_loaded_cost"]),
    ) == (Decimal("78.00"), Decimal("42.00"), Decimal("39.00"), Decimal("159.00"))
    assert cents(llama["cost_per_1m_tokens"]) == Decimal("7130.04")  # 159 / 22300 x 1e6
    assert cents(llama["cost_per_1m_output_tokens"]) == Decimal("22874.14")  # 159 x 52.74/78 / 4700
    assert cents(llama["cost_per_1m_input_tokens"]) == Decimal("2925.66")  # 159 x 25.26/78 / 17600
    assert cents(llama["busy_only_cost_per_1m_tokens"]) == Decimal("3497.76")  # 78 / 22300
    assert cents(llama["busy_only_cost_per_1m_output_tokens"]) == Decimal(
        "11221.28"
    )  # 52.74 / 4700
    assert cents(llama["busy_only_cost_per_1m_input_tokens"]) == Decimal("1435.23")  # 25.26 / 17600
    assert llama["gpu_utilization"] == pytest.approx(78 / 120)
    assert llama["idle_share"] == pytest.approx(42 / 159)

    idle_day = got[(D2, "llama-70b")]
    assert (
        idle_day["requests"],
        cents(idle_day["fully_loaded_cost"]),
        idle_day["gpu_utilization"],
        idle_day["cost_per_1m_tokens"],
    ) == (0, Decimal("84.00"), 0.0, None)

    chat = got[(D1, "chat-small")]
    # 108.00 EUR = 125.28 USD over 600 tokens.
    assert (chat["provider"], chat["model"]) == ("Microsoft", QWEN_7B)
    assert cents(chat["cost_per_1m_tokens"]) == Decimal("208800.00")
    assert chat["gpu_utilization"] == pytest.approx(3 / 100.8)

    hosted = built.query(
        "select sum(fully_loaded_cost) as cost, sum(true_up) as true_up, sum(api_cost) as api "
        "from cost_per_token_daily where usage_date = '2026-10-05' and provider = 'openai'"
    ).to_dicts()[0]
    # The deployment's two models: list 0.10 + 0.05, trued up by 0.03 to the bill's 0.18.
    assert (cents(hosted["api"]), cents(hosted["true_up"]), cents(hosted["cost"])) == (
        Decimal("0.15"),
        Decimal("0.03"),
        Decimal("0.18"),
    )


def test_energy_and_carbon_per_token(built) -> None:
    got = {
        r["deployment"]: r
        for r in rows(built, "select * from cost_per_token_daily where usage_date = '2026-10-05'")
    }
    llama, chat = got["llama-70b"], got["chat-small"]
    # 700 + 1000 Wh over 22.3k tokens; us-east-1 at 379.069 g/kWh: 644.4173 g.
    assert llama["energy_wh"] == Decimal(1700)
    assert llama["wh_per_1k_tokens"] == pytest.approx(1700 / 22.3)
    assert float(llama["co2e_g"]) == pytest.approx(644.4173, abs=1e-5)
    assert llama["gco2e_per_1k_tokens"] == pytest.approx(644.4173 / 22.3)
    # 42 Wh x 24 hours over 0.6k tokens; eastus at 379.069 g/kWh: 382.101552 g.
    assert chat["energy_wh"] == Decimal(1008)
    assert chat["wh_per_1k_tokens"] == pytest.approx(1680)
    assert float(chat["co2e_g"]) == pytest.approx(382.101552, abs=1e-5)
    assert got["gpt-4o"]["energy_wh"] is None  # hosted: no GPUs of ours


def test_customer_costs_revenue_and_margin(built) -> None:
    got = {
        (r["usage_date"], r["customer_id"]): (
            cents(r["cost"]),
            r["tier"],
            r["revenue"],
            cents(r["gross_margin"]),
            r["requests"],
        )
        for r in rows(built, "select * from customer_costs_daily")
    }
    assert got == {
        # cost 13.50 + 23.04 + 11.832 + 0.06; revenue per 1M: input 1000 + 1000 + 500 + 4000 =
        # 6500 x 2.00, cached 2000 + 5000 = 7000 x 0.50, output 600 + 1000 + 100 + 4000 = 5700
        # x 8.00 -> 0.0621.
        (D1, "cust_acme"): (
            Decimal("48.43"),
            "enterprise",
            Decimal("0.0621"),
            Decimal("-48.37"),
            4,
        ),
        # 9.00 + 48.96; two requests at 0.02.
        (D1, "cust_hooli"): (Decimal("57.96"), "starter", Decimal("0.04"), Decimal("-57.92"), 2),
        # 22.50 + 6.728 + 0.12; input 2000 + 2000 + 10000 at 3.00, cached 20000 at 0.75,
        # output 1000 + 5000 at 12.00 -> 0.042 + 0.015 + 0.072 = 0.129.
        (D1, "cust_initech"): (Decimal("29.35"), "growth", Decimal("0.129"), Decimal("-29.22"), 3),
        # 30 + 12 + 113.448 + 76.792
        (D1, "__idle__"): (Decimal("232.24"), None, None, None, 0),
        (D2, "cust_initech"): (Decimal("0.05"), "growth", Decimal("0.06"), Decimal("0.01"), 1),
        (D2, "__idle__"): (Decimal("84.00"), None, None, None, 0),
    }


def test_feature_costs(built) -> None:
    got = {
        (r["feature"], r["model"]): cents(r["cost"])
        for r in rows(built, "select * from feature_costs_daily where usage_date = '2026-10-05'")
    }
    assert got == {
        ("chat", LLAMA_70B): Decimal("45.54"),  # 13.50 + 9.00 + 23.04
        ("summarize", LLAMA_70B): Decimal("71.46"),  # 22.50 + 48.96
        ("chat", QWEN_7B): Decimal("11.83"),
        ("search", BGE): Decimal("6.73"),
        ("chat", "gpt-4o-2024-08-06"): Decimal("0.12"),
        ("summarize", "gpt-4o"): Decimal("0.06"),
        ("__idle__", LLAMA_70B): Decimal("42.00"),
        ("__idle__", QWEN_7B): Decimal("113.45"),
        ("__idle__", BGE): Decimal("76.79"),
    }


def test_cache_savings_per_model_feature_customer(built) -> None:
    got = {
        (r["model"], r["feature"], r["customer_id"]): (
            r["cache_read_tokens"],
            r["cache_savings"],
            r["cost"],
            r["cost_without_cache"],
        )
        for r in rows(
            built,
            "select * from cache_savings_daily where usage_date = '2026-10-05' "
            "and cache_read_tokens > 0",
        )
    }
    assert set(got) == {
        (LLAMA_70B, "chat", "cust_acme"),
        (LLAMA_70B, "chat", "cust_hooli"),
        ("gpt-4o-2024-08-06", "chat", "cust_initech"),
    }
    expected = {
        # r1 5.40 + r6 8.64 = 14.04 saved on 13.50 + 23.04 = 36.54 of cost.
        (LLAMA_70B, "chat", "cust_acme"): (7000, "14.04", "36.54", "50.58"),
        (LLAMA_70B, "chat", "cust_hooli"): (1000, "2.70", "9.00", "11.70"),
        # 20000 cached tokens at 2.50 - 1.25 per 1M = 0.025, on 0.12 of (trued-up) cost.
        ("gpt-4o-2024-08-06", "chat", "cust_initech"): (20000, "0.025", "0.12", "0.145"),
    }
    for key, (tokens, saved, cost, without) in expected.items():
        got_tokens, got_saved, got_cost, got_without = got[key]
        assert got_tokens == tokens, key
        for actual, value in ((got_saved, saved), (got_cost, cost), (got_without, without)):
            assert abs(actual - Decimal(value)) < Decimal("0.000001"), key


def test_break_even_against_the_same_model_hosted(built) -> None:
    r = rows(
        built,
        "select * from self_hosting_break_even_daily where usage_date = '2026-10-05' "
        "and deployment = 'llama-70b'",
    )[0]
    # Bedrock's Llama 3.1 70B at 0.72 per 1M for every token: 22300 tokens = 0.016056. Self-hosted
    # 159.00. Break-even utilization 78 x (1 + 39/120) / 0.016056 = 6436.8: no utilization
    # makes these few tokens cheaper on our own GPUs.
    assert (r["hosted_provider"], r["hosted_model"]) == (
        "bedrock",
        "meta.llama3-1-70b-instruct-v1:0",
    )
    assert r["hosted_cost"] == Decimal("0.016056")
    assert cents(r["self_hosted_cost"]) == Decimal("159.00")
    assert cents(r["hosted_cost_per_1m_tokens"]) == Decimal("0.72")
    assert cents(r["self_hosted_cost_per_1m_tokens"]) == Decimal("7130.04")
    assert r["gpu_utilization"] == pytest.approx(0.65)
    assert r["break_even_gpu_utilization"] == pytest.approx(78 * (1 + 39 / 120) / 0.016056)
    assert r["cheaper_option"] == "hosted"
    chat = rows(
        built, "select * from self_hosting_break_even_daily where deployment = 'chat-small'"
    )[0]
    assert chat["hosted_model"] is None and chat["break_even_gpu_utilization"] is None


def test_gpu_rates_against_list_price(built) -> None:
    got = {
        (str(r["usage_date"]), r["provider"]): r
        for r in rows(built, "select * from gpu_rates_daily")
    }
    assert set(got) == {("2026-10-05", "AWS"), ("2026-10-06", "AWS"), ("2026-10-05", "Microsoft")}
    # AWS D1: hours 10 and 11 of one p5.48xlarge, each 60.00 under the Savings Plan against
    # 98.32 on demand (the negation's 98.32 adds nothing): 16 GPU-hours, 120.00 against
    # 196.64, 7.50 against 12.29 a GPU-hour, 1 - 120 / 196.64 saved, all of it covered.
    aws = got[("2026-10-05", "AWS")]
    assert (aws["instance_type"], aws["gpu_model"], aws["region_id"]) == ("p5.48xlarge", "H100", "us-east-1")
    assert (aws["instance_hours"], aws["gpu_hours"]) == (2, 16)
    assert (aws["effective_cost"], aws["list_cost"]) == (Decimal("120.00"), Decimal("196.64"))
    assert cents(aws["effective_usd_per_gpu_hour"]) == Decimal("7.50")
    assert cents(aws["list_usd_per_gpu_hour"]) == Decimal("12.29")
    assert aws["effective_savings_rate"] == pytest.approx(76.64 / 196.64)
    assert aws["commitment_coverage"] == pytest.approx(1.0)
    d2 = got[("2026-10-06", "AWS")]
    assert (d2["gpu_hours"], d2["effective_cost"], d2["list_cost"]) == (8, Decimal("60.00"), Decimal("98.32"))
    # Azure D1: one A100 for 24 hours, 168.00 EUR against 201.60 list, no commitment; in USD
    # at 1.16: 194.88 against 233.856, 8.12 against 9.744 a GPU-hour.
    az = got[("2026-10-05", "Microsoft")]
    assert (az["billing_currency"], az["instance_hours"], az["gpu_hours"]) == ("EUR", 24, 24)
    assert (az["effective_cost"], az["list_cost"]) == (Decimal("168.00"), Decimal("201.60"))
    assert (cents(az["effective_cost_usd"]), az["list_cost_usd"]) == (Decimal("194.88"), Decimal("233.856"))
    assert float(az["effective_usd_per_gpu_hour"]) == pytest.approx(8.12, abs=1e-9)
    assert float(az["list_usd_per_gpu_hour"]) == pytest.approx(9.744, abs=1e-9)
    assert az["effective_savings_rate"] == pytest.approx(1 / 6)
    assert az["commitment_coverage"] == 0
    assert all(r["list_cost_complete"] for r in got.values())


def test_conservation_tests_pass_at_every_grain(built) -> None:
    result = built.dbt("test", "--select", "tag:conservation")
    assert {r.node.name: str(r.status) for r in result.result} == {
        "assert_cost_conserved": "pass",
        "assert_cost_conserved_hourly": "pass",
        "assert_cost_conserved_by_provider": "pass",
    }


def test_docs_generate(built) -> None:
    built.dbt("docs", "generate")
    catalog = (built.root / "target" / "catalog.json").read_text()
    assert "self_hosting_break_even_daily" in catalog and "gco2e_per_1k_tokens" in catalog
