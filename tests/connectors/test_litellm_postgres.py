"""LiteLLM spend logs read from a real PostgreSQL server holding `"LiteLLM_SpendLogs"`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import psycopg
import pytest

from connectors.litellm import read_litellm_jsonl
from connectors.litellm_postgres import read_spend_logs, source_name
from connectors.result import SourceFormatError
from tests.support.postgres import postgres_server

SECRET_PROMPT = "TOP-SECRET-PROMPT-pg-3a9d"
SECRET_KEY = "sk-live-PLANTED-pg-55e1"
DAY = datetime(2026, 10, 1, tzinfo=UTC)

# LiteLLM's Prisma model, as `prisma migrate` creates it (column names and types).
CREATE = """
CREATE TABLE "LiteLLM_SpendLogs" (
    "request_id" TEXT NOT NULL PRIMARY KEY, "call_type" TEXT NOT NULL,
    "api_key" TEXT NOT NULL DEFAULT '', "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
    "total_tokens" INTEGER NOT NULL DEFAULT 0, "prompt_tokens" INTEGER NOT NULL DEFAULT 0,
    "completion_tokens" INTEGER NOT NULL DEFAULT 0, "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL, "completionStartTime" TIMESTAMP(3),
    "model" TEXT NOT NULL DEFAULT '', "model_id" TEXT DEFAULT '', "model_group" TEXT DEFAULT '',
    "custom_llm_provider" TEXT DEFAULT '', "api_base" TEXT DEFAULT '', "user" TEXT DEFAULT '',
    "metadata" JSONB DEFAULT '{}', "cache_hit" TEXT DEFAULT '', "cache_key" TEXT DEFAULT '',
    "request_tags" JSONB DEFAULT '[]', "team_id" TEXT, "end_user" TEXT,
    "requester_ip_address" TEXT, "messages" JSONB DEFAULT '{}', "response" JSONB DEFAULT '{}',
    "session_id" TEXT, "status" TEXT, "proxy_server_request" JSONB DEFAULT '{}'
);
CREATE INDEX ON "LiteLLM_SpendLogs" ("startTime");
"""
COLUMNS = ["request_id", "call_type", "api_key", "spend", "total_tokens", "prompt_tokens",
           "completion_tokens", "startTime", "endTime", "model", "model_group",
           "custom_llm_provider", "api_base", "user", "end_user", "team_id", "metadata",
           "cache_hit", "request_tags", "status", "messages", "response"]


def _row(i: int, start: datetime, **over: object) -> dict:
    row = {
        "request_id": f"chatcmpl-{i:04d}", "call_type": "acompletion", "api_key": SECRET_KEY,
        "spend": 2.5e-05 * (i % 7), "total_tokens": 1000 + i, "prompt_tokens": 900 + i,
        "completion_tokens": 100, "startTime": start, "endTime": start + timedelta(seconds=2),
        "model": "gpt-4o-2024-08-06", "model_group": "gpt-4o", "custom_llm_provider": "openai",
        "api_base": "https://api.openai.com/v1", "user": "", "end_user": f"cust_{i % 3}",
        "team_id": "team-platform", "cache_hit": "False",
        "request_tags": ["feature:chat-assistant"],
        "metadata": {"user_api_key": "88dc28d0f030c55ed4ab77ed8faf0981",
                     "user_api_key_team_id": "team-platform",
                     "additional_usage_values": {"prompt_tokens_details": {"cached_tokens": 512}}},
        "status": "success",
        "messages": [{"role": "user", "content": SECRET_PROMPT}],
        "response": {"choices": [{"message": {"content": SECRET_PROMPT}}]},
    }
    row.update(over)
    return row


ROWS = [_row(i, DAY + timedelta(minutes=7 * i)) for i in range(200)] + [
    _row(900, DAY - timedelta(seconds=1)),  # the day before
    _row(901, DAY + timedelta(days=1)),  # the next day: the window's end is exclusive
    _row(902, DAY + timedelta(hours=5), prompt_tokens=10),  # cached above prompt
]


@pytest.fixture(scope="module")
def dsn() -> str:
    with postgres_server() as url:
        with psycopg.connect(url) as conn:
            conn.execute(CREATE)
            with conn.cursor() as cur:
                cur.executemany(
                    f'INSERT INTO "LiteLLM_SpendLogs" ({", ".join(chr(34) + c + chr(34) for c in COLUMNS)}) '
                    f'VALUES ({", ".join(["%s"] * len(COLUMNS))})',
                    [[json.dumps(r[c]) if c in ("metadata", "request_tags", "messages", "response")
                      else r[c].replace(tzinfo=None) if isinstance(r[c], datetime) else r[c]
                      for c in COLUMNS] for r in ROWS])
        yield url


def test_a_day_window_in_batches(dsn: str) -> None:
    result = read_spend_logs(dsn, DAY, DAY + timedelta(days=1), batch_rows=64)
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (201, 200, 1)
    assert result.quarantine["reason"][0] == (
        "cached tokens (512 read + 0 written) exceed prompt_tokens (10)")
    rows = result.rows.sort("request_id")
    assert rows["ts_start"].min() == DAY
    assert rows["input_uncached_tokens"].sum() == sum(900 + i - 512 for i in range(200))
    assert rows["cache_read_tokens"].sum() == 512 * 200
    # spend is double precision; its text goes to Decimal without a float in between.
    assert rows.filter(pl.col("request_id") == "chatcmpl-0006")["gateway_reported_cost"][0] == (
        Decimal("0.00015"))
    assert set(rows["feature"]) == {"chat-assistant"}
    assert set(rows["customer_id"]) == {"cust_0", "cust_1", "cust_2"}
    assert rows["source_file"][0] == source_name(dsn, DAY, DAY + timedelta(days=1))
    assert "postgres@" not in rows["source_file"][0]


def test_same_numbers_as_the_jsonl_export(dsn: str) -> None:
    from_db = read_spend_logs(dsn, DAY, DAY + timedelta(days=1)).rows
    jsonl = "\n".join(json.dumps({k: (v.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                                      if isinstance(v, datetime) else v) for k, v in r.items()})
                      for r in ROWS[:200])
    from_file = read_litellm_jsonl(jsonl.encode(), source_file="x.jsonl").rows
    columns = [c for c in from_db.columns if c != "source_file"]
    assert from_db.sort("request_id").select(columns).equals(
        from_file.sort("request_id").select(columns))


def test_bodies_and_keys_stay_in_the_database(dsn: str) -> None:
    result = read_spend_logs(dsn, DAY - timedelta(days=1), DAY + timedelta(days=2))
    assert result.rows_read == len(ROWS)
    for frame in (result.rows, result.quarantine):
        text = frame.select(pl.all().cast(pl.String)).write_csv()
        assert SECRET_PROMPT not in text and SECRET_KEY not in text


def test_missing_table_is_a_whole_source_error(dsn: str) -> None:
    other = dsn.rsplit("/", 1)[0] + "/template1"
    with pytest.raises(SourceFormatError, match=r"LiteLLM_SpendLogs.*does not exist"):
        read_spend_logs(other, DAY, DAY + timedelta(days=1))
