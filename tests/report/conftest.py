"""Fixtures for the BI exports and the report.

`built_bi`: a small generated company run through the whole pipeline once per session,
over a month boundary (Oct 31 and Nov 1), so the exports have two month partitions and
"this month vs last" has both months. `hand_marts`: a few mart rows written by hand,
whose report figures are computed by hand in the tests.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pipelines.config import Settings
from pipelines.demo.generate import generate
from pipelines.runner import run_range
from tests.report.hand_marts import write_hand_marts

START = date(2026, 10, 31)
END = date(2026, 11, 1)


@pytest.fixture(scope="session")
def built_bi(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("bi")
    generate(root / "landing", seed=5, start=START, days=2, requests_per_day=300, gpus=27)
    settings = Settings(landing=str(root / "landing"), lake=str(root / "lake"),
                        warehouse=str(root / "warehouse.duckdb"))
    run_range(settings, START, END)
    return settings


@pytest.fixture
def hand_marts(tmp_path: Path) -> Path:
    return write_hand_marts(tmp_path / "hand.duckdb")
