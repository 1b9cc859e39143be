"""Mart rows written by hand: the report's figures for them are computed by hand in the tests."""

from __future__ import annotations

from pathlib import Path

import duckdb

HAND_MARTS_SQL = """
create table cost_per_token_daily (
    usage_date date, provider varchar, model varchar, deployment varchar, requests bigint,
    total_tokens bigint, busy_cost decimal(38,12), idle_cost decimal(38,12),
    fully_loaded_cost decimal(38,12), cost_per_1m_tokens decimal(38,12),
    gpu_utilization double, idle_share double, wh_per_1k_tokens double);
insert into cost_per_token_daily values
    ('2026-10-01', 'AWS', 'llama-8b', 'llama-8b-dep', 100, 2000000, 20, 10, 30, 15, 0.5, 0.3333, 2.0),
    ('2026-10-01', 'openai', 'gpt-4o', 'gpt-4o', 50, 1000000, 5, 0, 5, 5, null, 0, null),
    ('2026-10-02', 'AWS', 'llama-8b', 'llama-8b-dep', 40, 1000000, 10, 15, 25, 25, 0.4, 0.6, 3.0),
    ('2026-10-02', 'openai', 'gpt-4o', 'gpt-4o', 25, 500000, 2.5, 0, 2.5, 5, null, 0, null);

create table customer_costs_daily (
    usage_date date, customer_id varchar, requests bigint, total_tokens bigint,
    cost decimal(38,12), revenue decimal(38,12), gross_margin decimal(38,12));
insert into customer_costs_daily values
    ('2026-10-01', 'cust_acme', 120, 1500000, 20, 30, 10),
    ('2026-10-02', 'cust_acme', 65, 1000000, 12.5, 20, 7.5),
    ('2026-10-01', 'cust_globex', 30, 1500000, 5, null, null),
    ('2026-10-01', '__idle__', 0, 0, 10, null, null),
    ('2026-10-02', '__idle__', 0, 0, 15, null, null);

create table feature_costs_daily (usage_date date, feature varchar, model varchar, cost decimal(38,12));
insert into feature_costs_daily values
    ('2026-10-01', 'chat', 'llama-8b', 20), ('2026-10-01', 'chat', 'gpt-4o', 5),
    ('2026-10-01', '__idle__', 'llama-8b', 10),
    ('2026-10-02', 'chat', 'llama-8b', 10), ('2026-10-02', 'chat', 'gpt-4o', 2.5),
    ('2026-10-02', '__idle__', 'llama-8b', 15);

create table billing_reconciliation_daily (
    usage_date date, provider varchar, billing_currency varchar, billed_in_scope decimal(38,12),
    allocated decimal(38,12), idle decimal(38,12), shared decimal(38,12),
    unattributed decimal(38,12), out_of_scope decimal(38,12), residual decimal(38,12), passed boolean);
insert into billing_reconciliation_daily values
    ('2026-10-01', 'AWS', 'USD', 30, 20, 10, 0, 0, 1, 0, true),
    ('2026-10-02', 'AWS', 'USD', 25.02, 10, 15, 0, 0, 1, 0.02, false);
"""

# The columns DESIGN.md promises for the marts other engineers are building.
ANOMALIES_SQL = """
create table cost_anomalies (
    period_start timestamptz, usage_date date, grain varchar, metric varchar, dimension varchar,
    key varchar, actual decimal(38,12), expected decimal(38,12), lower decimal(38,12),
    upper decimal(38,12), score double, impact_usd decimal(38,12), impact_pct double,
    severity varchar, root_causes varchar, dedup_key varchar, status varchar);
insert into cost_anomalies values
    ('2026-10-02', '2026-10-02', 'day', 'cost', 'customer', 'cust_acme', 12.5, 5, 4, 6, 7.5, 7.5, 1.5,
     'critical', '[]', 'k1', 'triggered'),
    ('2026-10-01', '2026-10-01', 'day', 'cost', 'feature', 'chat', 25, 24, 20, 28, 0.3, 1, 0.0417,
     'info', '[]', 'k2', 'triggered'),
    ('2026-10-02', '2026-10-02', 'day', 'cost', 'feature', 'chat', 12.5, 12.5, 10, 15, 0, 0, 0,
     'info', '[]', 'k2', 'resolved');
"""

CONCENTRATION_SQL = """
create table supplier_concentration (
    period_type varchar, period_start date, period_end date, usage_date date, dimension varchar,
    total_spend_usd decimal(38,12), supplier_count bigint, hhi double, effective_suppliers double,
    top_supplier varchar, top_share double, risk_level varchar);
insert into supplier_concentration values
    ('month', '2026-10-01', '2026-11-01', '2026-10-02', 'cloud_provider', 60, 2, 9000, 1.11, 'AWS', 0.95,
     'highly_concentrated'),
    ('trailing_30d', '2026-09-03', '2026-10-03', '2026-10-02', 'cloud_provider', 60, 2, 8200, 1.22, 'AWS', 0.9,
     'highly_concentrated'),
    ('trailing_30d', '2026-09-02', '2026-10-02', '2026-10-01', 'cloud_provider', 35, 2, 5000, 2.0, 'AWS', 0.6,
     'highly_concentrated'),
    ('trailing_30d', '2026-09-03', '2026-10-03', '2026-10-02', 'model_provider', 60, 5, 1500, 6.67, 'meta', 0.3,
     'moderately_concentrated');
"""


GPU_RATES_SQL = """
create table gpu_rates_daily (
    usage_date date, provider varchar, region_id varchar, instance_type varchar, gpu_model varchar,
    billing_currency varchar, gpu_hours decimal(38,6), effective_cost_usd decimal(38,12),
    list_cost_usd decimal(38,12), commitment_coverage double, list_cost_complete boolean);
insert into gpu_rates_daily values
    ('2026-10-01', 'AWS', 'us-east-1', 'p5.48xlarge', 'H100', 'USD', 16, 120, 196.64, 1.0, true),
    ('2026-10-02', 'AWS', 'us-east-1', 'p5.48xlarge', 'H100', 'USD', 6.5, 79.885, 79.885, 0.0, true),
    ('2026-10-01', 'Microsoft', 'eastus', 'Standard_NC24ads_A100_v4', 'A100', 'EUR', 24, 194.88, null, null, false);
"""


def write_hand_marts(path: Path, *extra_sql: str) -> Path:
    with duckdb.connect(str(path)) as con:
        for sql in (HAND_MARTS_SQL, *extra_sql):
            con.execute(sql)
    return path
