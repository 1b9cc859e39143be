"""Exports for BI tools: the marts as Parquet, one file a day, and a read-only `marts.duckdb` snapshot.

A BI tool must never hold the working warehouse open: DuckDB lets one process write a
file or many processes read it, never both, so an open dashboard would block the next
dbt run. Each run therefore publishes copies that nobody writes in place:

- `<lake parent>/exports/marts/<mart>/month=YYYY-MM/part-YYYY-MM-DD.parquet`: one file per
  day of a dated mart (a mart without a date column: `month=all/part-0.parquet`, whole).
  A run rewrites the days of its window, and any other day whose row count no longer
  matches the warehouse's (a row that moved to another day, a day deleted), each file
  renamed over the old one, so a reader sees the old day or the new one, never half of
  one. A day's export costs the same on the 31st as on the 1st.
- `marts.duckdb` beside the warehouse: another file is brought level, then renamed over
  the old one. A tool holding the old file open keeps reading its consistent snapshot; its
  next connection sees the new one. The file a run replaces is kept as the spare that the
  next run brings level in place (see refresh_snapshot), so a run writes the rows of its
  days, not a copy of the whole history.
"""


import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import dagster as dg
import duckdb

from assets.partitions import DAILY, days_in_window
from assets.resources import StorageResource
from assets.warehouse import WAREHOUSE_POOL, dbt_project, load_manifest, warehouse_assets
from connectors.export_mirror import mirror_to_s3

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
    days: list[date] | None  # the run's window; None: every day was exported
    parquet_dir: Path
    snapshot: Path
    warehouse_rows: dict[str, int]  # whole table
    snapshot_rows: dict[str, int]
    parquet_rows: dict[str, int]  # whole mart, from the published files' footers
    warehouse_rows_in_window: dict[str, int]  # rows of the window's days (all rows without one)
    parquet_rows_in_window: dict[str, int]  # the same, read back from the published files

    @property
    def mismatches(self) -> list[str]:
        """Marts whose published copies disagree with the warehouse (empty when all agree)."""
        return [
            m for m in self.marts
            if self.snapshot_rows.get(m) != self.warehouse_rows.get(m)
            or self.parquet_rows.get(m) != self.warehouse_rows.get(m)
            or self.parquet_rows_in_window.get(m) != self.warehouse_rows_in_window.get(m)
        ]


def marts_duckdb_path(warehouse: str | Path) -> Path:
    """The BI snapshot sits beside the warehouse (the rule of `Settings.marts_duckdb`)."""
    return Path(warehouse).with_name("marts.duckdb")


def exports_dir(lake: str | Path) -> Path:
    return Path(lake).resolve().parent / "exports" / "marts"


def mart_docs(manifest_path: str | Path) -> dict[str, MartDoc]:
    """Model and column descriptions from the dbt manifest, by model name."""
    manifest = load_manifest(Path(manifest_path))
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


def _bound(column_type: str, day: date) -> str:
    """SQL for midnight UTC starting `day`, in the column's own type."""
    if column_type == "DATE":
        text = day.isoformat()
    elif "TIME ZONE" in column_type:
        text = f"{day.isoformat()} 00:00:00+00"
    else:
        text = f"{day.isoformat()} 00:00:00"
    return f"cast({_literal(text)} as {column_type})"


def _days_filter(dated: tuple[str, str], days: Iterable[date]) -> str:
    """SQL selecting the rows of `days`, as half-open ranges on the bare column.

    Ranges (runs of consecutive days merged), not a cast of every row, so DuckDB skips row
    groups outside them by their min/max instead of reading the whole history.
    """
    column, column_type = dated
    ranges: list[list[date]] = []
    for day in sorted(set(days)):
        if ranges and ranges[-1][1] == day:
            ranges[-1][1] = day + timedelta(days=1)
        else:
            ranges.append([day, day + timedelta(days=1)])
    conditions = [f"({_ident(column)} >= {_bound(column_type, a)} and {_ident(column)} < {_bound(column_type, b)})"
                  for a, b in ranges]
    return "(" + " or ".join(conditions) + ")" if conditions else "false"


def _day_counts(con: duckdb.DuckDBPyConnection, table: str, dated: tuple[str, str],
                days: Iterable[date] | None = None) -> dict[date, int]:
    """Rows per (UTC) day of a dated table, of `days` (None: every day): one pass over its
    date column alone, skipping row groups outside `days`."""
    where = f"{_ident(dated[0])} is not null" if days is None else _days_filter(dated, days)
    rows = con.execute(f"select cast({_ident(dated[0])} as date), count(*) from {table} where {where} group by 1").fetchall()
    return dict(rows)


_EPOCH = date(1970, 1, 1)


def _fingerprint(counts: Mapping[date, int]) -> tuple[int, int]:
    """Rows with a day, and the sum of their days (as day numbers)."""
    return sum(counts.values()), sum(n * (d - _EPOCH).days for d, n in counts.items())


class _TableRows:
    """A dated table's rows: their fingerprint (_fingerprint), and per day."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str, dated: tuple[str, str]) -> None:
        self.con, self.table, self.dated = con, table, dated

    def fingerprint(self) -> tuple[int, int]:
        day = f"cast({_ident(self.dated[0])} as date)"
        rows, days = self.con.execute(
            f"select count({day}), coalesce(sum(date_diff('day', date '{_EPOCH}', {day})), 0) from {self.table}"
        ).fetchall()[0]
        return int(rows), int(days)

    def per_day(self, days: Iterable[date] | None = None) -> dict[date, int]:
        return _day_counts(self.con, self.table, self.dated, days)


class _PublishedRows:
    """Published files' rows per day (from their footers); a day marked -1 is to be written
    again whatever its count."""

    def __init__(self, counts: Mapping[date, int]) -> None:
        self.counts = counts

    def fingerprint(self) -> tuple[int, int] | None:
        return None if any(n < 0 for n in self.counts.values()) else _fingerprint(self.counts)

    def per_day(self, days: Iterable[date] | None = None) -> dict[date, int]:
        return dict(self.counts) if days is None else {d: self.counts[d] for d in days if d in self.counts}


def _days_to_refresh(window: Sequence[date] | None, source: _TableRows, copy: _TableRows | _PublishedRows
                     ) -> tuple[set[date], dict[date, int]]:
    """The days a copy must take again from its source, with the source's rows of each: the
    run's window (every day when None) and any day whose row count differs (a row moved to
    another day, a day deleted by a run whose export did not complete).

    The days outside the window are counted one by one only when their rows differ on the
    two sides: in number, or in the sum of their days (a day gone and another come with as
    many rows). Both are one pass over the date column without grouping; counting every day
    of the history, three times per mart, made a day's export grow with its history.
    """
    if window is not None:
        window = sorted(set(window))
        source_window, copy_all = source.per_day(window), copy.fingerprint()
        if copy_all is not None:
            def outside(whole: tuple[int, int], in_window: dict[date, int]) -> tuple[int, int]:
                part = _fingerprint(in_window)
                return whole[0] - part[0], whole[1] - part[1]

            if outside(source.fingerprint(), source_window) == outside(copy_all, copy.per_day(window)):
                return set(window), source_window
    source_days, copy_days = source.per_day(), copy.per_day()
    days = set(source_days) | set(copy_days)
    if window is None:
        return days, source_days
    return set(window) | {d for d in days if source_days.get(d, 0) != copy_days.get(d, 0)}, source_days


_DAY_FILE = re.compile(r"^part-(\d{4}-\d{2}-\d{2})\.parquet$")


def _day_file(mart_dir: Path, day: date) -> Path:
    return mart_dir / f"month={day:%Y-%m}" / f"part-{day.isoformat()}.parquet"


Columns = tuple[tuple[str, str], ...]


class _Footers:
    """Rows and columns (names, and the types DuckDB reads) of published Parquet files,
    each footer read once.

    Every run compares every published day with the warehouse (row counts, columns), and
    reading a thousand footers for that (90 days of 11 marts) made the export's cost grow
    with history. What was read is kept in `path` between runs, under the file's size and
    modification time: a file that changed since (rewritten by a run, or by anyone) is
    read again (a file is replaced by a rename, so its inode changes too). It is only a
    cache: without it, or when it is unreadable, every footer is read.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._kept: dict[str, tuple[list, Columns]] = {}  # path -> ([inode, size, mtime, rows], columns)
        self._seen: dict[str, tuple[list, Columns]] = {}
        try:
            stored = json.loads(path.read_text()) if path else {}
            schemas = [tuple(tuple(c) for c in columns) for columns in stored.get("schemas", [])]
            self._kept = {name: (entry[:4], schemas[entry[4]]) for name, entry in stored.get("files", {}).items()}
        except (OSError, ValueError, TypeError, IndexError, KeyError):
            self._kept = {}

    def facts(self, con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> dict[str, tuple[int, Columns]]:
        """Rows and columns of each file, by its path as given."""
        out: dict[str, tuple[int, Columns]] = {}
        todo: dict[str, list] = {}
        for f in files:
            st = f.stat()
            stamp = [st.st_ino, st.st_size, st.st_mtime_ns]
            kept = self._kept.get(str(f))
            if kept is not None and kept[0][:3] == stamp:
                out[str(f)] = (kept[0][3], kept[1])
                self._seen[str(f)] = kept
            else:
                todo[str(f)] = stamp
        if todo:
            names = list(todo)
            rows = dict(con.execute("select file_name, num_rows from parquet_file_metadata(?)", [names]).fetchall())
            columns: dict[str, list[tuple[str, str]]] = {}
            for file_name, name, duckdb_type in con.execute(
                "select file_name, name, duckdb_type from parquet_schema(?)", [names]
            ).fetchall():
                columns.setdefault(file_name, []).append((name, duckdb_type))
            for name in names:
                facts = (int(rows[name]), tuple(columns.get(name, ())))
                out[name] = facts
                self._seen[name] = ([*todo[name], facts[0]], facts[1])
        return out

    def save(self) -> None:
        """Keep what this run looked up (the files that exist now)."""
        if self.path is None:
            return
        schemas: dict[Columns, int] = {}
        files = {}
        for name, (entry, columns) in self._seen.items():
            files[name] = [*entry, schemas.setdefault(columns, len(schemas))]
        tmp = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(json.dumps({"schemas": [list(map(list, c)) for c in schemas], "files": files}))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _footers_path(out_dir: Path) -> Path:
    # Beside the published tree, not in it: a mirror or a reader's glob never sees it.
    return out_dir.parent / f".{out_dir.name}-footers.json"


def _published_days(con: duckdb.DuckDBPyConnection, mart_dir: Path, footers: _Footers
                    ) -> tuple[dict[date, int], dict[date, Columns], list[Path]]:
    """Rows and columns per day of a dated mart's published files (from the Parquet
    footers), and the files that are not one day's (an older layout, or a stray): those
    are replaced."""
    others: list[Path] = []
    files = sorted(mart_dir.glob("month=*/*.parquet")) if mart_dir.exists() else []
    day_files = []
    for f in files:
        match = _DAY_FILE.match(f.name)
        if match and f.parent.name == f"month={match.group(1)[:7]}":
            day_files.append((date.fromisoformat(match.group(1)), f))
        else:
            others.append(f)
    facts = footers.facts(con, [f for _, f in day_files])
    counts = {d: facts[str(f)][0] for d, f in day_files}
    columns = {d: facts[str(f)][1] for d, f in day_files}
    return counts, columns, others


def _days_in_other_columns(con: duckdb.DuckDBPyConnection, mart: str, published: Mapping[date, Columns],
                           staging: Path) -> list[date]:
    """The published days whose file's columns differ from those of a file the same writer
    makes from the mart now: names, and the types DuckDB reads (not whether a column is
    REQUIRED, which DuckDB decides from the rows a file holds)."""
    if not published:
        return []
    probe = staging / f"{mart}-columns.parquet"
    _copy_rows(con, f"select * from {_ident(mart)} limit 0", probe)
    want = tuple(tuple(c) for c in con.execute(
        "select name, duckdb_type from parquet_schema(?)", [str(probe)]).fetchall())
    return sorted(d for d, columns in published.items() if columns != want)


def export_parquet(
    warehouse: str | Path, out_dir: str | Path, marts: Sequence[str], days: Iterable[date] | None = None,
    footers: _Footers | None = None,
) -> dict[str, int]:
    """Write `marts` as `out_dir/<mart>/month=YYYY-MM/part-YYYY-MM-DD.parquet`, one file a day.

    `days` is the run's window: those days are written again, with any other day whose
    published row count differs from the warehouse's (see _days_to_refresh); `None`
    exports every day and removes days the mart no longer has. A day without rows has no
    file. A table without a date column is exported whole under `month=all`. Returns the
    rows written per mart.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Staged beside the published tree (same file system, so renames are atomic) but
    # outside it, so a reader's `<mart>/*/*.parquet` glob never picks up a half-written file.
    staging = out_dir.parent / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    written: dict[str, int] = {}
    own_footers = footers is None
    footers = _Footers(_footers_path(out_dir)) if footers is None else footers
    try:
        with _connect_read_only(warehouse) as con:
            for mart in marts:
                mart_dir = out_dir / mart
                mart_dir.mkdir(exist_ok=True)  # there even while the mart has no rows
                dated = _date_column(_columns(con, mart))
                if dated is None:
                    written[mart] = _copy_rows(con, f"select * from {_ident(mart)}", staging / f"{mart}.parquet")
                    _publish(staging / f"{mart}.parquet", mart_dir / f"month={UNDATED_MONTH}" / "part-0.parquet")
                    continue
                published, published_columns, others = _published_days(con, mart_dir, footers)
                # Days published before the mart's columns changed (a release that added one or
                # changed a type; the warehouse rebuilt the mart) are written again.
                for day in _days_in_other_columns(con, mart, published_columns, staging):
                    published[day] = -1
                rows = _TableRows(con, _ident(mart), dated)
                if others:  # files of an older layout: their months are written again as days
                    months = {f.parent.name.removeprefix("month=") for f in others}
                    published.update({d: -1 for d in rows.per_day() if f"{d:%Y-%m}" in months})
                written[mart] = 0
                todo, source = _days_to_refresh(days, rows, _PublishedRows(published))
                for day in sorted(todo):
                    target = _day_file(mart_dir, day)
                    if source.get(day, 0) == 0:
                        target.unlink(missing_ok=True)
                        continue
                    staged = staging / f"{mart}-{day.isoformat()}.parquet"
                    written[mart] += _copy_rows(
                        con, f"select * from {_ident(mart)} where {_days_filter(dated, [day])}", staged)
                    _publish(staged, target)
                for f in others:
                    f.unlink()
                for month_dir in mart_dir.glob("month=*"):
                    if month_dir.is_dir() and not any(month_dir.iterdir()):
                        month_dir.rmdir()
        if own_footers:
            footers.save()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def _copy_rows(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> int:
    """Write a query's rows to one Parquet file; returns their number."""
    return con.execute(f"copy ({query}) to {_literal(path)} (format parquet)").fetchall()[0][0]


def _publish(staged: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)


def refresh_snapshot(
    warehouse: str | Path,
    target: str | Path,
    marts: Sequence[str],
    docs: Mapping[str, MartDoc] | None = None,
    days: Iterable[date] | None = None,
) -> dict[str, int]:
    """Bring `marts` in a DuckDB file level with the warehouse and publish it as `target`
    with a rename. Returns rows per mart.

    The file published by the run before stays beside `target` as the spare
    (`.marts.duckdb.spare`). With `days` (the run's window), the spare is brought level in
    place and renamed over `target`, and the file it replaces becomes the next spare: only
    the rows of the days this run and the one before it refreshed (and of days whose row
    counts differ) are written, so a run does not copy the whole history. A log beside the
    file (`.marts.duckdb.refreshes.json`) records which days each run refreshed. When the
    spare cannot be used (a BI tool still holds it open, it is missing, or the log does not
    know it), the run starts from a copy of `target` instead; without `days` every mart is
    copied whole into a new file. A BI tool holding `target` open keeps reading its
    consistent snapshot; its next connection sees the new one.

    The file carries the dbt descriptions as table and column comments (BI tools show them)
    and a `_marts_info` table saying when it was refreshed. It is read-only (mode 0444) while
    published: BI tools open it read-only and nobody writes a published file.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    docs = docs or {}
    rows: dict[str, int] = {}
    refreshed: dict[str, list[str] | None] = {}  # per mart: the days changed, None when copied whole
    days = None if days is None else sorted(set(days))
    log = _read_refresh_log(target)
    spare = _open_spare(target, log) if days is not None and target.exists() else None
    path = _spare_path(target) if spare else tmp
    try:
        if spare:
            con, behind = spare
        else:
            behind = {}
            con = _open_snapshot_copy(target, tmp) if days is not None and target.exists() else duckdb.connect(str(tmp))
        with con:
            con.execute("set TimeZone = 'UTC'")
            con.execute(f"attach {_literal(Path(warehouse).resolve())} as warehouse (read_only)")
            previous = _tables(con) - {MARTS_INFO_TABLE}
            for gone in sorted(previous - set(marts)):
                con.execute(f"drop table {_ident(gone)}")
            for mart in marts:
                missed = behind.get(mart, set())
                window = None if days is None or mart not in previous or missed is None else [*days, *missed]
                rows[mart], written = _refresh_mart(con, mart, window)
                # Logged: the days this run found changed, not the ones this file only
                # caught up on (the runs that changed those logged them already).
                if written is None and window is None and days is not None:
                    # Copied whole only to catch this file up (a mart new to it, or one a
                    # run it missed copied whole): this run changed its window and no more.
                    # Logging the copy instead would make the other file copy it whole in
                    # turn, and so on at every run: a mart added by a release would be
                    # copied whole every day from then on.
                    changed = set(days)
                else:
                    changed = None if written is None else set(days or ()) | (written - (missed or set()))
                refreshed[mart] = None if changed is None else sorted(d.isoformat() for d in changed)
                _comment(con, mart, docs.get(mart))
            con.execute("detach warehouse")
            con.execute(
                f"create or replace table {MARTS_INFO_TABLE} (mart varchar, row_count bigint, refreshed_at timestamptz)"
            )
            refreshed_at = datetime.now(UTC)
            con.executemany(
                f"insert into {MARTS_INFO_TABLE} values (?, ?, ?)", [(m, n, refreshed_at) for m, n in rows.items()]
            )
            con.execute("checkpoint")
        if Path(f"{path}.wal").exists():  # the checkpoint must have emptied it: never publish a file and leave its log
            raise RuntimeError(f"{path}: DuckDB left a write-ahead log after checkpoint; rerun the export")
        os.chmod(path, 0o444)
        _publish_snapshot(path, target)
        window_text = None if days is None else [d.isoformat() for d in days]
        _write_refresh_log(target, [*log, {"refreshed_at": refreshed_at.isoformat(), "window": window_text,
                                           "days": refreshed}])
    except BaseException:
        if spare:  # half brought level: the next run starts from a copy instead
            _spare_path(target).unlink(missing_ok=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    return rows


# How many runs the refresh log remembers: a spare more runs behind is refreshed from a copy.
KEPT_REFRESHES = 10


def _spare_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.spare")


def _log_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.refreshes.json")


def _read_refresh_log(target: Path) -> list[dict]:
    try:
        log = json.loads(_log_path(target).read_text())
    except (OSError, ValueError):
        return []
    return log if isinstance(log, list) else []


def _write_refresh_log(target: Path, log: list[dict]) -> None:
    path = _log_path(target)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(log[-KEPT_REFRESHES:]))
    os.replace(tmp, path)


def _open_spare(target: Path, log: list[dict]
                ) -> tuple[duckdb.DuckDBPyConnection, dict[str, set[date] | None]] | None:
    """The spare opened for writing, with the days each mart changed in the runs it missed
    (None for a mart one of them copied whole); None when it cannot be used (held open,
    unknown to the log, or it missed an export of every day)."""
    spare = _spare_path(target)
    if not spare.exists() or Path(f"{spare}.wal").exists():
        return None
    try:
        os.chmod(spare, 0o644)
        con = duckdb.connect(str(spare))  # fails while a BI tool still holds it open
    except (OSError, duckdb.Error):
        with contextlib.suppress(OSError):
            os.chmod(spare, 0o444)
        return None
    try:
        stamp = con.execute(f"select max(refreshed_at) from {MARTS_INFO_TABLE}").fetchall()[0][0]
        runs = [entry.get("refreshed_at") for entry in log]
        position = runs.index(stamp.astimezone(UTC).isoformat()) if stamp else -1
    except (duckdb.Error, ValueError):
        position = -1
    if position < 0:
        con.close()
        os.chmod(spare, 0o444)
        return None
    missed = log[position + 1:]
    if any(entry.get("window") is None for entry in missed):
        # It missed an export of every day: copying the published file is cheaper.
        con.close()
        os.chmod(spare, 0o444)
        return None
    behind: dict[str, set[date] | None] = {}
    for entry in missed:
        for mart, days in entry.get("days", {}).items():
            if days is None or behind.get(mart, set()) is None:
                behind[mart] = None  # copied whole by a run it missed (a small, undated mart)
            else:
                behind.setdefault(mart, set()).update(date.fromisoformat(d) for d in days)
    return con, behind


def _publish_snapshot(path: Path, target: Path) -> None:
    """Rename `path` over `target`; the file it replaces stays as the spare."""
    if not target.exists():
        os.replace(path, target)
        return
    spare, keep = _spare_path(target), target.with_name(f".{target.name}.spare.next")
    keep.unlink(missing_ok=True)
    try:
        os.link(target, keep)  # the published file gets a second name before it loses the first
    except OSError:
        keep = None  # no hard links here: no spare, the next run copies
    os.replace(path, target)
    if keep is not None:
        os.replace(keep, spare)
    elif path != spare:
        spare.unlink(missing_ok=True)


def _open_snapshot_copy(previous: Path, tmp: Path) -> duckdb.DuckDBPyConnection:
    """A writable copy of the previous snapshot at `tmp`; an empty file when the copy cannot be opened."""
    shutil.copyfile(previous, tmp)
    try:
        return duckdb.connect(str(tmp))
    except duckdb.Error:
        tmp.unlink(missing_ok=True)
        return duckdb.connect(str(tmp))


def _refresh_mart(con: duckdb.DuckDBPyConnection, mart: str, days: Sequence[date] | None
                  ) -> tuple[int, set[date] | None]:
    """Bring the snapshot's `mart` level with the warehouse's; returns its row count and
    the days written (None when it was copied whole).

    With `days`, a dated mart whose columns are unchanged has only the days to refresh
    (_days_to_refresh: `days`, and days whose row counts differ) deleted and inserted
    again. It is copied whole when that is not possible (undated, new to the file, columns
    changed) or when its row count then still differs from the warehouse's.
    """
    table, source = _ident(mart), f"warehouse.main.{_ident(mart)}"
    columns = _columns(con, mart, "warehouse")
    dated = _date_column(columns)
    if days is not None and dated is not None and _columns(con, mart) == columns:
        todo, _ = _days_to_refresh(days, _TableRows(con, source, dated), _TableRows(con, table, dated))
        where = _days_filter(dated, todo)
        con.execute(f"delete from {table} where {where}")
        con.execute(f"insert into {table} select * from {source} where {where}")
        rows = con.execute(f"select count(*) from {table}").fetchall()[0][0]
        if rows == con.execute(f"select count(*) from {source}").fetchall()[0][0]:
            return rows, todo
    con.execute(f"create or replace table {table} as select * from {source}")
    return con.execute(f"select count(*) from {table}").fetchall()[0][0], None


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


def _counts(con: duckdb.DuckDBPyConnection, marts: Sequence[str], days: Sequence[date] | None) -> tuple[dict, dict]:
    whole, in_window = {}, {}
    for mart in marts:
        dated = _date_column(_columns(con, mart))
        whole[mart] = con.execute(f"select count(*) from {_ident(mart)}").fetchall()[0][0]
        if days is None or dated is None:
            in_window[mart] = whole[mart]
        else:
            in_window[mart] = con.execute(
                f"select count(*) from {_ident(mart)} where {_days_filter(dated, days)}"
            ).fetchall()[0][0]
    return whole, in_window


def _published_rows(con: duckdb.DuckDBPyConnection, mart_dir: Path, days: Sequence[date] | None,
                    footers: _Footers) -> tuple[int, int]:
    """Rows of a mart's published files: all of them (from the footers), and those of the
    window's days read back (all rows when there is no window or the mart has no date)."""
    files = sorted(mart_dir.glob("month=*/*.parquet")) if mart_dir.exists() else []
    if not files:
        return 0, 0
    total = sum(rows for rows, _ in footers.facts(con, files).values())
    undated = (mart_dir / f"month={UNDATED_MONTH}").exists()
    wanted = files if days is None or undated else [f for f in (_day_file(mart_dir, d) for d in days) if f.exists()]
    if not wanted:
        return int(total), 0
    read = con.execute("select count(*) from read_parquet(?)", [[str(f) for f in wanted]]).fetchall()[0][0]
    return int(total), read


def publish_exports(
    warehouse: str | Path,
    lake: str | Path,
    marts: Sequence[str],
    days: Iterable[date] | None = None,
    docs: Mapping[str, MartDoc] | None = None,
) -> ExportResult:
    """Export the marts (and the optional ones present) as Parquet and as `marts.duckdb`:
    the days of the run's window (`days`; None: every day) and any day found out of date."""
    days = None if days is None else sorted(set(days))
    with _connect_read_only(warehouse) as con:
        present = _tables(con)
        missing = [m for m in marts if m not in present]
        if missing:
            raise ValueError(
                f"the warehouse {warehouse} has no table {', '.join(missing)}: build the marts "
                "(inferledger run, or materialize the warehouse asset) before exporting them"
            )
        names = [*marts, *(m for m in OPTIONAL_MARTS if m in present and m not in marts)]
        warehouse_rows, warehouse_rows_in_window = _counts(con, names, days)
    out_dir = exports_dir(lake)
    footers = _Footers(_footers_path(out_dir))
    export_parquet(warehouse, out_dir, names, days, footers=footers)
    snapshot = marts_duckdb_path(warehouse)
    snapshot_rows = refresh_snapshot(warehouse, snapshot, names, docs, days)
    with duckdb.connect() as con:
        published = {m: _published_rows(con, out_dir / m, days, footers) for m in names}
    footers.save()
    return ExportResult(
        marts=names,
        days=days,
        parquet_dir=out_dir,
        snapshot=snapshot,
        warehouse_rows=warehouse_rows,
        snapshot_rows=snapshot_rows,
        parquet_rows={m: p[0] for m, p in published.items()},
        warehouse_rows_in_window=warehouse_rows_in_window,
        parquet_rows_in_window={m: p[1] for m, p in published.items()},
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
            "The marts for BI tools: Parquet under <lake parent>/exports/marts/<mart>/month=YYYY-MM/, "
            "one file a day (the days of the run replaced) and marts.duckdb beside the warehouse, "
            "replaced atomically, so dashboards can hold it open while the pipeline runs."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                EXPORT_CHECK,
                asset="marts_export",
                description="marts.duckdb, the Parquet files and the run's days in them hold as many rows as the warehouse marts.",
            )
        ],
    )
    def marts_export(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        window = context.partition_time_window
        days = days_in_window(window.start, window.end)
        result = publish_exports(
            storage.warehouse,
            storage.lake_path,
            [key.path[-1] for key in mart_keys],
            days,
            docs=mart_docs(dbt_project().manifest_path),
        )
        mismatches = result.mismatches
        mirrored = {}
        if storage.exports:
            mirror = mirror_to_s3(result.parquet_dir, storage.exports)
            context.log.info(f"exports mirrored to {mirror.uri}: {len(mirror.uploaded)} of {mirror.files} "
                             f"files uploaded ({mirror.bytes_uploaded / 1e6:.1f} MB), {len(mirror.deleted)} deleted")
            mirrored = {"exports_uri": dg.MetadataValue.text(mirror.uri),
                        "files_uploaded": dg.MetadataValue.int(len(mirror.uploaded)),
                        "files_deleted": dg.MetadataValue.int(len(mirror.deleted))}
        return dg.MaterializeResult(
            metadata={
                **mirrored,
                "days": dg.MetadataValue.json([d.isoformat() for d in days]),
                "parquet_dir": dg.MetadataValue.path(str(result.parquet_dir)),
                "marts_duckdb": dg.MetadataValue.path(str(result.snapshot)),
                "rows_in_window": dg.MetadataValue.json(result.parquet_rows_in_window),
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
