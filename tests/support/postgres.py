"""A real PostgreSQL 15 server on loopback, in a throw-away data directory.

    with postgres_server() as dsn:   # postgresql://postgres@127.0.0.1:<port>/postgres
        ...

initdb refuses to run as root, so when the tests run as root the cluster is created and
run as the `postgres` user (the Debian package creates it), in a directory that user owns.
A missing binary fails the test with what to install; it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.prometheus import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextmanager
def postgres_server() -> Iterator[str]:
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not initdb.exists() or not pg_ctl.exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN} has no initdb/pg_ctl): run "
                    "`make system-deps` (apt-get install postgresql); these tests never skip")
    root = Path(tempfile.mkdtemp(prefix="inferledger-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, log, port = root / "data", root / "postgres.log", free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_postgres, *args], check=False, capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr}\n{tail}")

    try:
        run(str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync")
        run(str(pg_ctl), "-D", str(data), "-l", str(log), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
