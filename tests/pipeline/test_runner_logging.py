"""Ingestion runs side by side in threads must not reconfigure Python logging mid-run."""

from __future__ import annotations

import logging.config
import shutil
from pathlib import Path

import dagster as dg
import pytest

from pipelines.runner import run_logging_is_thread_safe

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def _persistent(home: Path, extra: str = "") -> dg.DagsterInstance:
    home.mkdir()
    shutil.copy(REPO_DAGSTER_YAML, home / "dagster.yaml")
    if extra:
        with (home / "dagster.yaml").open("a") as f:
            f.write(extra)
    return dg.DagsterInstance.from_config(str(home))


def test_runs_on_our_instance_leave_logging_alone(tmp_path: Path, monkeypatch) -> None:
    """dagster.yaml names no log handlers: a run's start must not call dictConfig, which
    closes every handler in the process under logging's lock (a deadlock against a run
    emitting in the other ingestion thread: the CLI hung on it)."""
    instance = _persistent(tmp_path / "home")
    calls = []
    monkeypatch.setattr(logging.config, "dictConfig", lambda conf: calls.append(conf))
    assert instance.get_handlers()  # unpatched, a persistent instance calls dictConfig here
    assert len(calls) == 1
    assert run_logging_is_thread_safe(instance)
    handlers = instance.get_handlers()
    assert len(calls) == 1  # no more calls
    assert [type(h).__name__ for h in handlers] == ["_EventListenerLogHandler"]
    assert run_logging_is_thread_safe(dg.DagsterInstance.ephemeral())


def test_named_log_handlers_make_the_runs_go_one_after_the_other(tmp_path: Path) -> None:
    instance = _persistent(tmp_path / "home", extra="""
python_logs:
  dagster_handler_config:
    handlers:
      console:
        class: logging.StreamHandler
        level: INFO
""")
    assert not run_logging_is_thread_safe(instance)
    assert len(instance.get_handlers()) == 2  # Dagster's own handler and the one named


def test_ephemeral_instances_never_configure_logging(monkeypatch) -> None:
    monkeypatch.setattr(logging.config, "dictConfig", lambda conf: pytest.fail("dictConfig"))
    assert len(dg.DagsterInstance.ephemeral().get_handlers()) == 1
