"""The demo's closing summary, read from the marts (read-only, never the working tables)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import duckdb


@dataclass
class Summary:
    models: list[tuple]  # provider, model, deployment, tokens, cost, per 1M: loaded, busy; idle share
    customers: list[tuple]  # customer, requests, cost
    features: list[tuple]  # feature, requests, cost
    reconciliation: list[tuple]  # provider, currency, days, days passed, max |residual|
    total_cost: Decimal
    pages: list[tuple]  # day, dimension, key, impact: anomalies at paging severity


def read_summary(warehouse: str, top: int = 5) -> Summary:
    with duckdb.connect(warehouse, read_only=True) as con:
        models = con.execute(
            """
            select provider, model, deployment,
                   sum(total_tokens) as tokens,
                   sum(fully_loaded_cost) as cost,
                   sum(fully_loaded_cost) * 1000000 / nullif(sum(total_tokens), 0) as per_1m,
                   sum(busy_cost) * 1000000 / nullif(sum(total_tokens), 0) as busy_per_1m,
                   sum(idle_cost) / nullif(sum(busy_cost) + sum(idle_cost), 0) as idle_share
            from cost_per_token_daily
            group by all
            order by per_1m desc nulls last
            limit ?
            """,
            [top],
        ).fetchall()
        customers = con.execute(
            """
            select customer_id, sum(requests), sum(cost) as cost
            from customer_costs_daily where customer_id <> '__idle__'
            group by all order by cost desc limit ?
            """,
            [top],
        ).fetchall()
        features = con.execute(
            """
            select feature, sum(requests), sum(cost) as cost
            from feature_costs_daily where feature <> '__idle__'
            group by all order by cost desc limit ?
            """,
            [top],
        ).fetchall()
        reconciliation = con.execute(
            """
            select provider, billing_currency, count(*), count(*) filter (where passed),
                   max(abs(residual))
            from billing_reconciliation_daily group by all order by 1, 2
            """
        ).fetchall()
        total = con.execute("select coalesce(sum(total_cost), 0) from fct_inference_costs_hourly").fetchall()[0][0]
        has_anomalies = con.execute(
            "select count(*) from information_schema.tables where table_name = 'cost_anomalies'"
        ).fetchall()[0][0]
        pages = con.execute(
            """
            select usage_date, dimension, key, impact_usd from cost_anomalies
            where grain = 'day' and severity = 'critical' and status = 'triggered'
            order by usage_date
            """
        ).fetchall() if has_anomalies else []
    return Summary(models, customers, features, reconciliation, total, pages)


def _money(x: object) -> str:
    return "n/a" if x is None else f"${Decimal(x):,.2f}"


def format_summary(s: Summary) -> str:
    lines = [f"Inference cost in the marts: {_money(s.total_cost)} (USD)", ""]
    lines.append("Models by cost per 1M tokens (fully loaded, busy-only; idle share of GPU cost):")
    for provider, model, deployment, tokens, cost, per_1m, busy_1m, idle in s.models:
        idle_txt = "" if idle is None else f"  idle {float(idle):5.1%}"
        lines.append(
            f"  {model:<36} {deployment or provider:<24} {_money(per_1m):>9} /1M  busy {_money(busy_1m):>9}"
            f"{idle_txt}  {int(tokens or 0):>13,} tokens  {_money(cost):>12}"
        )
    lines += ["", "Top customers by cost:"]
    for customer, requests, cost in s.customers:
        lines.append(f"  {customer:<24} {int(requests or 0):>10,} requests  {_money(cost):>12}")
    lines += ["", "Top features by cost:"]
    for feature, requests, cost in s.features:
        lines.append(f"  {feature:<24} {int(requests or 0):>10,} requests  {_money(cost):>12}")
    lines += ["", "Cost anomalies that paged (daily):"]
    for day, dimension, key, impact in s.pages:
        lines.append(f"  {day}  {dimension:<10} {key:<24} impact {_money(impact):>12}")
    if not s.pages:
        lines.append("  none")
    lines += ["", "Reconciliation with the bill (per day, provider, currency):"]
    for provider, currency, days, passed, residual in s.reconciliation:
        status = "OK" if days == passed else "FAILED"
        lines.append(f"  {provider:<12} {currency:<4} {passed}/{days} days conserve to the cent "
                     f"(max residual {_money(residual)})  {status}")
    return "\n".join(lines)
