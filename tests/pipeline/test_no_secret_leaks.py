"""Issue 4: a planted prompt and API key appear nowhere: lake, warehouse, exports, logs.

Planted LiteLLM rows carry a unique prompt in `messages`/`response` and a unique key in
`api_key` (and in the prompt and request headers). The CLI's `run` builds a two-day world
with a Dagster home and dbt target in tmp; then every file it wrote is searched as bytes,
Parquet decoded with polars, DuckDB through every text column, Dagster's sqlite dumped.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from pipelines import cli, runner
from pipelines.demo.generate import generate

START = date(2026, 10, 1)
END = date(2026, 10, 2)
SECRET_PROMPT = "TOP-SECRET-PROMPT-leaks-5e0b97"
SECRET_KEY = "sk-PLANTED-leaks-3c9d1f7a2b64"
# Searched for as well as the whole key: a key whose "sk-" prefix was cut off still leaks.
KEY_BODY = SECRET_KEY.removeprefix("sk-")
NEEDLES = (SECRET_PROMPT, SECRET_KEY, KEY_BODY)
PLANTED_FILE = "gateway_logs/litellm/2026/10/01/planted.jsonl"
GOOD_IDS = ["req-planted-1", "req-planted-2", "req-planted-3"]
REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def _planted_lines(template: dict) -> list[str]:
    """Three valid rows, a duplicate, a negative-token row and a malformed line, all secret."""
    def row(request_id: str, minute: int, **over: object) -> str:
        t = f"2026-10-01T12:{minute:02d}:00.000Z"
        r = {**template, "request_id": request_id, "session_id": request_id, "api_key": SECRET_KEY,
             "startTime": t, "endTime": t, "completionStartTime": t,
             "messages": [{"role": "user", "content": f"{SECRET_PROMPT} my key is {SECRET_KEY}"}],
             "response": {"choices": [{"message": {"content": SECRET_PROMPT}}]},
             "proxy_server_request": {"headers": {"authorization": f"Bearer {SECRET_KEY}"},
                                      "body": {"messages": [{"content": SECRET_PROMPT}]}}}
        r.update(over)
        return json.dumps(r)

    return [
        row(GOOD_IDS[0], 0),
        # Some exports hold the bodies as JSON text rather than objects.
        row(GOOD_IDS[1], 1, messages=json.dumps([{"content": SECRET_PROMPT}]),
            response=json.dumps({"content": SECRET_PROMPT})),
        row(GOOD_IDS[2], 2),
        row(GOOD_IDS[0], 3),  # duplicate: quarantined
        row("req-planted-negative", 4, prompt_tokens=-5),  # invalid: quarantined
        '{"request_id": "req-planted-broken", "api_key": "' + SECRET_KEY
        + '", "messages": [{"content": "' + SECRET_PROMPT + '"}], ',  # malformed: quarantined
    ]


@pytest.fixture()
def landing(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    generate(root, seed=5, start=START, days=2, requests_per_day=150, gpus=9)
    day_file = root / "gateway_logs/litellm/2026/10/01/spend_logs-0.jsonl.gz"
    template = json.loads(gzip.decompress(day_file.read_bytes()).splitlines()[0])
    (root / PLANTED_FILE).write_text("\n".join(_planted_lines(template)) + "\n")
    return root


def _hits(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        return [n for n in NEEDLES if n.encode() in text]
    return [n for n in NEEDLES if n in text]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _scan_raw(root: Path) -> list[str]:
    return [f"{p} (bytes): {h}" for p in _files(root) if (h := _hits(p.read_bytes()))]


def _scan_parquet(root: Path) -> tuple[list[str], int]:
    leaks, n = [], 0
    for p in sorted(root.rglob("*.parquet")):
        df = pl.read_parquet(p)
        n += 1
        for name, dtype in df.schema.items():
            if dtype.is_nested():
                text: str | bytes = df.select(name).write_ndjson()
            elif dtype == pl.Binary:
                text = b"\n".join(df[name].drop_nulls().to_list())
            elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
                text = "\n".join(df[name].cast(pl.String).drop_nulls().to_list())
            else:
                continue
            if h := _hits(text):
                leaks.append(f"{p} column {name}: {h}")
    return leaks, n


def _scan_duckdb(path: Path) -> tuple[list[str], int]:
    """Every text-bearing column of every table and view (DuckDB compresses strings)."""
    leaks, n = [], 0
    with duckdb.connect(str(path), read_only=True) as con:
        columns = con.execute(
            "select table_catalog, table_schema, table_name, column_name, data_type "
            "from information_schema.columns "
            "where table_schema not in ('information_schema', 'pg_catalog') "
            "and (data_type like '%VARCHAR%' or data_type like 'STRUCT%' or data_type like 'MAP%' "
            "or data_type = 'JSON')").fetchall()
        for catalog, schema, table, column, _ in columns:
            n += 1
            rel = f'"{catalog}"."{schema}"."{table}"'
            for needle in NEEDLES:
                found = con.execute(
                    f'select count(*) from {rel} where contains(cast("{column}" as varchar), ?)',
                    [needle]).fetchall()[0][0]
                if found:
                    leaks.append(f"{path} {schema}.{table}.{column}: {found} rows hold {needle!r}")
    return leaks, n


def _scan_sqlite(root: Path) -> list[str]:
    """Dagster's sqlite storages as SQL text (blobs show as hex: the byte scan covers them)."""
    leaks = []
    for p in sorted(root.rglob("*.db")):
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            if h := _hits("\n".join(con.iterdump())):
                leaks.append(f"{p} (sqlite dump): {h}")
        finally:
            con.close()
    return leaks


def test_planted_prompt_and_key_appear_nowhere(
    landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "out"
    warehouse, lake = out / "warehouse.duckdb", out / "lake"
    dagster_home, dbt_target = tmp_path / "dagster_home", tmp_path / "dbt_target"
    dagster_home.mkdir()
    shutil.copy(REPO_DAGSTER_YAML, dagster_home / "dagster.yaml")  # as `make dev` does
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("DBT_TARGET_PATH", str(dbt_target))  # dbt's logs go beside its target
    # The warehouse asset sets these for dbt; restore them afterwards.
    monkeypatch.setenv("INFERLEDGER_LAKE", str(lake))
    monkeypatch.setenv("INFERLEDGER_WAREHOUSE", str(warehouse))
    instance = dg.DagsterInstance.get()
    # The CLI runs on an ephemeral instance; this one persists its event logs in tmp.
    monkeypatch.setattr(runner, "run_range", functools.partial(runner.run_range, instance=instance))

    result = CliRunner().invoke(cli.main, [
        "run", "--landing", str(landing), "--warehouse", str(warehouse), "--lake", str(lake),
        "--start", START.isoformat(), "--end", END.isoformat()])
    assert result.exit_code == 0, result.output + repr(result.exception)
    captured = capfd.readouterr()

    # The planted rows did reach the lake (a partition may hold several files), the key as
    # its sha256 only.
    rows = pl.read_parquet(lake / "gateway_requests/date=2026-10-01/*.parquet").filter(
        pl.col("source_file").str.ends_with("planted.jsonl"))
    assert sorted(rows["request_id"]) == GOOD_IDS
    assert set(rows["api_key_hash"]) == {hashlib.sha256(SECRET_KEY.encode()).hexdigest()}
    quarantine = lake / "_quarantine/gateway_requests/date=2026-10-01/*.parquet"
    reasons = dict(pl.read_parquet(quarantine).filter(
        pl.col("source_file").str.ends_with("planted.jsonl")).select("row_number", "reason").rows())
    assert sorted(reasons) == [4, 5, 6]
    assert reasons[4].startswith("duplicate request_id 'req-planted-1'")
    assert reasons[5] == "negative prompt_tokens (-5)"
    assert reasons[6].startswith("line 6: malformed JSON")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from stg_lake__gateway_requests "
                           "where request_id like 'req-planted-%'").fetchall() == [(3,)]
    # The places searched below were written by this run.
    assert list(dbt_target.rglob("run_results.json")) and list(dbt_target.rglob("dbt.log"))
    # One ingestion chunk, its lake checks (GX: their logs are searched too), one warehouse run.
    assert len(instance.get_run_records()) == 3
    assert list(dagster_home.rglob("compute_logs/*.err")) and (out / "warehouse.run.log").exists()
    assert (out / "marts.duckdb").exists() and list((out / "exports").rglob("*.parquet"))

    leaks: list[str] = []
    leaks += _scan_raw(out)  # lake, warehouse, marts snapshot, exports, run.log
    parquet_leaks, n_parquet = _scan_parquet(out)
    leaks += parquet_leaks
    n_columns = 0
    for db in sorted(out.rglob("*.duckdb")):
        db_leaks, n = _scan_duckdb(db)
        leaks += db_leaks
        n_columns += n
    leaks += _scan_raw(dbt_target) + _scan_raw(dagster_home) + _scan_sqlite(dagster_home)
    for name, text in [("CLI output", result.output), ("stdout", captured.out),
                       ("stderr", captured.err), ("log records", caplog.text)]:
        if h := _hits(text):
            leaks.append(f"{name}: {h}")
    assert n_parquet > 10 and n_columns > 50  # the scans did look at something
    assert not leaks, "\n".join(leaks)
