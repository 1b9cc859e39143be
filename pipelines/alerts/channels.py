"""The three channels: PagerDuty Events API v2, a Slack incoming webhook, a signed webhook.

Routing keys, webhook URLs and the signing secret come from the environment only:

    INFERLEDGER_PAGERDUTY_ROUTING_KEY   a PagerDuty Events API v2 integration key
    INFERLEDGER_PAGERDUTY_URL           the Events API endpoint (default: PagerDuty's own)
    INFERLEDGER_SLACK_WEBHOOK_URL       a Slack incoming webhook URL
    INFERLEDGER_WEBHOOK_URL             any HTTPS endpoint taking JSON
    INFERLEDGER_WEBHOOK_SECRET          the HMAC-SHA256 key the webhook body is signed with

They are secrets (a webhook URL is a credential), so no channel ever shows them: not in
`repr`, not in errors, not in what delivery records or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipelines.alerts.events import Alert, Digest, describe_causes, usd
from pipelines.alerts.http import HttpAnswer, RetryPolicy, post

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SIGNATURE_HEADER = "X-Inferledger-Signature"
TIMESTAMP_HEADER = "X-Inferledger-Timestamp"
CLIENT = "inferledger"

Event = Alert | Digest


class ConfigError(ValueError):
    """A channel is half configured; the message names the variable to set."""


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, default=str, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PagerDutyChannel:
    """Pages on-call: trigger and resolve incidents by dedup_key. No digests: they do not page."""

    routing_key: str = field(repr=False)
    url: str = field(default=PAGERDUTY_EVENTS_URL, repr=False)
    name: str = "pagerduty"
    takes_digest: bool = False

    def body(self, event: Event, now: datetime) -> bytes:
        if not isinstance(event, Alert):
            raise TypeError("PagerDuty takes alerts, not digests")
        if event.action == "resolve":
            return _json({"routing_key": self.routing_key, "event_action": "resolve",
                          "dedup_key": event.dedup_key})
        return _json({
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": event.dedup_key,
            "payload": {
                "summary": event.summary,
                "source": f"{CLIENT}/{event.source}",
                "severity": event.severity,
                "timestamp": now.isoformat(),
                "component": str(event.details.get("key") or event.source),
                "group": str(event.details.get("dimension") or event.source),
                "class": event.source,
                "custom_details": event.details,
            },
            "links": [{"href": event.link, "text": "Open in Dagster"}],
            "client": CLIENT,
            "client_url": event.link,
        })

    def send(self, event: Event, now: datetime, policy: RetryPolicy) -> HttpAnswer:
        return post(self.url, self.body(event, now), {}, policy=policy, secrets=(self.routing_key,))


def _slack_alert_blocks(alert: Alert) -> list[dict]:
    d = alert.details
    icon = ":white_check_mark:" if alert.action == "resolve" else ":rotating_light:"
    title = ("Resolved" if alert.action == "resolve" else alert.severity.upper()) + f": {alert.source}"
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {alert.summary}"[:3000]}},
    ]
    fields = []
    if "impact_usd" in d:
        pct = f" ({float(d['impact_pct']):+.0%})" if d.get("impact_pct") is not None else ""
        fields.append(f"*Impact*\n{usd(d['impact_usd'])}{pct}")
    if "actual" in d:
        fields.append(f"*Expected vs actual*\n{usd(d.get('expected'))} vs {usd(d['actual'])}")
    if "root_causes" in d:
        fields.append(f"*Root causes*\n{describe_causes(d['root_causes'])}"[:2000])
    if "residual" in d:
        fields.append(f"*Residual*\n{d['residual']}")
    fields.append(f"*Severity*\n{alert.severity}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
    blocks.append({"type": "context", "elements": [{
        "type": "mrkdwn", "text": f"dedup_key `{alert.dedup_key}` | <{alert.link}|Open in Dagster>",
    }]})
    return blocks


def _slack_digest_blocks(digest: Digest, limit: int = 40) -> list[dict]:
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text",
                                                      "text": f"Daily digest: {digest.day}"}}]
    for a in digest.alerts[:limit]:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"*{a.severity}* {a.summary} <{a.link}|Dagster>"[:3000]}})
    if len(digest.alerts) > limit:
        blocks.append({"type": "context", "elements": [{
            "type": "mrkdwn", "text": f"and {len(digest.alerts) - limit} more in cost_anomalies"}]})
    return blocks


@dataclass(frozen=True)
class SlackChannel:
    """A Slack incoming webhook: Block Kit with a plain-text fallback for notifications."""

    webhook_url: str = field(repr=False)
    name: str = "slack"
    takes_digest: bool = True

    def body(self, event: Event, now: datetime) -> bytes:
        if isinstance(event, Digest):
            return _json({"text": event.summary, "blocks": _slack_digest_blocks(event)})
        return _json({"text": event.summary, "blocks": _slack_alert_blocks(event)})

    def send(self, event: Event, now: datetime, policy: RetryPolicy) -> HttpAnswer:
        return post(self.webhook_url, self.body(event, now), {}, policy=policy)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>"): the timestamp is signed
    too, so a receiver can refuse replays of an old body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver runs: constant-time comparison of the signature header."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class WebhookChannel:
    """Any endpoint taking JSON; the body is signed so the receiver can trust it."""

    url: str = field(repr=False)
    secret: str = field(repr=False)
    name: str = "webhook"
    takes_digest: bool = True

    def body(self, event: Event, now: datetime) -> bytes:
        common = {"sent_at": now.isoformat(), "dedup_key": event.dedup_key, "summary": event.summary}
        if isinstance(event, Digest):
            return _json({"type": "digest", **common, "day": event.day.isoformat(),
                          "alerts": [_alert_document(a) for a in event.alerts]})
        return _json({"type": "alert", **common, **_alert_document(event)})

    def send(self, event: Event, now: datetime, policy: RetryPolicy) -> HttpAnswer:
        body = self.body(event, now)
        timestamp = str(int(now.timestamp()))
        headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self.secret, timestamp, body)}
        return post(self.url, body, headers, policy=policy, secrets=(self.secret,))


def _alert_document(a: Alert) -> dict[str, Any]:
    return {
        "event_action": a.action, "dedup_key": a.dedup_key, "severity": a.severity,
        "summary": a.summary, "source": a.source, "link": a.link,
        "period": a.period.isoformat() if a.period else None, "details": a.details,
    }


Channel = PagerDutyChannel | SlackChannel | WebhookChannel


def channels_from_env(env: Mapping[str, str]) -> list[Channel]:
    """The channels configured in the environment (none is fine: nothing is sent)."""
    out: list[Channel] = []
    if env.get("INFERLEDGER_PAGERDUTY_ROUTING_KEY"):
        out.append(PagerDutyChannel(
            routing_key=env["INFERLEDGER_PAGERDUTY_ROUTING_KEY"],
            url=env.get("INFERLEDGER_PAGERDUTY_URL") or PAGERDUTY_EVENTS_URL,
        ))
    if env.get("INFERLEDGER_SLACK_WEBHOOK_URL"):
        out.append(SlackChannel(webhook_url=env["INFERLEDGER_SLACK_WEBHOOK_URL"]))
    if env.get("INFERLEDGER_WEBHOOK_URL"):
        if not env.get("INFERLEDGER_WEBHOOK_SECRET"):
            raise ConfigError(
                "INFERLEDGER_WEBHOOK_URL is set but INFERLEDGER_WEBHOOK_SECRET is not: the webhook"
                " body is signed with HMAC-SHA256; set a shared secret (e.g. `openssl rand -hex 32`)"
                " in both places, or unset INFERLEDGER_WEBHOOK_URL"
            )
        out.append(WebhookChannel(url=env["INFERLEDGER_WEBHOOK_URL"],
                                  secret=env["INFERLEDGER_WEBHOOK_SECRET"]))
    return out
