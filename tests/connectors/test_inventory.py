"""Fleet inventory: validity windows, overlaps, bad rows, and the demo writer's file."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from connectors.inventory import read_inventory
from connectors.landing import LocalStore
from connectors.result import SourceFormatError
from connectors.schemas import FLEET_INVENTORY
from pipelines.demo.inventory import write_inventory
from pipelines.demo.world import build_world

HEADER = "hostname,provider,resource_id,deployment,valid_from,valid_to\n"


def _store(tmp_path: Path, files: dict[str, str]) -> LocalStore:
    for name, text in files.items():
        path = tmp_path / "inventory" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return LocalStore(tmp_path)


def test_validity_windows_parse_dates_and_timestamps(tmp_path: Path) -> None:
    store = _store(tmp_path, {"fleet.csv": HEADER + (
        "node-a,AWS,i-0aa,llama,2026-10-01,2026-10-15\n"
        "node-a,AWS,i-0aa,qwen,2026-10-15T00:00:00Z,\n"
        " node-b ,Microsoft,/subscriptions/x/vm-b,qwen,2026-10-01T06:00:00+02:00,\n"
    )})
    result = read_inventory(store)
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (3, 3, 0)
    assert result.rows.schema == pl.Schema(FLEET_INVENTORY)
    rows = result.rows.rows(named=True)
    utc = timezone.utc
    assert rows[0]["valid_from"] == datetime(2026, 10, 1, tzinfo=utc)
    assert rows[0]["valid_to"] == datetime(2026, 10, 15, tzinfo=utc)
    assert rows[1]["deployment"] == "qwen" and rows[1]["valid_to"] is None
    assert rows[2]["hostname"] == "node-b"
    assert rows[2]["valid_from"] == datetime(2026, 10, 1, 4, tzinfo=utc)


def test_overlapping_rows_of_one_host_are_all_quarantined(tmp_path: Path) -> None:
    store = _store(tmp_path, {
        "a.csv": HEADER + "node-a,AWS,i-0aa,llama,2026-10-01,\nnode-c,AWS,i-0cc,,2026-10-01,\n",
        "b.csv": HEADER + (
            "node-a,AWS,i-0aa,qwen,2026-10-10,2026-10-12\n"
            "node-c,AWS,i-0cc,qwen,not-a-date,\n"
            ",AWS,i-0dd,qwen,2026-10-01,\n"
            "node-e,AWS,i-0ee,qwen,2026-10-05,2026-10-01\n"
        ),
    })
    result = read_inventory(store)
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (6, 1, 5)
    assert result.rows["hostname"].to_list() == ["node-c"]
    q = {(r["source_file"], r["row_number"]): r["reason"]
         for r in result.quarantine.iter_rows(named=True)}
    assert q[("inventory/a.csv", 1)] == (
        "validity [2026-10-01, open) overlaps another inventory row for hostname 'node-a'")
    assert q[("inventory/b.csv", 1)].startswith("validity [2026-10-10, 2026-10-12) overlaps")
    assert q[("inventory/b.csv", 2)].startswith("unparseable valid_from 'not-a-date'")
    assert q[("inventory/b.csv", 3)] == "missing hostname"
    assert q[("inventory/b.csv", 4)] == "valid_to 2026-10-01 is not after valid_from 2026-10-05"


def test_adjacent_windows_do_not_overlap(tmp_path: Path) -> None:
    store = _store(tmp_path, {"fleet.csv": HEADER + (
        "node-a,AWS,i-0aa,qwen,2026-10-05,\n"
        "node-a,AWS,i-0aa,llama,2026-10-01,2026-10-05\n"
    )})
    assert read_inventory(store).rows["deployment"].to_list() == ["llama", "qwen"]


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    text = "hostname,provider,deployment,valid_from\nx,AWS,q,2026-10-01\n"
    store = _store(tmp_path, {"fleet.csv": text})
    with pytest.raises(SourceFormatError, match=r"inventory/fleet\.csv.*resource_id"):
        read_inventory(store)


def test_demo_inventory_lists_every_deployed_instance(tmp_path: Path) -> None:
    world = build_world(days=2, requests_per_day=200)
    info = write_inventory(world, tmp_path)
    result = read_inventory(LocalStore(tmp_path))
    deployed = [i for i in world.instances if i.deployment is not None]
    assert info["rows"] == len(deployed) == result.rows_written == 5
    assert result.rows_quarantined == 0
    spare = next(i for i in world.instances if i.deployment is None)
    assert spare.hostname not in result.rows["hostname"].to_list()
    late = next(i for i in world.instances if i.first_day)
    row = result.rows.filter(pl.col("hostname") == late.hostname).row(0, named=True)
    assert row["valid_from"] == datetime(2026, 10, 1 + late.first_day, tzinfo=timezone.utc)
