"""What an alert says, built from the warehouse: cost anomalies and broken reconciliation.

An alert is the *current state* of one incident, named by a stable `dedup_key`: the newest
row of that key decides whether it should be open (trigger) or closed (resolve). Delivery
(`dispatch.py`) compares that with what each channel was last told, so rerunning the same
rows sends nothing new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import polars as pl

Action = Literal["trigger", "resolve"]

# PagerDuty's severities, lowest first; other channels use the same words.
SEVERITIES = ("info", "warning", "error", "critical")
PAGING_SEVERITIES = frozenset({"error", "critical"})
_SEVERITY_WORDS = {
    "critical": "critical", "high": "error", "error": "error", "major": "error",
    "medium": "warning", "warning": "warning", "minor": "warning", "low": "info", "info": "info",
}
# The anomaly detector's incident states (assets/anomaly_detection.py).
OPEN_STATUSES = frozenset({"triggered", "escalated", "ongoing", "open"})
RESOLVED_STATUSES = frozenset({"resolved"})

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"


def asset_url(dagster_url: str, asset_key: str, partition: date | None = None) -> str:
    """The asset's page in the Dagster UI (and its partition, when there is one)."""
    url = f"{dagster_url.rstrip('/')}/assets/{quote(asset_key)}"
    return f"{url}?view=partitions&partition={partition.isoformat()}" if partition else url


@dataclass(frozen=True)
class Alert:
    """One incident's current state, ready for any channel."""

    dedup_key: str
    action: Action
    severity: str  # one of SEVERITIES
    summary: str
    source: str  # the asset that raised it
    link: str  # the asset in the Dagster UI
    period: datetime | None = None  # the day or hour the newest row is about (UTC)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def pages(self) -> bool:
        return self.severity in PAGING_SEVERITIES


@dataclass(frozen=True)
class Digest:
    """The day's alerts below paging severity, sent once to the chat channels."""

    day: date
    alerts: tuple[Alert, ...]

    @property
    def dedup_key(self) -> str:
        return f"digest:{self.day.isoformat()}"

    @property
    def summary(self) -> str:
        return f"inferledger daily digest for {self.day}: {len(self.alerts)} alert(s) below paging severity"


def _money(value: Any) -> str | None:
    """Money as an exact string (JSON has no decimal type); two decimals are for humans only."""
    if value is None:
        return None
    return str(value if isinstance(value, Decimal) else Decimal(str(value)))


def usd(value: Any) -> str:
    """Money for people: `$1,234.56`, exact rounding of the Decimal."""
    return "n/a" if value is None else f"${Decimal(str(value)):,.2f}"


def _root_causes(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return [value]
        return parsed if isinstance(parsed, list) else [parsed]
    return list(value)


def describe_causes(causes: list) -> str:
    """`customer=cust_globex ($1,234.00, 91%)` for each cause the detector named."""
    parts = []
    for c in causes:
        if isinstance(c, dict) and "dimension" in c:
            share = f", {float(c['share']):.0%}" if c.get("share") is not None else ""
            impact = f" ({usd(c.get('impact_usd'))}{share})" if c.get("impact_usd") is not None else ""
            parts.append(f"{c['dimension']}={c.get('key')}{impact}")
        else:
            parts.append(json.dumps(c, default=str) if isinstance(c, dict) else str(c))
    return "; ".join(parts) or "none named"


def _period_column(frame: pl.DataFrame) -> str:
    for name in ("period_start", "hour", "day", "usage_date"):
        if name in frame.columns:
            return name
    raise ValueError(
        "cost_anomalies has no period column (period_start, hour, day or usage_date);"
        f" its columns are {frame.columns}"
    )


def latest_per_key(frame: pl.DataFrame) -> pl.DataFrame:
    """The newest row of every dedup_key (a resolve wins over an alert of the same period).

    `_severity` is the incident's highest severity over its open rows: an incident that
    escalated keeps paging severity on a later, milder row.
    """
    if frame.is_empty():
        return frame
    period = _period_column(frame)
    closing = pl.col("status").str.to_lowercase().is_in(list(RESOLVED_STATUSES))
    rank = (
        pl.col("severity").str.to_lowercase()
        .replace_strict(_SEVERITY_WORDS, default="warning", return_dtype=pl.String)
        .replace_strict({s: i for i, s in enumerate(SEVERITIES)}, return_dtype=pl.Int32)
    )
    return (
        frame.with_columns(
            _period=pl.col(period).cast(pl.Datetime("us", "UTC")),
            _closing=closing,
            _severity=rank.filter(~closing).max().over("dedup_key"),
        )
        .sort("dedup_key", "_period", "_closing")
        .group_by("dedup_key", maintain_order=True)
        .last()
        .with_columns(
            pl.col("_severity").fill_null(0)
            .replace_strict(dict(enumerate(SEVERITIES)), return_dtype=pl.String)
        )
    )


def anomaly_alerts(anomalies: pl.DataFrame, dagster_url: str = DEFAULT_DAGSTER_URL) -> list[Alert]:
    """One alert per incident in `cost_anomalies`, from its newest row.

    Rows in a status that is neither open nor resolved (e.g. suppressed) raise nothing; the
    caller counts them.
    """
    alerts = []
    for row in latest_per_key(anomalies).iter_rows(named=True):
        status = str(row["status"]).lower()
        if status not in OPEN_STATUSES | RESOLVED_STATUSES:
            continue
        alerts.append(_anomaly_alert(row, status in RESOLVED_STATUSES, dagster_url))
    return alerts


def _anomaly_alert(row: dict, resolved: bool, dagster_url: str) -> Alert:
    period: datetime = row["_period"]
    what = f"{row.get('dimension')} {row.get('key')}"
    metric = row.get("metric") or "cost"
    pct = row.get("impact_pct")
    pct_text = f", {float(pct):+.0%}" if pct is not None else ""
    causes = _root_causes(row.get("root_causes"))
    when = period.date().isoformat() if row.get("grain", "day") == "day" else period.isoformat()
    if resolved:
        summary = f"Resolved: {metric} of {what} is back to normal ({when})"
    else:
        summary = (
            f"{metric.replace('_', ' ').capitalize()} anomaly on {what} ({when}): "
            f"{usd(row.get('actual'))} vs {usd(row.get('expected'))} expected "
            f"({usd(row.get('impact_usd'))} impact{pct_text}); root cause: {describe_causes(causes)}"
        )
    link = asset_url(dagster_url, "cost_anomalies", period.date())
    details = {
        "metric": metric,
        "dimension": row.get("dimension"),
        "key": row.get("key"),
        "period": period.isoformat(),
        "status": row["status"],
        "actual": _money(row.get("actual")),
        "expected": _money(row.get("expected")),
        "expected_range": [_money(row.get("lower")), _money(row.get("upper"))],
        "impact_usd": _money(row.get("impact_usd")),
        "impact_pct": pct,
        "score": row.get("score"),
        "rule": row.get("rule"),
        "root_causes": causes,
        "explained_by": row.get("explained_by"),
        "dagster_asset": link,
    }
    return Alert(
        dedup_key=row["dedup_key"],
        action="resolve" if resolved else "trigger",
        severity=row["_severity"],
        summary=summary[:1024],  # PagerDuty's limit on a summary
        source="cost_anomalies",
        link=link,
        period=period,
        details={k: v for k, v in details.items() if v is not None},
    )


def reconciliation_alerts(
    reconciliation: pl.DataFrame, dagster_url: str = DEFAULT_DAGSTER_URL
) -> list[Alert]:
    """One incident per provider x currency: open while its newest day breaks conservation."""
    if reconciliation.is_empty():
        return []
    newest = (
        reconciliation.sort("provider", "billing_currency", "usage_date")
        .group_by("provider", "billing_currency", maintain_order=True)
        .last()
    )
    alerts = []
    for row in newest.iter_rows(named=True):
        day: date = row["usage_date"]
        who = f"{row['provider']} {row['billing_currency']}"
        link = asset_url(dagster_url, "billing_reconciliation_daily", day)
        broken = not row["passed"]
        summary = (
            f"Reconciliation broken for {who} on {day}: billed in scope "
            f"{row['billed_in_scope']} but {row['residual']} is not allocated"
            if broken
            else f"Resolved: reconciliation of {who} balances again ({day})"
        )
        alerts.append(Alert(
            dedup_key=f"reconciliation:{row['provider']}:{row['billing_currency']}",
            action="trigger" if broken else "resolve",
            severity="error",
            summary=summary,
            source="billing_reconciliation_daily",
            link=link,
            period=datetime(day.year, day.month, day.day, tzinfo=UTC),
            details={
                "usage_date": day.isoformat(),
                "billed_in_scope": _money(row["billed_in_scope"]),
                "allocated": _money(row.get("allocated")),
                "idle": _money(row.get("idle")),
                "shared": _money(row.get("shared")),
                "unattributed": _money(row.get("unattributed")),
                "residual": _money(row["residual"]),
                "dagster_asset": link,
            },
        ))
    return alerts


def run_alerts(
    runs: list[tuple[str, str, str, datetime]], dagster_url: str = DEFAULT_DAGSTER_URL
) -> list[Alert]:
    """One incident per job: open while its newest finished run failed.

    `runs` holds (job_name, status, run_id, finished_at) with status SUCCESS or FAILURE.
    """
    newest: dict[str, tuple[str, str, datetime]] = {}
    for job, status, run_id, finished in sorted(runs, key=lambda r: r[3]):
        newest[job] = (status, run_id, finished)
    alerts = []
    for job, (status, run_id, finished) in sorted(newest.items()):
        link = f"{dagster_url.rstrip('/')}/runs/{run_id}"
        failed = status == "FAILURE"
        alerts.append(Alert(
            dedup_key=f"run_failed:{job}",
            action="trigger" if failed else "resolve",
            severity="error",
            summary=(f"Run of {job} failed ({run_id[:8]}): the day's data or marts are stale"
                     if failed else f"Resolved: {job} succeeds again"),
            source=job,
            link=link,
            period=finished,
            details={"job": job, "run_id": run_id, "finished_at": finished.isoformat(), "dagster_run": link},
        ))
    return alerts


def digests(alerts: list[Alert], now: datetime) -> list[Digest]:
    """Open alerts below paging severity, one digest per day that has ended."""
    by_day: dict[date, list[Alert]] = {}
    for a in alerts:
        if a.action == "trigger" and not a.pages and a.period is not None:
            by_day.setdefault(a.period.date(), []).append(a)
    return [
        Digest(day, tuple(sorted(items, key=lambda a: a.dedup_key)))
        for day, items in sorted(by_day.items())
        if now >= datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    ]
