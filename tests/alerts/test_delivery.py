"""Delivery from the warehouse's cost_anomalies: pages once, resolves once, survives a
restart, honours the cooldown, digests what does not page; and leaks no secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.resources import StorageResource
from pipelines.alerts import log
from pipelines.alerts.asset import alert_delivery
from pipelines.alerts.channels import PagerDutyChannel, SlackChannel, WebhookChannel
from pipelines.alerts.dispatch import DeliveryReport, deliver
from pipelines.alerts.events import anomaly_alerts, reconciliation_alerts, run_alerts
from pipelines.alerts.http import RetryPolicy
from tests.support.http_recorder import HttpRecorder, http_recorder

FAST = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.05, timeout_s=5)
ROUTING_KEY = "PLANTEDROUTINGKEY0000000000000042"
SECRET = "planted-webhook-secret-7f3a"
TOTAL_KEY = "day:cost:total:all:2026-10-03"
GLOBEX_KEY = "day:cost:customer:cust_globex:2026-10-03"

ANOMALIES_DDL = """
create table if not exists cost_anomalies (
    period_start timestamptz, usage_date date, grain varchar, metric varchar,
    dimension varchar, key varchar, actual decimal(38,12), expected decimal(38,12),
    lower decimal(38,12), upper decimal(38,12), score double, impact_usd decimal(38,12),
    impact_pct double, rule varchar, direction varchar, severity varchar,
    root_causes varchar, explained_by varchar, dedup_key varchar, status varchar
)
"""


def add_anomaly(warehouse: str, day: date, dimension: str, key: str, *, dedup_key: str, status: str,
                severity: str, actual: str = "0", expected: str = "0", impact: str = "0",
                causes: list | None = None) -> None:
    """One row as the anomaly asset writes it (money as DECIMAL(38,12))."""
    with closing(duckdb.connect(warehouse)) as con:
        con.execute(ANOMALIES_DDL)
        con.execute(
            "insert into cost_anomalies values (?, ?, 'day', 'cost', ?, ?, ?::decimal(38,12),"
            " ?::decimal(38,12), null, null, 9.5, ?::decimal(38,12), null, 'spike', 'up', ?, ?, null, ?, ?)",
            [datetime(day.year, day.month, day.day, tzinfo=UTC), day, dimension, key,
             actual, expected, impact, severity, json.dumps(causes or []), dedup_key, status],
        )


def spike(warehouse: str) -> None:
    """2026-10-03: total spend 4,210.50 vs 1,530.25 expected, explained by cust_globex."""
    add_anomaly(warehouse, date(2026, 10, 3), "total", "all", dedup_key=TOTAL_KEY, status="triggered",
                severity="critical", actual="4210.50", expected="1530.25", impact="2680.25",
                causes=[{"dimension": "customer", "key": "cust_globex", "impact_usd": 2455.1, "share": 0.916}])
    add_anomaly(warehouse, date(2026, 10, 3), "customer", "cust_globex", dedup_key=GLOBEX_KEY,
                status="triggered", severity="info", actual="2800.00", expected="344.90", impact="2455.10")


@pytest.fixture(scope="module")
def server() -> Iterator[HttpRecorder]:
    with http_recorder() as rec:
        yield rec


@pytest.fixture
def rec(server: HttpRecorder) -> HttpRecorder:
    server.clear()
    return server


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    return str(tmp_path / "warehouse.duckdb")


def channels(rec: HttpRecorder) -> list:
    return [
        PagerDutyChannel(routing_key=ROUTING_KEY, url=rec.url("/v2/enqueue")),
        SlackChannel(webhook_url=rec.url("/slack")),
        WebhookChannel(url=rec.url("/hook"), secret=SECRET),
    ]


def run_delivery(warehouse: str, rec: HttpRecorder, now: datetime, **kwargs: object) -> DeliveryReport:
    """One delivery run, on a fresh connection each time (as after a restart)."""
    with closing(log.connect(warehouse)) as con:
        alerts = anomaly_alerts(con.sql("select * from cost_anomalies").pl())
        return deliver(con, alerts, channels(rec), now=now, policy=FAST, **kwargs)


def test_spike_pages_once_then_resolves_once(warehouse: str, rec: HttpRecorder) -> None:
    spike(warehouse)
    report = run_delivery(warehouse, rec, datetime(2026, 10, 4, 7, tzinfo=UTC))
    pages = rec.to("/v2/enqueue")
    assert [(p.json()["event_action"], p.json()["dedup_key"]) for p in pages] == [("trigger", TOTAL_KEY)]
    details = pages[0].json()["payload"]["custom_details"]
    assert (details["actual"], details["expected"], details["impact_usd"]) == (
        "4210.500000000000", "1530.250000000000", "2680.250000000000")
    assert details["dagster_asset"] == (
        "http://127.0.0.1:3000/assets/cost_anomalies?view=partitions&partition=2026-10-03")
    # Chat gets the page and, the day being over, the digest holding the explained child.
    assert [r.json()["blocks"][0]["text"]["text"] for r in rec.to("/slack")] == [
        "CRITICAL: cost_anomalies", "Daily digest: 2026-10-03"]
    assert [r.json()["type"] for r in rec.to("/hook")] == ["alert", "digest"]
    assert len(report.sent) == 5 and not report.failed

    # A restart (new process, new connection) and a second run send nothing.
    for _ in range(2):
        again = run_delivery(warehouse, rec, datetime(2026, 10, 4, 7, 5, tzinfo=UTC))
        assert again.sent == [] and again.pending == 0
    assert len(rec.requests) == 5

    # Still abnormal the next day: the incident stays open, nobody is paged again.
    add_anomaly(warehouse, date(2026, 10, 4), "total", "all", dedup_key=TOTAL_KEY, status="ongoing",
                severity="critical", actual="3900", expected="1530.25", impact="2369.75")
    assert run_delivery(warehouse, rec, datetime(2026, 10, 5, 7, tzinfo=UTC)).sent == []

    # Back to normal: exactly one resolve per channel that had it open.
    add_anomaly(warehouse, date(2026, 10, 5), "total", "all", dedup_key=TOTAL_KEY, status="resolved",
                severity="info", actual="1540", expected="1530.25")
    run_delivery(warehouse, rec, datetime(2026, 10, 6, 7, tzinfo=UTC))
    run_delivery(warehouse, rec, datetime(2026, 10, 6, 7, 30, tzinfo=UTC))
    assert [(p.json()["event_action"], p.json()["dedup_key"]) for p in rec.to("/v2/enqueue")] == [
        ("trigger", TOTAL_KEY), ("resolve", TOTAL_KEY)]
    assert rec.to("/slack")[-1].json()["blocks"][0]["text"]["text"] == "Resolved: cost_anomalies"
    with closing(duckdb.connect(warehouse, read_only=True)) as con:
        assert con.execute(
            "select channel, action, count(*) from alert_deliveries where outcome = 'sent'"
            " group by all order by all"
        ).fetchall() == [
            ("pagerduty", "resolve", 1), ("pagerduty", "trigger", 1),
            ("slack", "digest", 1), ("slack", "resolve", 1), ("slack", "trigger", 1),
            ("webhook", "digest", 1), ("webhook", "resolve", 1), ("webhook", "trigger", 1),
        ]


def test_reopened_incident_waits_for_the_cooldown(warehouse: str, rec: HttpRecorder) -> None:
    t0 = datetime(2026, 10, 3, 12, tzinfo=UTC)
    day = date(2026, 10, 3)
    add_anomaly(warehouse, day, "total", "all", dedup_key=TOTAL_KEY, status="triggered", severity="critical")
    run_delivery(warehouse, rec, t0, cooldown=timedelta(hours=1))
    add_anomaly(warehouse, day, "total", "all", dedup_key=TOTAL_KEY, status="resolved", severity="info")
    run_delivery(warehouse, rec, t0 + timedelta(minutes=10), cooldown=timedelta(hours=1))
    # It fires again (a newer row of the same key) 20 minutes after the first page.
    with closing(duckdb.connect(warehouse)) as con:
        con.execute("update cost_anomalies set status = 'ongoing', severity = 'critical',"
                    " period_start = period_start + interval 1 hour where status = 'resolved'")
    held = run_delivery(warehouse, rec, t0 + timedelta(minutes=20), cooldown=timedelta(hours=1))
    assert (held.held, held.pending, held.sent) == (3, 3, [])
    released = run_delivery(warehouse, rec, t0 + timedelta(minutes=61), cooldown=timedelta(hours=1))
    assert [d.channel for d in released.sent] == ["pagerduty", "slack", "webhook"]
    assert [p.json()["event_action"] for p in rec.to("/v2/enqueue")] == ["trigger", "resolve", "trigger"]


def test_backfilled_anomaly_is_not_paged(warehouse: str, rec: HttpRecorder) -> None:
    spike(warehouse)
    report = run_delivery(warehouse, rec, datetime(2026, 11, 20, tzinfo=UTC))
    assert (report.stale, report.sent, rec.requests) == (3, [], [])


def test_warnings_wait_for_the_end_of_day_digest(warehouse: str, rec: HttpRecorder) -> None:
    day = date(2026, 10, 3)
    for customer in ("cust_hooli", "cust_stark"):
        add_anomaly(warehouse, day, "customer", customer, dedup_key=f"day:cost:customer:{customer}:2026-10-03",
                    status="triggered", severity="warning", actual="80", expected="30", impact="50")
    during = run_delivery(warehouse, rec, datetime(2026, 10, 3, 15, tzinfo=UTC))
    assert (during.sent, during.waiting_digests) == ([], 1)
    after = run_delivery(warehouse, rec, datetime(2026, 10, 4, 0, 30, tzinfo=UTC))
    assert sorted((d.channel, d.dedup_key) for d in after.sent) == [
        ("slack", "digest:2026-10-03"), ("webhook", "digest:2026-10-03")]
    assert len(rec.to("/hook")[0].json()["alerts"]) == 2
    assert rec.to("/v2/enqueue") == []  # warnings never page
    assert run_delivery(warehouse, rec, datetime(2026, 10, 4, 1, tzinfo=UTC)).sent == []


def test_escalated_incident_pages_and_keeps_paging_severity(warehouse: str, rec: HttpRecorder) -> None:
    key = "day:cost:deployment:llama-3.1-70b-instruct:2026-10-03"
    add_anomaly(warehouse, date(2026, 10, 3), "deployment", "llama-3.1-70b-instruct", dedup_key=key,
                status="triggered", severity="warning", actual="300", expected="200", impact="100")
    first = run_delivery(warehouse, rec, datetime(2026, 10, 4, 7, tzinfo=UTC))
    assert sorted(d.dedup_key for d in first.sent) == ["digest:2026-10-03"] * 2
    add_anomaly(warehouse, date(2026, 10, 4), "deployment", "llama-3.1-70b-instruct", dedup_key=key,
                status="escalated", severity="critical", actual="900", expected="200", impact="700")
    run_delivery(warehouse, rec, datetime(2026, 10, 5, 7, tzinfo=UTC))
    assert [(p.json()["event_action"], p.json()["payload"]["severity"]) for p in rec.to("/v2/enqueue")] == [
        ("trigger", "critical")]
    # A milder ongoing row does not demote the open incident to the digest.
    add_anomaly(warehouse, date(2026, 10, 5), "deployment", "llama-3.1-70b-instruct", dedup_key=key,
                status="ongoing", severity="warning", actual="400", expected="200", impact="200")
    assert run_delivery(warehouse, rec, datetime(2026, 10, 6, 7, tzinfo=UTC)).sent == []


def test_failed_run_pages_until_the_job_succeeds_again(warehouse: str, rec: HttpRecorder) -> None:
    t = datetime(2026, 10, 4, 6, 20, tzinfo=UTC)
    failed = [("daily_refresh", "FAILURE", "0f1e2d3c-aaaa-bbbb-cccc-000000000001", t)]
    with closing(log.connect(warehouse)) as con:
        deliver(con, run_alerts(failed), channels(rec)[:1], now=t + timedelta(minutes=1), policy=FAST)
        deliver(con, run_alerts(failed), channels(rec)[:1], now=t + timedelta(minutes=2), policy=FAST)
        fixed = [*failed, ("daily_refresh", "SUCCESS", "0f1e2d3c-aaaa-bbbb-cccc-000000000002",
                           t + timedelta(hours=1))]
        deliver(con, run_alerts(fixed), channels(rec)[:1], now=t + timedelta(hours=1, minutes=1), policy=FAST)
    sent = [r.json() for r in rec.to("/v2/enqueue")]
    assert [(p["event_action"], p["dedup_key"]) for p in sent] == [
        ("trigger", "run_failed:daily_refresh"), ("resolve", "run_failed:daily_refresh")]
    assert sent[0]["payload"]["summary"] == (
        "Run of daily_refresh failed (0f1e2d3c): the day's data or marts are stale")


def test_failed_page_is_logged_and_sent_by_the_next_run(warehouse: str, rec: HttpRecorder) -> None:
    spike(warehouse)
    rec.script("/v2/enqueue", [(503, {}, b"unavailable")] * 2)
    first = run_delivery(warehouse, rec, datetime(2026, 10, 4, 7, tzinfo=UTC))
    assert [(d.channel, d.http_status, d.attempts) for d in first.failed] == [("pagerduty", 503, 2)]
    second = run_delivery(warehouse, rec, datetime(2026, 10, 4, 7, 10, tzinfo=UTC))
    assert [(d.channel, d.action) for d in second.sent] == [("pagerduty", "trigger")]
    assert len(rec.to("/v2/enqueue")) == 1


def _everything_recorded(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every log line, event, metadata value, tag and config of a run, as one text."""
    run = instance.get_run_by_id(run_id)
    parts = [repr(run.run_config), repr(run.tags)]
    for entry in instance.all_logs(run_id):
        parts.append(entry.user_message or "")
        parts.append(repr(entry.dagster_event))
    return "\n".join(parts)


def test_alerting_run_never_logs_the_routing_key_or_webhook_url(
    warehouse: str, rec: HttpRecorder, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    slack_url = rec.url("/slack/services/T0PLANTED/B0PLANTED/slacktokenplanted")
    hook_url = rec.url("/hook/planted-path-token")
    monkeypatch.setenv("INFERLEDGER_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("INFERLEDGER_PAGERDUTY_URL", rec.url("/v2/enqueue"))
    monkeypatch.setenv("INFERLEDGER_SLACK_WEBHOOK_URL", slack_url)
    monkeypatch.setenv("INFERLEDGER_WEBHOOK_URL", hook_url)
    monkeypatch.setenv("INFERLEDGER_WEBHOOK_SECRET", SECRET)
    spike(warehouse)
    rec.script("/v2/enqueue", [(429, {"Retry-After": "0"}, json.dumps({"key": ROUTING_KEY}).encode())])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [alert_delivery], instance=instance,
        resources={"storage": StorageResource(landing=".", lake=".", warehouse=warehouse)},
        run_config={"ops": {"alert_delivery": {"config": {"as_of": "2026-10-04T07:00:00+00:00"}}}},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("alert_delivery")[0].metadata
    assert (metadata["sent"].value, metadata["failed"].value, metadata["channels"].value) == (
        5, 0, "pagerduty, slack, webhook")
    assert [p.json()["dedup_key"] for p in rec.to("/v2/enqueue")] == [TOTAL_KEY]

    recorded = _everything_recorded(instance, result.run_id)
    assert "pagerduty trigger day:cost:total:all:2026-10-03: sent" in recorded
    captured = capfd.readouterr()
    with closing(duckdb.connect(warehouse, read_only=True)) as con:
        delivery_log = repr(con.execute("select * from alert_deliveries").fetchall())
    for text in (recorded, captured.out, captured.err, caplog.text, delivery_log):
        for secret in (ROUTING_KEY, slack_url, "slacktokenplanted", hook_url, "planted-path-token", SECRET):
            assert secret not in text


def test_broken_reconciliation_pages_per_provider_and_currency() -> None:
    frame = pl.DataFrame({
        "usage_date": [date(2026, 10, 2), date(2026, 10, 3), date(2026, 10, 3)],
        "provider": ["AWS", "AWS", "Microsoft"],
        "billing_currency": ["USD", "USD", "USD"],
        "billed_in_scope": [Decimal("2400.50"), Decimal("2410.25"), Decimal("780.00")],
        "residual": [Decimal(0), Decimal("12.340000000000"), Decimal("0.001")],
        "passed": [True, False, True],
    })
    aws, azure = reconciliation_alerts(frame)
    assert (aws.dedup_key, aws.action, aws.severity) == ("reconciliation:AWS:USD", "trigger", "error")
    assert aws.summary == ("Reconciliation broken for AWS USD on 2026-10-03: billed in scope 2410.25"
                           " but 12.340000000000 is not allocated")
    assert aws.details["residual"] == "12.340000000000"
    assert (azure.dedup_key, azure.action) == ("reconciliation:Microsoft:USD", "resolve")
