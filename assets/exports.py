"""Exports for BI tools: the marts as monthly Parquet, and a read-only `marts.duckdb` snapshot.

A BI tool must never hold the working warehouse open: DuckDB lets one process write a
file or many processes read it, never both, so an open dashboard would block the next
dbt run. Each run therefore publishes copies that nobody writes in place:

- `<lake parent>/exports/marts/<mart>/month=YYYY-MM/part-0.parquet`: every month the run
  touched is rewritten whole from the mart and its file renamed over the old one, so a
  reader sees the old month or the new one, never half of one.
- `marts.duckdb` beside the warehouse: built as a temporary file, then renamed over the
  old one. A tool holding the old file open keeps reading its consistent snapshot; its
  next connection sees the new one. A run with a window starts from a copy of the previous
  file and replaces only the window's months in it, so its cost does not grow with history.
"""


import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import dagster as dg
import duckdb

from assets.partitions import DAILY
from assets.resources import StorageResource
from assets.warehouse import WAREHOUSE_POOL, dbt_project, warehouse_assets

EXPORTS_GROUP = "exports"
MARTS_GROUP = "marts"
# Marts built outside this module's dbt group (anomalies, concentration) are exported
# too, as soon as they exist in the warehouse.
OPTIONAL_MARTS = ("cost_anomalies", "supplier_concentration")
MARTS_INFO_TABLE = "_marts_info"
EXPORT_CHECK = "exports_match_warehouse"
# The month a table without any date column is filed under (exported whole every run).
UNDATED_MONTH = "all"


@dataclass(frozen=True)
class MartDoc:
    """A mart's dbt documentation, carried into the snapshot as DuckDB comments."""

    description: str
    columns: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ExportResult:
    marts: list[str]
    months: list[str] | None  # None: every month was exported
    parquet_dir: Path
    snapshot: Path
    warehouse_rows: dict[str, int]  # whole table
    snapshot_rows: dict[str, int]
    warehouse_rows_in_months: dict[str, int]  # rows of the exported months
    parquet_rows_in_months: dict[str, int]  # the same, read back from the published files

    @property
    def mismatches(self) -> list[str]:
        """Marts whose published copies disagree with the warehouse (empty when all agree)."""
        return [
            m for m in self.marts
            if self.snapshot_rows.get(m) != self.warehouse_rows.get(m)
            or self.parquet_rows_in_months.get(m) != self.warehouse_rows_in_months.get(m)
        ]


def marts_duckdb_path(warehouse: str | Path) -> Path:
    """The BI snapshot sits beside the warehouse (the rule of `Settings.marts_duckdb`)."""
    return Path(warehouse).with_name("marts.duckdb")


def exports_dir(lake: str | Path) -> Path:
    return Path(lake).resolve().parent / "exports" / "marts"


def months_in_window(start: date, end: date) -> list[str]:
    """The `YYYY-MM` months overlapping the half-open day window [start, end)."""
    months: list[str] = []
    first = start.replace(day=1)
    while first < end:
        months.append(f"{first:%Y-%m}")
        first = (first + timedelta(days=32)).replace(day=1)
    return months


def mart_docs(manifest_path: str | Path) -> dict[str, MartDoc]:
    """Model and column descriptions from the dbt manifest, by model name."""
    manifest = json.loads(Path(manifest_path).read_text())
    return {
        node["name"]: MartDoc(
            description=node.get("description") or "",
            columns={c: (v.get("description") or "") for c, v in node.get("columns", {}).items()},
        )
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    }


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _connect_read_only(warehouse: str | Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(warehouse), read_only=True)
    # Months are cut in UTC, whatever the machine's zone.
    con.execute("set TimeZone = 'UTC'")
    return con


def _tables(con: duckdb.DuckDBPyConnection, database: str | None = None) -> set[str]:
    """Tables of the `main` schema of `database` (default: the connection's own database)."""
    rows = con.execute(
        "select table_name from information_schema.tables "
        "where table_catalog = coalesce(?, current_database()) and table_schema = 'main'",
        [database],
    ).fetchall()
    return {r[0] for r in rows}


def _columns(con: duckdb.DuckDBPyConnection, table: str, database: str | None = None) -> list[tuple[str, str]]:
    """(name, type) of a table's columns, in order."""
    return con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_catalog = coalesce(?, current_database()) and table_schema = 'main' and table_name = ? "
        "order by ordinal_position",
        [database, table],
    ).fetchall()


def _date_column(columns: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The column that files a row under a month: usage_date, else the first date, else timestamp column."""
    names = dict(columns)
    if "usage_date" in names:
        return "usage_date", names["usage_date"]
    dated = [c for c in columns if c[1] == "DATE"] + [c for c in columns if c[1].startswith("TIMESTAMP")]
    return dated[0] if dated else None


def _month_expr(dated: tuple[str, str] | None) -> str:
    """SQL for a row's `YYYY-MM` (`UNDATED_MONTH` for a table without a date column)."""
    return f"strftime({_ident(dated[0])}, '%Y-%m')" if dated else _literal(UNDATED_MONTH)


def _month_start(month: str) -> date:
    try:
        return datetime.strptime(month, "%Y-%m").date()
    except ValueError as exc:
        raise ValueError(f"month {month!r} is not in YYYY-MM form") from exc


def _months_filter(dated: tuple[str, str], months: Sequence[str]) -> str:
    """SQL selecting the rows of `months`, as half-open ranges on the bare column.

    Ranges, not `strftime(...) in (...)`, so DuckDB skips row groups (and Parquet files)
    outside the months by their min/max instead of reading the whole history.
    """
    column, column_type = dated
    starts = sorted({_month_start(m) for m in months})
    ranges: list[list[date]] = []
    for start in starts:
        end = (start + timedelta(days=32)).replace(day=1)
        if ranges and ranges[-1][1] == start:
            ranges[-1][1] = end
        else:
            ranges.append([start, end])

    def bound(day: date) -> str:
        if column_type == "DATE":
            text = day.isoformat()
        elif "TIME ZONE" in column_type:
            text = f"{day.isoformat()} 00:00:00+00"
        else:
            text = f"{day.isoformat()} 00:00:00"
        return f"cast({_literal(text)} as {column_type})"

    conditions = [f"({_ident(column)} >= {bound(a)} and {_ident(column)} < {bound(b)})" for a, b in ranges]
    return "(" + " or ".join(conditions) + ")" if conditions else "false"


def _publish_month(new_dir: Path, target: Path) -> None:
    """Rename the month's new files over the old ones; drop old files the new run lacks."""
    new_files = sorted(new_dir.glob("*.parquet")) if new_dir.exists() else []
    target.mkdir(parents=True, exist_ok=True)
    for f in new_files:
        os.replace(f, target / f.name)
    keep = {f.name for f in new_files}
    for old in target.glob("*.parquet"):
        if old.name not in keep:
            old.unlink()
    if not keep:
        target.rmdir()


def _month_dirs(mart_dir: Path) -> list[str]:
    return sorted(p.name.removeprefix("month=") for p in mart_dir.glob("month=*")) if mart_dir.exists() else []


def export_parquet(
    warehouse: str | Path, out_dir: str | Path, marts: Sequence[str], months: Sequence[str] | None = None
) -> dict[str, int]:
    """Write `marts` as `out_dir/<mart>/month=YYYY-MM/*.parquet`, replacing `months` whole.

    `months=None` exports every month (and removes months the mart no longer has). A
    table without a date column is exported whole under `month=all`. Returns rows written
    per mart.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Staged beside the published tree (same file system, so renames are atomic) but
    # outside it, so a reader's `<mart>/*/*.parquet` glob never picks up a half-written file.
    staging = out_dir.parent / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    written: dict[str, int] = {}
    try:
        with _connect_read_only(warehouse) as con:
            for mart in marts:
                dated = _date_column(_columns(con, mart))
                whole = months is None or dated is None
                where = "" if whole else f"where {_months_filter(dated, months)}"
                written[mart] = con.execute(
                    f"copy (select *, {_month_expr(dated)} as month from {_ident(mart)} {where}) "
                    f"to {_literal(staging / mart)} "
                    "(format parquet, partition_by (month), filename_pattern 'part-{i}')"
                ).fetchall()[0][0]
                replaced = set(_month_dirs(staging / mart))
                replaced |= set(_month_dirs(out_dir / mart)) if whole else set(months or ())
                for m in sorted(replaced):
                    _publish_month(staging / mart / f"month={m}", out_dir / mart / f"month={m}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def refresh_snapshot(
    warehouse: str | Path,
    target: str | Path,
    marts: Sequence[str],
    docs: Mapping[str, MartDoc] | None = None,
    months: Sequence[str] | None = None,
) -> dict[str, int]:
    """Write `marts` into a new DuckDB file and rename it over `target`. Returns rows per mart.

    With `months` and a previous `target`, the new file starts as a copy of the previous
    one and only the rows of those months are replaced (see `_refresh_mart`); otherwise
    every mart is copied whole. The file carries the dbt descriptions as table and column
    comments (BI tools show them) and a `_marts_info` table saying when it was refreshed.
    It is made read-only (mode 0444): BI tools open it read-only and nobody writes it in place.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    docs = docs or {}
    rows: dict[str, int] = {}
    try:
        con = _open_snapshot_copy(target, tmp) if months is not None and target.exists() else duckdb.connect(str(tmp))
        with con:
            con.execute("set TimeZone = 'UTC'")
            con.execute(f"attach {_literal(Path(warehouse).resolve())} as warehouse (read_only)")
            previous = _tables(con) - {MARTS_INFO_TABLE}
            for gone in sorted(previous - set(marts)):
                con.execute(f"drop table {_ident(gone)}")
            for mart in marts:
                rows[mart] = _refresh_mart(con, mart, months if mart in previous else None)
                _comment(con, mart, docs.get(mart))
            con.execute("detach warehouse")
            con.execute(
                f"create or replace table {MARTS_INFO_TABLE} (mart varchar, row_count bigint, refreshed_at timestamptz)"
            )
            refreshed_at = datetime.now(UTC)
            con.executemany(
                f"insert into {MARTS_INFO_TABLE} values (?, ?, ?)", [(m, n, refreshed_at) for m, n in rows.items()]
            )
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return rows


def _open_snapshot_copy(previous: Path, tmp: Path) -> duckdb.DuckDBPyConnection:
    """A writable copy of the previous snapshot at `tmp`; an empty file when the copy cannot be opened."""
    shutil.copyfile(previous, tmp)
    try:
        return duckdb.connect(str(tmp))
    except duckdb.Error:
        tmp.unlink(missing_ok=True)
        return duckdb.connect(str(tmp))


def _refresh_mart(con: duckdb.DuckDBPyConnection, mart: str, months: Sequence[str] | None) -> int:
    """Bring the snapshot's `mart` level with the warehouse's; returns its row count.

    With `months`, a dated mart whose columns are unchanged has only those months deleted
    and inserted again. It is copied whole when that is not possible (undated, new to the
    file, columns changed) or when its row count then still differs from the warehouse's
    (a month changed by a run whose export did not complete).
    """
    table, source = _ident(mart), f"warehouse.main.{_ident(mart)}"
    columns = _columns(con, mart, "warehouse")
    dated = _date_column(columns)
    if months is not None and dated is not None and _columns(con, mart) == columns:
        where = _months_filter(dated, months)
        con.execute(f"delete from {table} where {where}")
        con.execute(f"insert into {table} select * from {source} where {where}")
        rows = con.execute(f"select count(*) from {table}").fetchall()[0][0]
        if rows == con.execute(f"select count(*) from {source}").fetchall()[0][0]:
            return rows
    con.execute(f"create or replace table {table} as select * from {source}")
    return con.execute(f"select count(*) from {table}").fetchall()[0][0]


def _comment(con: duckdb.DuckDBPyConnection, table: str, doc: MartDoc | None) -> None:
    """Set the table's and its columns' comments to the dbt descriptions (none where dbt has none).

    Only comments that differ are written: a refreshed copy already carries the previous ones.
    """
    doc = doc or MartDoc(description="")
    current = con.execute(
        "select comment from duckdb_tables() where database_name = current_database() and schema_name = 'main' "
        "and table_name = ?",
        [table],
    ).fetchall()[0][0]
    wanted = doc.description.strip() or None
    if current != wanted:
        con.execute(f"comment on table {_ident(table)} is {_literal(wanted) if wanted else 'null'}")
    columns = con.execute(
        "select column_name, comment from duckdb_columns() where database_name = current_database() "
        "and schema_name = 'main' and table_name = ?",
        [table],
    ).fetchall()
    for column, current in columns:
        wanted = (doc.columns.get(column) or "").strip() or None
        if current != wanted:
            con.execute(
                f"comment on column {_ident(table)}.{_ident(column)} is {_literal(wanted) if wanted else 'null'}"
            )


def _counts(con: duckdb.DuckDBPyConnection, marts: Sequence[str], months: Sequence[str] | None) -> tuple[dict, dict]:
    whole, in_months = {}, {}
    for mart in marts:
        dated = _date_column(_columns(con, mart))
        whole[mart] = con.execute(f"select count(*) from {_ident(mart)}").fetchall()[0][0]
        if months is None or dated is None:
            in_months[mart] = whole[mart]
        else:
            in_months[mart] = con.execute(
                f"select count(*) from {_ident(mart)} where {_months_filter(dated, months)}"
            ).fetchall()[0][0]
    return whole, in_months


def _published_rows(con: duckdb.DuckDBPyConnection, mart_dir: Path, months: Sequence[str] | None) -> int:
    """Rows of the published months of a mart, read back from its Parquet files."""
    undated = (mart_dir / f"month={UNDATED_MONTH}").exists()
    wanted = _month_dirs(mart_dir) if months is None or undated else months
    files = [str(mart_dir / f"month={m}" / "*.parquet") for m in wanted if (mart_dir / f"month={m}").exists()]
    if not files:
        return 0
    return con.execute("select count(*) from read_parquet(?)", [files]).fetchall()[0][0]


def publish_exports(
    warehouse: str | Path,
    lake: str | Path,
    marts: Sequence[str],
    months: Sequence[str] | None = None,
    docs: Mapping[str, MartDoc] | None = None,
) -> ExportResult:
    """Export the marts (and the optional ones present) as Parquet and as `marts.duckdb`."""
    with _connect_read_only(warehouse) as con:
        present = _tables(con)
        missing = [m for m in marts if m not in present]
        if missing:
            raise ValueError(
                f"the warehouse {warehouse} has no table {', '.join(missing)}: build the marts "
                "(inferledger run, or materialize the warehouse asset) before exporting them"
            )
        names = [*marts, *(m for m in OPTIONAL_MARTS if m in present and m not in marts)]
        warehouse_rows, warehouse_rows_in_months = _counts(con, names, months)
    out_dir = exports_dir(lake)
    export_parquet(warehouse, out_dir, names, months)
    snapshot = marts_duckdb_path(warehouse)
    snapshot_rows = refresh_snapshot(warehouse, snapshot, names, docs, months)
    with duckdb.connect() as con:
        parquet_rows = {m: _published_rows(con, out_dir / m, months) for m in names}
    return ExportResult(
        marts=names,
        months=list(months) if months is not None else None,
        parquet_dir=out_dir,
        snapshot=snapshot,
        warehouse_rows=warehouse_rows,
        snapshot_rows=snapshot_rows,
        warehouse_rows_in_months=warehouse_rows_in_months,
        parquet_rows_in_months=parquet_rows,
    )


def _mart_keys() -> list[dg.AssetKey]:
    groups = warehouse_assets().group_names_by_key
    return sorted(key for key, group in groups.items() if group == MARTS_GROUP)


def _upstream_keys() -> list[dg.AssetKey]:
    # The optional marts are assets of their own (not dbt models): depending on their keys
    # orders the export after them in a run; until they are defined, Dagster shows them as
    # external assets.
    return sorted({*_mart_keys(), *(dg.AssetKey(name) for name in OPTIONAL_MARTS)})


@cache
def marts_export_asset() -> dg.AssetsDefinition:
    """The export as an asset downstream of every dbt mart, one run per partition range."""
    mart_keys = _mart_keys()

    @dg.asset(
        name="marts_export",
        group_name=EXPORTS_GROUP,
        deps=_upstream_keys(),
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        # It reads the warehouse, and DuckDB refuses a reader while dbt holds the file.
        pool=WAREHOUSE_POOL,
        kinds={"parquet", "duckdb"},
        description=(
            "The marts for BI tools: Parquet under <lake parent>/exports/marts/<mart>/month=YYYY-MM/ "
            "(the months of the run replaced whole) and marts.duckdb beside the warehouse, "
            "replaced atomically, so dashboards can hold it open while the pipeline runs."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                EXPORT_CHECK,
                asset="marts_export",
                description="marts.duckdb and the exported months hold as many rows as the warehouse marts.",
            )
        ],
    )
    def marts_export(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        window = context.partition_time_window
        months = months_in_window(window.start.date(), window.end.date())
        result = publish_exports(
            storage.warehouse,
            storage.lake,
            [key.path[-1] for key in mart_keys],
            months,
            docs=mart_docs(dbt_project().manifest_path),
        )
        mismatches = result.mismatches
        return dg.MaterializeResult(
            metadata={
                "months": dg.MetadataValue.json(months),
                "parquet_dir": dg.MetadataValue.path(str(result.parquet_dir)),
                "marts_duckdb": dg.MetadataValue.path(str(result.snapshot)),
                "rows_exported": dg.MetadataValue.json(result.parquet_rows_in_months),
                "snapshot_rows": dg.MetadataValue.json(result.snapshot_rows),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=EXPORT_CHECK,
                    passed=not mismatches,
                    metadata={"mismatched_marts": dg.MetadataValue.json(mismatches)},
                )
            ],
        )

    return marts_export
