"""A planned event announced after its day paged re-judges that day (planned_events_sensor).

The sensor reads the real landing folder and keeps its cursor as Dagster would; the run
it requests is executed against a copy of the demo month's warehouse, where Pied Piper's
onboarding (2026-10-21) first pages and, once announced, is kept as planned.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.anomalies import cost_anomalies
from assets.resources import StorageResource
from pipelines.sensors_planned import build_planned_events_sensor, days_to_rejudge

HEADER = "dimension,key,start_date,end_date,description\n"
PIEDPIPER = "customer,cust_piedpiper,2026-10-20,2026-10-22,Pied Piper onboarding\n"
LAUNCH = "feature,code-review,2026-10-27,2026-10-28,code review GA launch\n"


def _tick(sensor: dg.SensorDefinition, storage: StorageResource, cursor: str | None
          ) -> dg.SensorResult:
    context = dg.build_sensor_context(resources={"storage": storage}, cursor=cursor)
    return sensor(context)


def _write(landing: Path, text: str) -> None:
    (landing / "config").mkdir(parents=True, exist_ok=True)
    (landing / "config" / "planned_events.csv").write_text(text)


def _range(request: dg.RunRequest) -> tuple[str, str]:
    if request.partition_key:
        return request.partition_key, request.partition_key
    return (request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"])


def test_days_to_rejudge_are_the_past_days_of_changed_events() -> None:
    launch = ("feature", "code-review", "2026-10-27", "2026-10-28", "GA")
    onboarding = ("customer", "cust_piedpiper", "2026-10-20", "2026-10-22", "onboarding")
    today = date(2026, 10, 28)
    assert days_to_rejudge([launch], [launch], today) == []
    assert days_to_rejudge([launch], [launch, onboarding], today) == [
        date(2026, 10, 20), date(2026, 10, 21), date(2026, 10, 22)]
    # Withdrawn: its days are judged again too (they may page now).
    assert days_to_rejudge([launch, onboarding], [onboarding], today) == [
        date(2026, 10, 27), date(2026, 10, 28)]
    # A reworded description changes what the alert says: the days are judged again.
    reworded = (*launch[:4], "GA, 2x traffic")
    assert days_to_rejudge([launch], [reworded], today) == [date(2026, 10, 27), date(2026, 10, 28)]
    # Days after today are not partitions yet: their runs will read the file.
    assert days_to_rejudge([], [launch], date(2026, 10, 27)) == [date(2026, 10, 27)]


def test_the_sensor_requests_the_changed_days_once_and_waits_out_a_bad_file(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    storage = StorageResource(landing=str(landing), lake=str(tmp_path / "lake"),
                              warehouse=str(tmp_path / "warehouse.duckdb"))
    sensor = build_planned_events_sensor()
    first = _tick(sensor, storage, None)
    assert first.skip_reason.skip_message == "baseline recorded"
    assert json.loads(first.cursor) == {"token": None, "events": []}

    _write(landing, HEADER + PIEDPIPER)
    added = _tick(sensor, storage, first.cursor)
    assert [_range(r) for r in added.run_requests] == [("2026-10-20", "2026-10-22")]
    assert added.run_requests[0].tags["inferledger/trigger"] == "planned_events_sensor"
    assert added.run_requests[0].run_key.startswith("planned:")
    same = _tick(sensor, storage, added.cursor)
    assert same.skip_reason.skip_message == "planned events unchanged"

    # A malformed edit: nothing is requested and the cursor stays, so the fix triggers.
    _write(landing, HEADER + PIEDPIPER + "feature,code-review,2026-10-27,tomorrow,launch\n")
    bad = _tick(sensor, storage, added.cursor)
    assert "unreadable" in bad.skip_reason.skip_message
    assert "line 3" in bad.skip_reason.skip_message
    assert bad.cursor == added.cursor
    _write(landing, HEADER + PIEDPIPER + LAUNCH)
    fixed = _tick(sensor, storage, bad.cursor)
    assert [_range(r) for r in fixed.run_requests] == [("2026-10-27", "2026-10-28")]

    # The file removed: every event it held is withdrawn.
    (landing / "config" / "planned_events.csv").unlink()
    removed = _tick(sensor, storage, fixed.cursor)
    assert [_range(r) for r in removed.run_requests] == [
        ("2026-10-20", "2026-10-22"), ("2026-10-27", "2026-10-28")]
    assert json.loads(removed.cursor) == {"token": None, "events": []}


@pytest.fixture(scope="module")
def demo(demo_month: Path) -> Path:
    return demo_month


def _piedpiper(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(
            "select usage_date, severity, explained_by from cost_anomalies where grain = 'day' "
            "and dimension = 'customer' and key = 'cust_piedpiper' and status = 'triggered'"
        ).fetchall()


def test_an_onboarding_announced_after_it_paged_is_judged_again_as_planned(
        demo: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(demo / "warehouse.duckdb", warehouse)
    landing = tmp_path / "landing"
    landing.mkdir()
    storage = StorageResource(landing=str(landing), lake=str(demo / "lake"), warehouse=str(warehouse))
    october = {"dagster/asset_partition_range_start": "2026-10-01",
               "dagster/asset_partition_range_end": "2026-10-30"}
    assert dg.materialize([cost_anomalies], resources={"storage": storage}, tags=october).success
    assert _piedpiper(warehouse) == [(date(2026, 10, 21), "critical", None)]  # it paged

    sensor = build_planned_events_sensor()
    baseline = _tick(sensor, storage, None)
    _write(landing, HEADER + PIEDPIPER)
    (request,) = _tick(sensor, storage, baseline.cursor).run_requests
    assert _range(request) == ("2026-10-20", "2026-10-22")
    rerun = dg.materialize([cost_anomalies], resources={"storage": storage}, tags=request.tags)
    assert rerun.success
    assert _piedpiper(warehouse) == [(date(2026, 10, 21), "info", "planned: Pied Piper onboarding")]
