"""The marts convert currencies with the lake's fx_rates: the seed overridden by the landing
store's fx/*.csv (a treasury's rates), the table billing ingestion checks currencies with.
The economics scenario without lake fx_rates (test_economics_scenario) converts with the
seed alone: EUR at 1.16 USD. Here a treasury file sets 1.25 from the scenario's first day."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.fx import load_fx_rates
from connectors.landing import LocalStore
from tests.warehouse.test_economics_scenario import D1, cents, rows, write_scenario


@pytest.fixture(scope="module")
def built(warehouse):
    from assets.prices import write_fx_rates  # imports Dagster: only when a test runs
    from assets.warehouse import DAILY_BUILD_ARGS

    write_scenario(warehouse)
    landing = warehouse.root / "landing"
    (landing / "fx").mkdir(parents=True)
    (landing / "fx" / "treasury.csv").write_text(
        f"date,currency,usd_per_unit\n{D1.isoformat()},EUR,1.25\n")
    write_fx_rates(warehouse.lake, load_fx_rates(LocalStore(landing)))
    warehouse.dbt(*DAILY_BUILD_ARGS)
    return warehouse


def test_the_staging_table_is_the_lakes(built) -> None:
    eur = rows(built, "select * from stg_lake__fx_rates where currency = 'EUR' "
                      "order by rate_date desc limit 2")
    assert [(r["rate_date"], r["usd_per_unit"], r["rate_source"]) for r in eur] == [
        (D1, Decimal("1.25"), "fx/treasury.csv"),
        (eur[1]["rate_date"], Decimal("1.16"), "seed"),
    ]


def test_marts_convert_at_the_treasury_rate(built) -> None:
    by_deployment = {
        r["deployment"]: r
        for r in rows(built, """
            select deployment, sum(total_cost_billing_currency) as eur, sum(total_cost) as usd,
                max(usd_per_unit) as rate
            from fct_inference_costs_hourly
            where provider = 'Microsoft' group by deployment""")
    }
    chat, embed = by_deployment["chat-small"], by_deployment["embed"]
    # The EUR amounts are the bill's; only their USD changes: 108.00 and 72.00 at 1.25.
    assert (cents(chat["eur"]), cents(chat["usd"]), chat["rate"]) == (
        Decimal("108.00"), Decimal("135.00"), Decimal("1.25"))
    assert (cents(embed["eur"]), cents(embed["usd"])) == (Decimal("72.00"), Decimal("90.00"))
    request = rows(built, "select * from fct_inference_costs_hourly where deployment = "
                          "'chat-small' and line_type = 'request'")
    assert [cents(r["total_cost"]) for r in request] == [Decimal("12.75")]  # 10.20 EUR


def test_the_bill_still_reconciles_in_its_currency(built) -> None:
    eur = rows(built, "select * from billing_reconciliation_daily "
                      "where billing_currency = 'EUR'")
    assert [(r["usage_date"], cents(r["billed_total"]), cents(r["residual"]), r["passed"])
            for r in eur] == [(D1, Decimal("180.00"), Decimal("0.00"), True)]
