"""The `alert_delivery` asset: read what is wrong, tell each channel what it does not know yet.

It reads `cost_anomalies` and `billing_reconciliation_daily` from the warehouse and the
finished runs from the Dagster instance, and writes the delivery log back into the
warehouse, so it is in the one-writer pool. It runs at the end of every daily or
event-driven run (it is in `daily_refresh`'s selection) and on its own when the alert
sensor or the run-failure sensor asks.

Channels are configured from the environment only (see `channels.py`); what this asset
logs and records as metadata is counts, channel names and dedup keys, never a key or URL.
"""


import os
from contextlib import closing
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl

from assets.resources import StorageResource
from assets.warehouse import WAREHOUSE_POOL
from pipelines.alerts import log
from pipelines.alerts.channels import channels_from_env
from pipelines.alerts.dispatch import deliver
from pipelines.alerts.events import (
    DEFAULT_DAGSTER_URL,
    Alert,
    anomaly_alerts,
    reconciliation_alerts,
    run_alerts,
)
from pipelines.alerts.http import RetryPolicy

ALERTS_GROUP = "alerts"
ANOMALIES = dg.AssetKey("cost_anomalies")
RECONCILIATION = dg.AssetKey("billing_reconciliation_daily")
RUN_LOOKBACK = timedelta(days=2)


class AlertDeliveryConfig(dg.Config):
    """Tuning of one delivery run (no secrets here: run config is shown in the UI)."""

    cooldown_minutes: int = 60
    max_age_hours: int = 72
    retry_attempts: int = 5
    retry_base_delay_s: float = 1.0
    as_of: str | None = None  # evaluate as at this UTC time (replaying a past day); default: now


def _read(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame:
    return con.sql(f"select * from {table}").pl() if log.table_exists(con, table) else pl.DataFrame()


def finished_runs(instance: dg.DagsterInstance, since: datetime) -> list[tuple[str, str, str, datetime]]:
    """(job, status, run_id, finished_at) of the runs that ended since `since`."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
                              updated_after=since),
        limit=500,
    )
    return [
        (r.dagster_run.job_name, r.dagster_run.status.value, r.dagster_run.run_id,
         datetime.fromtimestamp(r.end_time, UTC) if r.end_time else r.update_timestamp)
        for r in records
    ]


def collect_alerts(
    con: duckdb.DuckDBPyConnection, runs: list[tuple[str, str, str, datetime]], dagster_url: str
) -> tuple[list[Alert], int]:
    """Every incident's current state, and how many anomaly rows are in no known status."""
    anomalies = _read(con, "cost_anomalies")
    alerts = anomaly_alerts(anomalies, dagster_url)
    unknown = 0 if anomalies.is_empty() else anomalies.height - anomalies.filter(
        pl.col("status").str.to_lowercase().is_in(["triggered", "ongoing", "open", "resolved"])
    ).height
    alerts += reconciliation_alerts(_read(con, "billing_reconciliation_daily"), dagster_url)
    alerts += run_alerts(runs, dagster_url)
    return alerts, unknown


@dg.asset(
    name="alert_delivery",
    group_name=ALERTS_GROUP,
    pool=WAREHOUSE_POOL,
    # Not partitioned, but in daily_refresh's selection: without this the job's backfills
    # fall back to one run per day instead of one run per range.
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[ANOMALIES, RECONCILIATION],
    kinds={"duckdb", "pagerduty", "slack"},
    retry_policy=dg.RetryPolicy(max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL),
    description="Pages on-call (PagerDuty), posts to Slack and a signed webhook for new cost "
    "anomalies, broken reconciliation and failed runs; once per incident, resolved when it "
    "ends; a daily digest for what does not page. Logs every delivery in the warehouse.",
)
def alert_delivery(
    context: dg.AssetExecutionContext, config: AlertDeliveryConfig, storage: StorageResource
) -> dg.MaterializeResult:
    now = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    channels = channels_from_env(os.environ)
    if not channels:
        context.log.warning("No alert channel configured (INFERLEDGER_PAGERDUTY_ROUTING_KEY, "
                            "INFERLEDGER_SLACK_WEBHOOK_URL, INFERLEDGER_WEBHOOK_URL): nothing sent")
    runs = [r for r in finished_runs(context.instance, now - RUN_LOOKBACK) if r[2] != context.run.run_id]
    dagster_url = os.environ.get("INFERLEDGER_DAGSTER_URL") or DEFAULT_DAGSTER_URL
    with closing(log.connect(storage.warehouse)) as con:
        alerts, unknown = collect_alerts(con, runs, dagster_url)
        report = deliver(
            con, alerts, channels, now=now,
            policy=RetryPolicy(attempts=config.retry_attempts, base_delay_s=config.retry_base_delay_s),
            cooldown=timedelta(minutes=config.cooldown_minutes),
            max_age=timedelta(hours=config.max_age_hours),
        )
    for line in report.lines():
        context.log.info(line)
    if unknown:
        context.log.warning(f"{unknown} cost_anomalies rows have a status that is neither open nor resolved")
    metadata = {
        "channels": dg.MetadataValue.text(", ".join(c.name for c in channels) or "none"),
        "open_incidents": dg.MetadataValue.int(sum(a.action == "trigger" for a in alerts)),
        "sent": dg.MetadataValue.int(len(report.sent)),
        "failed": dg.MetadataValue.int(len(report.failed)),
        "held_by_cooldown": dg.MetadataValue.int(report.held),
        "too_old_to_page": dg.MetadataValue.int(report.stale),
        "pending": dg.MetadataValue.int(report.pending),
        "unknown_status_rows": dg.MetadataValue.int(unknown),
    }
    if report.failed:
        # Failing the step makes Dagster retry it; what was sent is logged and is not resent.
        raise dg.Failure(
            description=f"{len(report.failed)} alert deliveries failed: "
            + "; ".join(f"{d.channel} {d.action} {d.dedup_key} (HTTP {d.http_status})" for d in report.failed),
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


alert_delivery_job = dg.define_asset_job(
    "alert_delivery_job",
    selection=dg.AssetSelection.assets(alert_delivery),
    description="Deliver alerts now: new anomalies, broken reconciliation, failed runs, digests.",
)
