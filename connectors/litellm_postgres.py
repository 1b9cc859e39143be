"""LiteLLM spend logs read straight from the proxy's PostgreSQL table `"LiteLLM_SpendLogs"`.

For proxies that keep their spend logs in the database rather than exporting them: the
rows of a `"startTime"` window [start, end) are streamed through a server-side cursor in
batches, so a day of millions of requests never sits in memory, and each batch goes through
the JSONL reader's validation and mapping (connectors.litellm.SpendLogReader). Incremental
loads ask for the next window; the table's primary key is request_id, and the reader's
duplicate check still guards overlapping windows read in one run.

Only the needed columns are selected: never `messages`, `response` or
`proxy_server_request` (bodies), and of `metadata` only the keys the mapping uses (not the
virtual key). Columns that older LiteLLM versions lack (`status`, `model_id`, ...) are read
as null. `spend` is double precision in the table; its text form (`1.1925e-05`) goes to
Decimal without passing through a Python float. Prisma stores DateTime as `timestamp(3)`
without zone, in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from connectors.litellm import (
    METADATA,
    PARSED_SCHEMA,
    SPEND_LOG_FIELDS,
    SpendLogReader,
    decode_metadata,
)
from connectors.result import ParseResult, SourceFormatError
from connectors.schemas import GATEWAY_REQUESTS

TABLE = "LiteLLM_SpendLogs"
REQUIRED = ["request_id", "startTime", "prompt_tokens", "completion_tokens"]
BATCH_ROWS = 50_000
_TS_TEXT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def read_spend_logs(
    dsn: str,
    start: datetime,
    end: datetime,
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ParseResult:
    """Rows with start <= "startTime" < end, normalized to gateway_requests."""
    parts = list(iter_spend_logs(dsn, start, end, batch_rows=batch_rows,
                                 self_hosted_deployments=self_hosted_deployments,
                                 customer_salt=customer_salt))
    result = ParseResult.concat(parts, GATEWAY_REQUESTS)
    result.files = [source_name(dsn, start, end)]
    return result


def iter_spend_logs(
    dsn: str,
    start: datetime,
    end: datetime,
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
    batch_rows: int = BATCH_ROWS,
    reader: SpendLogReader | None = None,
) -> Iterator[ParseResult]:
    """One ParseResult per batch of `batch_rows`, in ("startTime", request_id) order."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware (UTC)")
    reader = reader or SpendLogReader(self_hosted_deployments, customer_salt)
    name = source_name(dsn, start, end)
    with psycopg.connect(dsn) as conn:
        query = _select(_columns(conn, name))
        # A named cursor lives on the server: rows arrive batch by batch, not all at once.
        with conn.cursor(name="inferledger_spend_logs") as cur:
            cur.itersize = batch_rows
            cur.execute(query, {"start": _naive_utc(start), "end": _naive_utc(end)})
            offset = 1
            while batch := cur.fetchmany(batch_rows):
                df = pl.DataFrame(batch, schema=[(f, pl.String) for f in SPEND_LOG_FIELDS],
                                  orient="row")
                df = df.with_columns(decode_metadata(df["metadata"]).cast(METADATA))
                df = df.with_row_index("_row_number", offset=offset).select(list(PARSED_SCHEMA))
                offset += df.height
                yield reader.read_frame(df, name)


def source_name(dsn: str, start: datetime, end: datetime) -> str:
    """Where the rows came from, for source_file and messages: no password, no user."""
    info: dict[str, Any] = conninfo_to_dict(dsn)
    host, port, db = info.get("host", "localhost"), info.get("port", "5432"), info.get("dbname")
    return (f"postgresql://{host}:{port}/{db or ''}/{TABLE}"
            f"?startTime=[{start.isoformat()},{end.isoformat()})")


def _columns(conn: psycopg.Connection, name: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
        (TABLE,)).fetchall()
    present = {r[0] for r in rows}
    missing = [c for c in REQUIRED if c not in present]
    if missing:
        raise SourceFormatError(
            f"{name}: table \"{TABLE}\" lacks column(s) {missing}"
            + (" (the table does not exist)" if not present else "")
            + "; point the DSN at the LiteLLM proxy's database (LiteLLM 1.40 or later)")
    return present


def _select(present: set[str]) -> sql.Composed:
    """SELECT of SPEND_LOG_FIELDS as text, in that order; absent columns as NULL."""
    keys = [k for k in METADATA.to_schema()]
    exprs = []
    for field in SPEND_LOG_FIELDS:
        col = sql.Identifier(field)
        if field not in present:
            exprs.append(sql.SQL("NULL::text"))
        elif field in ("startTime", "endTime"):
            exprs.append(sql.SQL("to_char({}, {})").format(col, sql.Literal(_TS_TEXT)))
        elif field == "metadata":
            # Only the keys the mapping reads leave the database.
            pairs = sql.SQL(", ").join(
                sql.SQL("{}, {} -> {}").format(sql.Literal(k), col, sql.Literal(k)) for k in keys)
            exprs.append(sql.SQL("jsonb_strip_nulls(jsonb_build_object({}))::text")
                         .format(pairs))
        else:
            exprs.append(sql.SQL("{}::text").format(col))
    return sql.SQL(
        "SELECT {} FROM {} WHERE {start} >= %(start)s AND {start} < %(end)s "
        "ORDER BY {start}, {rid}"
    ).format(sql.SQL(", ").join(exprs), sql.Identifier(TABLE),
             start=sql.Identifier("startTime"), rid=sql.Identifier("request_id"))


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)
