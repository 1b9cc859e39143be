"""A real Prometheus server on loopback, its TSDB backfilled from OpenMetrics text.

    with prometheus_server(openmetrics_text) as base_url:
        ...  # http://127.0.0.1:<port>, /api/v1/query_range answers from the backfill

The Debian package's binaries are used (`make test` installs them); a missing binary fails
the test with what to install, it never skips. The retention is 100 years because it counts
back from the newest block: with the default, old backfilled blocks are deleted at start-up.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PROMETHEUS = "prometheus"
PROMTOOL = "promtool"


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: run `make system-deps` (apt-get install "
                    f"{package}); these tests use the real server and never skip")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prometheus_server(openmetrics: str) -> Iterator[str]:
    """Backfill `openmetrics` (ending in `# EOF`) into a fresh TSDB and serve it."""
    prometheus = require_binary(PROMETHEUS, "prometheus")
    promtool = require_binary(PROMTOOL, "prometheus")
    root = Path(tempfile.mkdtemp(prefix="inferledger-prom-"))
    try:
        data, source = root / "data", root / "backfill.om"
        source.write_text(openmetrics)
        subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source),
                        str(data)], check=True, capture_output=True, timeout=60)
        config = root / "prometheus.yml"
        config.write_text("global: {scrape_interval: 60s}\nscrape_configs: []\n")
        port = free_port()
        log = (root / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
            stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(f"{base_url}/-/ready", process, root / "prometheus.log")
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"prometheus not ready after {timeout_s} s:\n{log.read_text()[-2000:]}")
