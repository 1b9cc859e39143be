"""Readers for the sources inferledger ingests.

Each module reads one family of formats and returns polars frames in the normalized
schemas of `connectors.schemas`. Nothing here imports Dagster or knows the warehouse:
a connector can be used from a notebook.
"""

import os as _os
import sys as _sys

# Polars' allocator (jemalloc) hands pages freed for more than 0.5 s back to the kernel,
# and the next batch takes fresh ones, which the kernel must fault in and zero. A day's
# run frees and re-allocates gigabytes batch after batch. Kept 10 s, a production day's
# page faults fell from 9.8 M to 7.5 M, its kernel time from 33.6 to 26.2 s and its
# ingestion from 136.6 to 124.7 CPU s (averages of ten runs, bench/RESULTS.md, session 7),
# at ~0.4 GB more peak. Polars reads the setting once,
# when it is first imported, so it is set here, before any connector imports polars;
# `assets` and `pipelines` import this package first for the same reason. A value of
# _RJEM_MALLOC_CONF set by the user comes after ours and wins.
POLARS_ALLOCATOR_CONF = "dirty_decay_ms:10000,muzzy_decay_ms:10000"


def keep_freed_pages() -> bool:
    """Configure polars' allocator, unless polars is already loaded; whether it was set."""
    if "polars" in _sys.modules:
        return False
    user = _os.environ.get("_RJEM_MALLOC_CONF")
    if POLARS_ALLOCATOR_CONF not in (user or ""):  # in a child process it is already there
        _os.environ["_RJEM_MALLOC_CONF"] = POLARS_ALLOCATOR_CONF + (f",{user}" if user else "")
    return True


keep_freed_pages()
