"""A small local HTTP server that answers the Google APIs our connectors call.

The real client libraries (google-cloud-bigquery, google-cloud-billing over REST) are
pointed at it with `client_options={"api_endpoint": fake.endpoint}` and anonymous
credentials, so what the tests exercise is the library's own HTTP traffic, paging and
type conversion, not a monkeypatched method.

BigQuery (REST v2, the calls `Client.query(...).result()` and `list_rows` make):
  POST /bigquery/v2/projects/{p}/jobs                          jobs.insert (query jobs)
  GET  /bigquery/v2/projects/{p}/jobs/{job}                    jobs.get
  GET  /bigquery/v2/projects/{p}/queries/{job}                 jobs.getQueryResults
  POST /bigquery/v2/projects/{p}/queries                       jobs.query
  GET  /bigquery/v2/projects/{p}/datasets/{d}/tables/{t}       tables.get
  GET  /bigquery/v2/projects/{p}/datasets/{d}/tables/{t}/data  tabledata.list
Queries run on an in-memory DuckDB holding the tables the test added, after three
mechanical rewrites of GoogleSQL (backquoted names, `@param`, `IN UNNEST(@param)`), so
a WHERE clause on export_time really filters. Rows go out in the documented REST
encoding: `{"f": [{"v": ...}]}`, scalars as strings, RECORD as nested `f`, REPEATED as
a list, TIMESTAMP as int64 microseconds when the client asks for
`formatOptions.useInt64Timestamp` (it always does) and float seconds otherwise.

Cloud Billing Catalog (REST v1):
  GET /v1/services                 services.list
  GET /v1/services/{service}/skus  services.skus.list, paged by pageSize / pageToken
SKUs are given as the JSON objects the API documents (camelCase, `units` as a string).
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import duckdb
import pyarrow as pa

# BigQuery legacy type names (as in table schemas) -> DuckDB column types.
_DUCK_TYPES = {
    "STRING": "VARCHAR",
    "FLOAT": "DOUBLE",
    "FLOAT64": "DOUBLE",
    "INTEGER": "BIGINT",
    "INT64": "BIGINT",
    "BOOLEAN": "BOOLEAN",
    "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMPTZ",
    "DATE": "DATE",
    "NUMERIC": "DECIMAL(38, 9)",
    "JSON": "JSON",
}


def _duck_type(field: dict) -> str:
    if field["type"] in ("RECORD", "STRUCT"):
        inner = ", ".join(f'"{f["name"]}" {_duck_type(f)}' for f in field["fields"])
        base = f"STRUCT({inner})"
    else:
        base = _DUCK_TYPES[field["type"]]
    return f"{base}[]" if field.get("mode") == "REPEATED" else base


def _bq_field(name: str, dtype: pa.DataType) -> dict:
    """An Arrow result column -> a BigQuery schema field (name, type, mode, fields)."""
    mode = "NULLABLE"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        mode, dtype = "REPEATED", dtype.value_type
    if pa.types.is_struct(dtype):
        children = [dtype.field(i) for i in range(dtype.num_fields)]
        fields = [_bq_field(child.name, child.type) for child in children]
        return {"name": name, "type": "RECORD", "mode": mode, "fields": fields}
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        kind = "STRING"
    elif pa.types.is_floating(dtype):
        kind = "FLOAT"
    elif pa.types.is_integer(dtype):
        kind = "INTEGER"
    elif pa.types.is_boolean(dtype):
        kind = "BOOLEAN"
    elif pa.types.is_timestamp(dtype):
        kind = "TIMESTAMP"
    elif pa.types.is_date(dtype):
        kind = "DATE"
    elif pa.types.is_decimal(dtype):
        kind = "NUMERIC"
    else:
        raise NotImplementedError(f"fake BigQuery cannot return {dtype} ({name})")
    return {"name": name, "type": kind, "mode": mode}


def _cell(value: Any, field: dict, int64_ts: bool) -> dict:  # noqa: ANN401 - any JSON value
    if field["mode"] == "REPEATED":
        # BigQuery has no NULL arrays: an absent array is sent as an empty one.
        scalar = {**field, "mode": "NULLABLE"}
        return {"v": [_cell(v, scalar, int64_ts) for v in value or []]}
    if value is None:
        return {"v": None}
    if field["type"] == "RECORD":
        return {"v": {"f": [_cell(value[f["name"]], f, int64_ts) for f in field["fields"]]}}
    if isinstance(value, datetime):
        micros = round(value.astimezone(timezone.utc).timestamp() * 1_000_000)
        return {"v": str(micros) if int64_ts else repr(micros / 1_000_000)}
    if isinstance(value, bool):
        return {"v": "true" if value else "false"}
    if isinstance(value, (float, int, Decimal)):
        return {"v": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, date):
        return {"v": value.isoformat()}
    return {"v": str(value)}


def _to_sql(query: str) -> str:
    """GoogleSQL -> DuckDB for the few constructs the connectors' queries use."""
    query = re.sub(r"`([^`]+)`", r'"\1"', query)
    query = re.sub(r"IN\s+UNNEST\(\s*@(\w+)\s*\)", r"IN (SELECT UNNEST($\1))", query, flags=re.I)
    return re.sub(r"@(\w+)", r"$\1", query)


def _param_value(ptype: dict, pvalue: dict) -> Any:  # noqa: ANN401
    if ptype["type"] == "ARRAY":
        return [_param_value(ptype["arrayType"], v) for v in pvalue.get("arrayValues", [])]
    raw = pvalue.get("value")
    if raw is None:
        return None
    kind = ptype["type"]
    if kind == "TIMESTAMP":
        return datetime.fromisoformat(raw.replace(" UTC", "+00:00").replace("Z", "+00:00"))
    if kind in ("INT64", "INTEGER"):
        return int(raw)
    if kind in ("FLOAT64", "FLOAT"):
        return float(raw)
    return raw


class FakeGcp:
    """State and request log of the fake; start it with `fake_gcp()`."""

    def __init__(self) -> None:
        self.endpoint = ""
        self.requests: list[tuple[str, str]] = []  # (method, path?query) in arrival order
        self.queries: list[tuple[str, dict]] = []  # (GoogleSQL, parameters) as received
        self.page_size = 2  # small, so every test pages through the results
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()
        self._jobs: dict[str, dict] = {}
        self._skus: dict[str, list[dict]] = {}

    # --- test-side API ---------------------------------------------------------------

    def add_table(self, table_id: str, schema: list[dict], rows: list[dict]) -> None:
        """Create `project.dataset.table` with a BigQuery JSON schema and append rows."""
        columns = {f["name"]: _duck_type(f) for f in schema}
        with self._lock:
            exists = self._con.execute(
                "select count(*) from information_schema.tables where table_name = ?", [table_id]
            ).fetchall()[0][0]
            if not exists:
                cols = ", ".join(f'"{n}" {t}' for n, t in columns.items())
                self._con.execute(f'CREATE TABLE "{table_id}" ({cols})')
            self._insert(table_id, columns, rows)

    def _insert(self, table_id: str, columns: dict[str, str], rows: list[dict]) -> None:
        if not rows:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rows.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            spec = "{" + ", ".join(f"'{n}': '{t}'" for n, t in columns.items()) + "}"
            self._con.execute(
                f'INSERT INTO "{table_id}" SELECT * FROM read_json(?, columns = {spec},'
                " format = 'newline_delimited')",
                [str(path)],
            )

    def add_skus(self, service_id: str, skus: list[dict]) -> None:
        self._skus.setdefault(service_id, []).extend(skus)

    def replace_skus(self, service_id: str, skus: list[dict]) -> None:
        """The catalog as it reads after a price change: these SKUs, nothing else."""
        self._skus[service_id] = list(skus)

    # --- BigQuery --------------------------------------------------------------------

    def _run_query(self, project: str, config: dict, job_id: str) -> dict:
        params = {
            p["name"]: _param_value(p["parameterType"], p["parameterValue"])
            for p in config.get("queryParameters", [])
        }
        self.queries.append((config["query"], params))
        with self._lock:
            result = self._con.sql(_to_sql(config["query"]), params=params).to_arrow_table()
        schema = [_bq_field(name, result.schema.field(name).type) for name in result.column_names]
        now = str(int(datetime.now(timezone.utc).timestamp() * 1000))
        job = {
            "kind": "bigquery#job",
            "id": f"{project}:US.{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
            "configuration": {
                "jobType": "QUERY",
                "query": {
                    **config,
                    "destinationTable": {
                        "projectId": project,
                        "datasetId": "_fake_results",
                        "tableId": job_id,
                    },
                },
            },
            "status": {"state": "DONE"},
            "statistics": {
                "creationTime": now,
                "startTime": now,
                "endTime": now,
                "query": {"totalBytesProcessed": "0", "statementType": "SELECT"},
            },
        }
        self._jobs[job_id] = {"job": job, "schema": schema, "rows": result.to_pylist()}
        return job

    def _page(self, job_id: str, qs: dict, int64_ts: bool) -> dict:
        state = self._jobs[job_id]
        rows = state["rows"]
        start = int(qs.get("pageToken", qs.get("startIndex", ["0"]))[0])
        # maxResults=0 is how the client waits for a job without fetching rows.
        requested = qs.get("maxResults", [""])[0]
        size = self.page_size if requested in ("", None) else min(int(requested), self.page_size)
        chunk, end = rows[start : start + size], start + size
        fields = state["schema"]
        page: dict[str, Any] = {"totalRows": str(len(rows))}
        # Like the real API, a page without rows has no `rows` key at all: the client
        # takes its presence to mean "this is the first page of results".
        if chunk:
            page["rows"] = [
                {"f": [_cell(r[f["name"]], f, int64_ts) for f in fields]} for r in chunk
            ]
        if chunk and end < len(rows):
            page["pageToken"] = str(end)
        return page

    def bigquery(self, method: str, parts: list[str], qs: dict, body: dict) -> dict:
        project = parts[1]  # parts: projects/{p}/...
        int64_ts = qs.get("formatOptions.useInt64Timestamp", ["false"])[0].lower() == "true"
        if method == "POST" and parts[2:] == ["jobs"]:
            job_id = body.get("jobReference", {}).get("jobId") or uuid.uuid4().hex
            return self._run_query(project, body["configuration"]["query"], job_id)
        if method == "POST" and parts[2:] == ["queries"]:
            job_id = body.get("requestId") or uuid.uuid4().hex
            job = self._run_query(project, body, job_id)
            return {
                "kind": "bigquery#queryResponse",
                "jobReference": job["jobReference"],
                "jobComplete": True,
                "schema": {"fields": self._jobs[job_id]["schema"]},
                **self._page(job_id, {"maxResults": [body.get("maxResults", "")]}, int64_ts=True),
            }
        if method == "GET" and parts[2] == "jobs":
            return self._jobs[parts[3]]["job"]
        if method == "GET" and parts[2] == "queries":
            job_id = parts[3]
            return {
                "kind": "bigquery#getQueryResultsResponse",
                "jobReference": self._jobs[job_id]["job"]["jobReference"],
                "jobComplete": True,
                "schema": {"fields": self._jobs[job_id]["schema"]},
                **self._page(job_id, qs, int64_ts),
            }
        if method == "GET" and parts[2] == "datasets" and parts[4] == "tables":
            job_id = parts[5]
            if parts[6:] == ["data"]:
                return {"kind": "bigquery#tableDataList", **self._page(job_id, qs, int64_ts)}
            return {
                "kind": "bigquery#table",
                "tableReference": {"projectId": project, "datasetId": parts[3], "tableId": job_id},
                "schema": {"fields": self._jobs[job_id]["schema"]},
                "numRows": str(len(self._jobs[job_id]["rows"])),
                "type": "TABLE",
            }
        raise KeyError(f"fake BigQuery does not answer {method} {'/'.join(parts)}")

    # --- Cloud Billing Catalog -------------------------------------------------------

    def catalog(self, parts: list[str], qs: dict) -> dict:
        if parts == ["services"]:
            return {
                "services": [
                    {"name": f"services/{s}", "serviceId": s, "displayName": s}
                    for s in sorted(self._skus)
                ]
            }
        if len(parts) == 3 and parts[0] == "services" and parts[2] == "skus":
            skus = self._skus.get(parts[1], [])
            start = int(qs.get("pageToken", ["0"])[0] or 0)
            size = min(int(qs.get("pageSize", [self.page_size])[0]), self.page_size)
            end = start + size
            return {"skus": skus[start:end], "nextPageToken": str(end) if end < len(skus) else ""}
        raise KeyError(f"fake Cloud Catalog does not answer {'/'.join(parts)}")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGcp

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ANN401
        """Quiet: the request log is `fake.requests`."""

    def _answer(self, method: str) -> None:
        url = urlparse(self.path)
        self.fake.requests.append((method, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        qs = parse_qs(url.query, keep_blank_values=True)
        parts = [p for p in url.path.split("/") if p]
        try:
            if parts[:2] == ["bigquery", "v2"]:
                payload, status = self.fake.bigquery(method, parts[2:], qs, body), 200
            elif parts[:1] == ["v1"]:
                payload, status = self.fake.catalog(parts[1:], qs), 200
            else:
                raise KeyError(url.path)
        except KeyError as exc:
            payload = {"error": {"code": 404, "message": str(exc), "status": "NOT_FOUND"}}
            status = 404
        except duckdb.Error as exc:
            payload = {"error": {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}}
            status = 400
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")


@contextmanager
def fake_gcp() -> Iterator[FakeGcp]:
    """Serve a FakeGcp on 127.0.0.1 on a free port; stop it on exit."""
    fake = FakeGcp()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits for the loop's next poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    fake.endpoint = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
