"""assets/bin/dbt: dbt started cold, or handed to a process that imported dbt ahead of time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from assets.dbt_launcher import LAUNCHER, PYTHON_ENV, SOCKET_ENV, WarmDbt

REPO = Path(__file__).resolve().parents[2]
DBT_DIR = REPO / "dbt"
SEEDS = sorted(p.stem for p in (DBT_DIR / "seeds").glob("*.csv"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    env.update({
        PYTHON_ENV: sys.executable,
        "INFERLEDGER_LAKE": str(tmp_path / "lake"),
        "INFERLEDGER_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
    })
    env.update(extra)
    return env


def _dbt(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LAUNCHER), *args], check=False, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


LIST_SEEDS = ["ls", "--resource-type", "seed", "--output", "name", "--quiet",
              "--project-dir", ".", "--profiles-dir", ".", "--target-path", "{target}"]


def _list_seeds(tmp_path: Path, name: str) -> list[str]:
    return [a.replace("{target}", str(tmp_path / name)) for a in LIST_SEEDS]


def test_cold_launcher_runs_dbt_and_passes_its_exit_status(tmp_path: Path) -> None:
    listed = _dbt(_list_seeds(tmp_path, "cold"), _env(tmp_path), DBT_DIR)
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == SEEDS
    assert len(SEEDS) == 10

    usage = _dbt(["run", "--no-such-flag"], _env(tmp_path), DBT_DIR)
    assert usage.returncode == 2  # dbt's usage error
    assert "No such option" in usage.stderr


def test_warm_process_runs_the_invocation_with_the_callers_env_cwd_and_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The warm process starts without the warehouse path: the profile needs the caller's.
    monkeypatch.delenv("INFERLEDGER_WAREHOUSE", raising=False)
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    warm = WarmDbt(tmp_path)
    try:
        assert os.environ[SOCKET_ENV] == warm.path
        env = _env(tmp_path, **{SOCKET_ENV: warm.path})
        listed = _dbt(_list_seeds(tmp_path, "warm"), env, DBT_DIR)
        assert listed.returncode == 0, listed.stderr
        assert sorted(listed.stdout.split()) == SEEDS
        # It served its one invocation and ended with dbt's status; its socket is gone.
        assert warm.process.wait(timeout=60) == 0
        assert not Path(warm.path).exists()
        # The next invocation finds nobody waiting and starts dbt cold, with its own status.
        usage = _dbt(["run", "--no-such-flag"], env, DBT_DIR)
        assert usage.returncode == 2
        assert "No such option" in usage.stderr
    finally:
        warm.close()
    assert SOCKET_ENV not in os.environ


def test_warm_process_passes_a_failure_status_and_its_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    warm = WarmDbt(tmp_path)
    try:
        usage = _dbt(["run", "--no-such-flag"], _env(tmp_path, **{SOCKET_ENV: warm.path}), DBT_DIR)
        assert usage.returncode == 2
        assert "No such option" in usage.stderr  # written by the warm process to our stderr
        assert warm.process.wait(timeout=60) == 2
    finally:
        warm.close()


def test_an_unused_warm_process_is_stopped_on_close(tmp_path: Path) -> None:
    warm = WarmDbt(tmp_path)
    warm.close()
    assert warm.process.returncode is not None
    assert not Path(warm.path).exists()
    assert SOCKET_ENV not in os.environ
