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
