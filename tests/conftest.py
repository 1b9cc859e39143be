"""Shared test set-up: no network calls from dbt, and where the conformance files are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DBT_VERSION_CHECK", "false")

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = REPO.parent / "shared" / "conformance"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    if not CONFORMANCE.exists():
        pytest.fail(f"conformance data not found at {CONFORMANCE}: the shared/ folder must sit beside the repo")
    return CONFORMANCE


@pytest.fixture(scope="session")
def demo_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default 30-day demo, generated and run through the whole pipeline once.

    Returns the data folder: landing/, lake/ and warehouse.duckdb, as `make demo` lays them.
    """
    from datetime import date, timedelta

    from pipelines.config import Settings
    from pipelines.demo.generate import generate
    from pipelines.runner import run_range

    data = tmp_path_factory.mktemp("demo_month")
    generate(data / "landing")
    settings = Settings(
        landing=str(data / "landing"), lake=str(data / "lake"), warehouse=str(data / "warehouse.duckdb")
    )
    start = date(2026, 10, 1)
    run_range(settings, start, start + timedelta(days=29))
    return data
