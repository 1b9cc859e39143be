"""Polars' allocator keeps freed pages 10 s in every process that runs the pipeline."""

import os
import subprocess
import sys

import connectors

SHOW = "import {first}, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"


def _conf_seen(first: str, user: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    if user is not None:
        env["_RJEM_MALLOC_CONF"] = user
    out = subprocess.run([sys.executable, "-c", SHOW.format(first=first)], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_each_package_sets_the_decay_before_polars_loads():
    for first in ("connectors.litellm", "assets.ingestion", "pipelines.runner"):
        # polars puts its own defaults (0.5 s and 1 s) first; the last value wins.
        assert _conf_seen(first) == ("dirty_decay_ms:500,muzzy_decay_ms:1000,"
                                     "dirty_decay_ms:10000,muzzy_decay_ms:10000"), first


def test_a_users_setting_comes_last_and_wins():
    assert _conf_seen("pipelines", user="dirty_decay_ms:0").endswith(
        "dirty_decay_ms:10000,muzzy_decay_ms:10000,dirty_decay_ms:0")


def test_too_late_once_polars_is_loaded():
    import polars  # noqa: F401  (already loaded in this test process)

    assert connectors.keep_freed_pages() is False
