"""The delivery log: a table in the warehouse of every message sent (or that failed).

It is what makes delivery idempotent: a channel is told about a dedup_key only when the
log says it was last told something else, so a restart, a rerun or a second sensor tick
never pages twice. The warehouse is a DuckDB file with one writer at a time: the asset
that writes this table is in the `duckdb_warehouse` pool, and `connect` waits for the
file lock the way dbt-duckdb's `retries` do, for writers outside Dagster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import duckdb

TABLE = "alert_deliveries"

_DDL = f"""
create table if not exists {TABLE} (
    delivered_at timestamptz not null,
    channel varchar not null,       -- pagerduty, slack, webhook
    dedup_key varchar not null,
    action varchar not null,        -- trigger, resolve, digest
    severity varchar,
    summary varchar,
    outcome varchar not null,       -- sent, failed
    http_status integer,
    attempts integer not null,
    answer varchar                  -- what the endpoint answered (secrets redacted)
)
"""


@dataclass(frozen=True)
class Delivery:
    delivered_at: datetime
    channel: str
    dedup_key: str
    action: str
    severity: str | None
    summary: str
    outcome: str
    http_status: int | None
    attempts: int
    answer: str


@dataclass(frozen=True)
class ChannelState:
    """What one channel was last told about one dedup_key."""

    last_action: str  # trigger or resolve
    last_trigger_at: datetime | None


def connect(path: str, *, attempts: int = 8, first_wait_s: float = 0.5) -> duckdb.DuckDBPyConnection:
    """Open the warehouse for writing, waiting (with backoff) while another process holds it."""
    for attempt in range(attempts):
        try:
            con = duckdb.connect(path)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(first_wait_s * 2**attempt)
    con.execute("set TimeZone = 'UTC'")
    con.execute(_DDL)
    return con


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_name = ?", [name]
    ).fetchall()
    return found[0][0] > 0


def channel_states(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], ChannelState]:
    """(channel, dedup_key) -> the last trigger/resolve that channel accepted."""
    rows = con.execute(f"""
        select channel, dedup_key,
               arg_max(action, delivered_at) as last_action,
               max(delivered_at) filter (where action = 'trigger') as last_trigger_at
        from {TABLE}
        where outcome = 'sent' and action in ('trigger', 'resolve')
        group by channel, dedup_key
    """).fetchall()
    return {(c, k): ChannelState(a, t) for c, k, a, t in rows}


def sent_digests(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(channel, digest dedup_key) of every digest already delivered."""
    rows = con.execute(
        f"select distinct channel, dedup_key from {TABLE} where outcome = 'sent' and action = 'digest'"
    ).fetchall()
    return {(c, k) for c, k in rows}


def record(con: duckdb.DuckDBPyConnection, delivery: Delivery) -> None:
    """Write one delivery at once, so a crash after it never sends it again."""
    con.execute(
        f"insert into {TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [delivery.delivered_at, delivery.channel, delivery.dedup_key, delivery.action,
         delivery.severity, delivery.summary, delivery.outcome, delivery.http_status,
         delivery.attempts, delivery.answer],
    )
