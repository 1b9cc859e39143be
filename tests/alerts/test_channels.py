"""The channels against a real HTTP server on loopback: payload shapes, signature, retries,
configuration from the environment, and `inferledger alerts test`."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from pipelines.alerts.channels import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ConfigError,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
    channels_from_env,
    verify,
)
from pipelines.alerts.events import Alert, Digest, asset_url
from pipelines.alerts.http import RetryPolicy, post
from pipelines.cli_alerts import alerts as alerts_cli
from tests.support.http_recorder import HttpRecorder, http_recorder

NOW = datetime(2026, 10, 4, 7, 0, tzinfo=UTC)
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, timeout_s=5)
ROUTING_KEY = "R0UTINGKEY0000000000000000000001"
SECRET = "whsec-planted-0123456789"

SPIKE = Alert(
    dedup_key="day:cost:total:all:2026-10-03",
    action="trigger",
    severity="critical",
    summary="Cost anomaly on total all (2026-10-03): $4,210.50 vs $1,530.25 expected",
    source="cost_anomalies",
    link=asset_url("http://dagster.internal:3000", "cost_anomalies"),
    period=datetime(2026, 10, 3, tzinfo=UTC),
    details={
        "dimension": "total", "key": "all", "actual": "4210.500000000000",
        "expected": "1530.250000000000", "impact_usd": "2680.250000000000", "impact_pct": 1.7515,
        "root_causes": [{"dimension": "customer", "key": "cust_globex", "impact_usd": 2455.1, "share": 0.916}],
    },
)


@pytest.fixture(scope="module")
def server() -> Iterator[HttpRecorder]:
    with http_recorder() as rec:
        yield rec


@pytest.fixture
def rec(server: HttpRecorder) -> HttpRecorder:
    server.clear()
    return server


def test_pagerduty_trigger_and_resolve_follow_events_api_v2(rec: HttpRecorder) -> None:
    pd = PagerDutyChannel(routing_key=ROUTING_KEY, url=rec.url("/v2/enqueue"))
    assert pd.send(SPIKE, NOW, FAST).status == 202
    resolve = Alert(**{**SPIKE.__dict__, "action": "resolve"})
    assert pd.send(resolve, NOW, FAST).ok

    trigger, resolved = (r.json() for r in rec.to("/v2/enqueue"))
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "day:cost:total:all:2026-10-03"
    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "inferledger/cost_anomalies"
    assert payload["summary"].startswith("Cost anomaly on total all")
    assert payload["custom_details"]["impact_usd"] == "2680.250000000000"
    assert payload["custom_details"]["expected"] == "1530.250000000000"
    assert payload["custom_details"]["root_causes"][0]["key"] == "cust_globex"
    assert trigger["links"] == [{"href": "http://dagster.internal:3000/assets/cost_anomalies",
                                 "text": "Open in Dagster"}]
    # A resolve carries only what PagerDuty needs to find the incident.
    assert resolved == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                        "dedup_key": "day:cost:total:all:2026-10-03"}


def test_slack_blocks_carry_impact_expected_actual_causes_and_link(rec: HttpRecorder) -> None:
    slack = SlackChannel(webhook_url=rec.url("/slack"))
    assert slack.send(SPIKE, NOW, FAST).text == "ok"
    body = rec.to("/slack")[0].json()
    assert body["text"] == SPIKE.summary  # the notification's fallback text
    header, _summary, facts, context = body["blocks"]
    assert header["text"]["text"] == "CRITICAL: cost_anomalies"
    fields = [f["text"] for f in facts["fields"]]
    assert fields[0] == "*Impact*\n$2,680.25 (+175%)"
    assert fields[1] == "*Expected vs actual*\n$1,530.25 vs $4,210.50"
    assert fields[2] == "*Root causes*\ncustomer=cust_globex ($2,455.10, 92%)"
    assert "<http://dagster.internal:3000/assets/cost_anomalies|Open in Dagster>" in context["elements"][0]["text"]


def test_webhook_body_is_signed_with_hmac_sha256_of_timestamp_and_body(rec: HttpRecorder) -> None:
    hook = WebhookChannel(url=rec.url("/hook"), secret=SECRET)
    assert hook.send(SPIKE, NOW, FAST).ok
    got = rec.to("/hook")[0]
    timestamp = got.headers[TIMESTAMP_HEADER]
    assert timestamp == str(int(NOW.timestamp())) == "1791097200"
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert got.headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert verify(SECRET, timestamp, got.body, got.headers[SIGNATURE_HEADER])
    assert not verify("another-secret", timestamp, got.body, got.headers[SIGNATURE_HEADER])
    doc = got.json()
    assert (doc["type"], doc["event_action"], doc["dedup_key"]) == ("alert", "trigger", SPIKE.dedup_key)
    assert doc["details"]["impact_usd"] == "2680.250000000000"


def test_digest_lists_each_alert_on_chat_channels_only(rec: HttpRecorder) -> None:
    digest = Digest(NOW.date(), (SPIKE,))
    SlackChannel(webhook_url=rec.url("/slack")).send(digest, NOW, FAST)
    WebhookChannel(url=rec.url("/hook"), secret=SECRET).send(digest, NOW, FAST)
    slack = rec.to("/slack")[0].json()
    assert slack["blocks"][0]["text"]["text"] == "Daily digest: 2026-10-04"
    assert len(slack["blocks"]) == 2
    hook = rec.to("/hook")[0].json()
    assert (hook["type"], hook["dedup_key"], len(hook["alerts"])) == ("digest", "digest:2026-10-04", 1)
    with pytest.raises(TypeError):
        PagerDutyChannel(routing_key=ROUTING_KEY).body(digest, NOW)


def test_429_is_retried_after_retry_after_then_accepted(rec: HttpRecorder) -> None:
    rec.script("/v2/enqueue", [(429, {"Retry-After": "0"}, b'{"status":"throttle"}')])
    waits: list[float] = []
    answer = post(rec.url("/v2/enqueue"), b"{}", {}, policy=FAST, sleep=waits.append)
    assert (answer.status, answer.attempts) == (202, 2)
    assert [r.status for r in rec.requests] == [429, 202]
    assert waits == [0.0]  # the server's Retry-After, not our own backoff


def test_5xx_backs_off_exponentially_and_4xx_is_not_retried(rec: HttpRecorder) -> None:
    rec.script("/v2/enqueue", [(503, {}, b"busy")] * 3)
    waits: list[float] = []
    policy = RetryPolicy(attempts=3, base_delay_s=1.0, max_delay_s=60)
    answer = post(rec.url("/v2/enqueue"), b"{}", {}, policy=policy, sleep=waits.append)
    assert (answer.status, answer.attempts, answer.ok) == (503, 3, False)
    assert waits == [1.0, 2.0]

    rec.clear()
    rec.script("/v2/enqueue", [(400, {}, b'{"status":"invalid event"}')])
    answer = post(rec.url("/v2/enqueue"), b"{}", {}, policy=policy, sleep=waits.append)
    assert (answer.status, answer.attempts) == (400, 1)


def test_errors_never_show_the_url_or_the_key(rec: HttpRecorder) -> None:
    # An endpoint echoing the key back, and a refused connection to a secret URL.
    rec.script("/v2/enqueue", [(400, {}, json.dumps({"errors": [f"bad key {ROUTING_KEY}"]}).encode())])
    pd = PagerDutyChannel(routing_key=ROUTING_KEY, url=rec.url("/v2/enqueue"))
    answer = pd.send(SPIKE, NOW, FAST)
    assert ROUTING_KEY not in answer.text and "[redacted]" in answer.text
    secret_url = "http://127.0.0.1:9/services/T000/B000/planted-slack-token"
    refused = SlackChannel(webhook_url=secret_url).send(SPIKE, NOW, RetryPolicy(attempts=1))
    assert refused.status is None and "planted-slack-token" not in refused.text
    shown = repr([pd, SlackChannel(webhook_url=secret_url), WebhookChannel(url=secret_url, secret=SECRET)])
    assert ROUTING_KEY not in shown and "planted-slack-token" not in shown and SECRET not in shown


def test_channels_come_from_the_environment_only() -> None:
    assert channels_from_env({}) == []
    env = {
        "INFERLEDGER_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "INFERLEDGER_PAGERDUTY_URL": "http://127.0.0.1:1/v2/enqueue",
        "INFERLEDGER_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
        "INFERLEDGER_WEBHOOK_URL": "https://example.invalid/hook",
        "INFERLEDGER_WEBHOOK_SECRET": SECRET,
    }
    pd, slack, hook = channels_from_env(env)
    assert (pd.name, slack.name, hook.name) == ("pagerduty", "slack", "webhook")
    assert pd.url == "http://127.0.0.1:1/v2/enqueue"
    assert channels_from_env({"INFERLEDGER_PAGERDUTY_ROUTING_KEY": "k"})[0].url == (
        "https://events.pagerduty.com/v2/enqueue")
    with pytest.raises(ConfigError, match="INFERLEDGER_WEBHOOK_SECRET"):
        channels_from_env({"INFERLEDGER_WEBHOOK_URL": "https://example.invalid/hook"})


def test_alerts_test_command_reports_each_channel_answer(rec: HttpRecorder) -> None:
    rec.script("/slack", [(429, {"Retry-After": "0"}, b"rate_limited")])
    env = {
        "INFERLEDGER_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "INFERLEDGER_PAGERDUTY_URL": rec.url("/v2/enqueue"),
        "INFERLEDGER_SLACK_WEBHOOK_URL": rec.url("/slack"),
        "INFERLEDGER_WEBHOOK_URL": rec.url("/hook"),
        "INFERLEDGER_WEBHOOK_SECRET": SECRET,
    }
    result = CliRunner().invoke(alerts_cli, ["test"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("pagerduty trigger: ok (HTTP 202, 1 attempt(s))")
    assert lines[1].startswith("pagerduty resolve: ok (HTTP 202, 1 attempt(s))")
    assert lines[2] == "slack trigger: ok (HTTP 200, 2 attempt(s)) ok"
    assert lines[3].startswith("webhook trigger: ok (HTTP 200, 1 attempt(s))")
    assert ROUTING_KEY not in result.output and rec.base_url not in result.output
    assert [r.json()["event_action"] for r in rec.to("/v2/enqueue")] == ["trigger", "resolve"]

    rec.script("/slack", [(404, {}, b"no_service")])
    failed = CliRunner().invoke(alerts_cli, ["test"], env={
        "INFERLEDGER_SLACK_WEBHOOK_URL": rec.url("/slack"), "INFERLEDGER_PAGERDUTY_ROUTING_KEY": "",
        "INFERLEDGER_WEBHOOK_URL": ""})
    assert failed.exit_code == 1
    assert "slack trigger: FAILED (HTTP 404, 1 attempt(s)) no_service" in failed.output


def test_inferledger_cli_has_alerts_test() -> None:
    from pipelines.cli import main

    result = CliRunner().invoke(main, ["alerts", "test", "--help"])
    assert result.exit_code == 0
    assert "Send a test event to each configured channel" in result.output
    missing = CliRunner().invoke(main, ["alerts", "test"], env={
        "INFERLEDGER_PAGERDUTY_ROUTING_KEY": "", "INFERLEDGER_SLACK_WEBHOOK_URL": "", "INFERLEDGER_WEBHOOK_URL": ""})
    assert missing.exit_code == 1 and "no alert channel configured" in missing.output
