"""A small generated company run through the whole pipeline once per test session."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pipelines.config import Settings
from pipelines.demo.generate import generate
from pipelines.runner import run_range

START = date(2026, 10, 1)
DAYS = 4


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, seed=11, start=START, days=DAYS, requests_per_day=400, gpus=27)
    return landing


@pytest.fixture(scope="session")
def built(small_landing: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    out = tmp_path_factory.mktemp("warehouse")
    settings = Settings(landing=str(small_landing), lake=str(out / "lake"), warehouse=str(out / "warehouse.duckdb"))
    run_range(settings, START, date(2026, 10, DAYS))
    return settings
