"""A range run (the CLI's, the benchmark's) runs the lake checks as the daily job does: a
blocking check that fails stops the run before the marts."""

from __future__ import annotations

import gc
import gzip
import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.config import Settings
from pipelines.runner import LakeCheckFailed, run_range

from .conftest import START

DAY = date(2026, 10, 2)


def test_a_day_whose_gateway_log_stops_early_is_not_built(small_landing: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(small_landing, landing)
    # The day's spend log loses every request after 05:00: the gateway stopped writing.
    log = landing / "gateway_logs" / "litellm" / f"{DAY:%Y/%m/%d}" / "spend_logs-0.jsonl.gz"
    lines = gzip.decompress(log.read_bytes()).decode().splitlines()
    kept = [line for line in lines if json.loads(line)["startTime"] < f"{DAY}T05:00:00"]
    assert 0 < len(kept) < len(lines) // 3
    log.write_bytes(gzip.compress(("\n".join(kept) + "\n").encode()))

    settings = Settings(landing=str(landing), lake=str(tmp_path / "lake"), warehouse=str(tmp_path / "warehouse.duckdb"))
    report = run_range(settings, START, START)  # a whole day: every suite passes
    assert (report.checks_run, report.check_warnings) == (5, [])
    assert gc.get_freeze_count() == 0  # what the run froze out of the collector is back in it
    with pytest.raises(LakeCheckFailed, match="gateway_requests_expectations") as failure:
        run_range(settings, DAY, DAY)
    assert "expect_column_max_to_be_between(ts_start)" in str(failure.value)
    assert "2026-10-02..2026-10-02" in str(failure.value)
    assert gc.get_freeze_count() == 0  # a failed run unfreezes as well
    # The CLI says the same in one line, without a traceback, and exits 1.
    result = CliRunner().invoke(main, ["run", "--landing", str(landing), "--warehouse", settings.warehouse,
                                       "--start", str(DAY), "--end", str(DAY)])
    assert result.exit_code == 1
    assert "Error: lake checks failed for 2026-10-02..2026-10-02" in result.output
    assert "Traceback" not in result.output
    with duckdb.connect(settings.warehouse, read_only=True) as con:  # the marts still hold day 1 only
        days = con.sql("select distinct usage_date from cost_per_token_daily order by 1").fetchall()
    assert days == [(START,)]
