"""Decide what each channel must be told, send it, and log it: pages once, and only when it should.

Per channel and dedup_key, the delivery log holds what the channel was last told:

- an open alert at paging severity is sent as a trigger unless the channel already has it
  open; a trigger within `cooldown` of the previous trigger of the same key waits (an
  incident flapping open and shut pages once per cooldown, not once per flap);
- a resolve is sent only to a channel that has the incident open;
- an alert older than `max_age` is not paged (a backfill of last quarter must not wake
  anyone), but its resolve still goes out;
- alerts below paging severity go to the chat channels once a day, as a digest of the
  day they are about, once that day has ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb

from pipelines.alerts import log
from pipelines.alerts.channels import Channel, Event
from pipelines.alerts.events import Alert, digests
from pipelines.alerts.http import RetryPolicy

DEFAULT_COOLDOWN = timedelta(hours=1)
DEFAULT_MAX_AGE = timedelta(days=3)
DEFAULT_POLICY = RetryPolicy()


@dataclass
class DeliveryReport:
    sent: list[log.Delivery] = field(default_factory=list)
    failed: list[log.Delivery] = field(default_factory=list)
    held: int = 0  # triggers waiting for their cooldown
    stale: int = 0  # triggers too old to page
    waiting_digests: int = 0  # days whose digest is not due yet

    @property
    def pending(self) -> int:
        """Work a later run must pick up: held triggers, digests not due, failed sends."""
        return self.held + self.waiting_digests + len(self.failed)

    def lines(self) -> list[str]:
        """What happened, for run logs: channel names and dedup keys, never URLs or keys."""
        out = [
            f"{d.channel} {d.action} {d.dedup_key}: {d.outcome}"
            f" (HTTP {d.http_status if d.http_status is not None else 'none'}, {d.attempts} attempt(s))"
            for d in [*self.sent, *self.failed]
        ]
        if self.held:
            out.append(f"{self.held} trigger(s) held by the cooldown")
        if self.stale:
            out.append(f"{self.stale} trigger(s) older than the paging window, not paged")
        return out


def _due(alert: Alert, state: log.ChannelState | None, now: datetime, report: DeliveryReport,
         cooldown: timedelta, max_age: timedelta) -> bool:
    if alert.action == "resolve":
        return state is not None and state.last_action == "trigger"
    if not alert.pages or (state is not None and state.last_action == "trigger"):
        return False
    if alert.period is not None and now - alert.period > max_age:
        report.stale += 1
        return False
    if state is not None and state.last_trigger_at is not None and now - state.last_trigger_at < cooldown:
        report.held += 1
        return False
    return True


def deliver(
    con: duckdb.DuckDBPyConnection,
    alerts: list[Alert],
    channels: list[Channel],
    *,
    now: datetime | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    cooldown: timedelta = DEFAULT_COOLDOWN,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> DeliveryReport:
    """Send what is due on every channel; each send is logged before the next one starts."""
    now = now or datetime.now(UTC)
    report = DeliveryReport()
    states = log.channel_states(con)
    done_digests = log.sent_digests(con)
    recent = [d for d in digests(alerts, now) if now - _start(d.day) <= max_age + timedelta(days=1)]
    report.waiting_digests = len({
        a.period.date() for a in alerts
        if a.action == "trigger" and not a.pages and a.period is not None
        and now < _start(a.period.date()) + timedelta(days=1)
    })
    for channel in channels:
        for alert in alerts:
            if channel.name == "pagerduty" and not alert.pages and alert.action == "trigger":
                continue
            if _due(alert, states.get((channel.name, alert.dedup_key)), now, report, cooldown, max_age):
                _send(con, channel, alert, alert.action, now, policy, report)
        if channel.takes_digest:
            for digest in recent:
                if (channel.name, digest.dedup_key) not in done_digests:
                    _send(con, channel, digest, "digest", now, policy, report)
    return report


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _send(con: duckdb.DuckDBPyConnection, channel: Channel, event: Event, action: str,
          now: datetime, policy: RetryPolicy, report: DeliveryReport) -> None:
    answer = channel.send(event, now, policy)
    delivery = log.Delivery(
        delivered_at=now,  # the evaluation time, so the cooldown compares like with like
        channel=channel.name,
        dedup_key=event.dedup_key,
        action=action,
        severity=event.severity if isinstance(event, Alert) else None,
        summary=event.summary,
        outcome="sent" if answer.ok else "failed",
        http_status=answer.status,
        attempts=answer.attempts,
        answer=answer.text,
    )
    log.record(con, delivery)
    (report.sent if answer.ok else report.failed).append(delivery)

