"""`inferledger alerts test`: send a test event to every configured channel, say what each answered."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime

import click

from pipelines.alerts.channels import ConfigError, channels_from_env
from pipelines.alerts.events import DEFAULT_DAGSTER_URL, Alert
from pipelines.alerts.http import RetryPolicy


@click.group("alerts")
def alerts() -> None:
    """Alert channels (PagerDuty, Slack, signed webhook), configured from the environment."""


@alerts.command("test")
@click.option("--attempts", type=click.IntRange(1, 10), default=3, show_default=True,
              help="Tries per channel (retries on 429 and 5xx).")
def test(attempts: int) -> None:
    """Send a test event to each configured channel and print its answer.

    PagerDuty gets a trigger (severity info) and, once accepted, its resolve, so no
    incident stays open. Nothing is written to the delivery log.
    """
    try:
        channels = channels_from_env(os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if not channels:
        raise click.ClickException(
            "no alert channel configured: set INFERLEDGER_PAGERDUTY_ROUTING_KEY, "
            "INFERLEDGER_SLACK_WEBHOOK_URL, or INFERLEDGER_WEBHOOK_URL and INFERLEDGER_WEBHOOK_SECRET"
        )
    now = datetime.now(UTC)
    dagster_url = os.environ.get("INFERLEDGER_DAGSTER_URL") or DEFAULT_DAGSTER_URL
    alert = Alert(
        dedup_key=f"inferledger-test-{now:%Y%m%dT%H%M%SZ}",
        action="trigger",
        severity="info",
        summary="inferledger test alert: the channel works, no action needed",
        source="alerts_test",
        link=dagster_url,
        period=now,
        details={"test": True},
    )
    policy = RetryPolicy(attempts=attempts)
    failed = 0
    for channel in channels:
        events = [alert, replace(alert, action="resolve")] if channel.name == "pagerduty" else [alert]
        for event in events:
            answer = channel.send(event, now, policy)
            status = f"HTTP {answer.status}" if answer.status is not None else "no answer"
            verdict = "ok" if answer.ok else "FAILED"
            click.echo(f"{channel.name} {event.action}: {verdict} ({status}, {answer.attempts} attempt(s))"
                       f" {answer.text.strip()[:200]}")
            if not answer.ok:
                failed += 1
                break
    if failed:
        raise click.ClickException(f"{failed} channel(s) did not accept the test event")
