"""The Dagster UI of `make dev`: a real webserver on loopback, the asset graph in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
LOCATION = "pipelines.definitions"
# The marts DESIGN.md promises BI users (others may be added beside them).
CORE_MARTS = {
    "fct_billing_line_items", "fct_inference_costs_hourly", "cost_per_token_daily",
    "feature_costs_daily", "customer_costs_daily", "billing_reconciliation_daily",
}
ASSETS_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    description
    assetChecksOrError { ... on AssetChecks { checks { name } } }
    metadataEntries { __typename ... on TableSchemaMetadataEntry { schema { columns { name type } } } }
  }
  repositoriesOrError {
    ... on RepositoryConnection { nodes { name location { name } schedules { name } sensors { name } } }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dagster-webserver` on the repository's workspace.yaml, with a throwaway DAGSTER_HOME."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path_factory.mktemp("ui_data")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "INFERLEDGER_LANDING": str(data / "landing"),
        "INFERLEDGER_LAKE": str(data / "lake"),
        "INFERLEDGER_WAREHOUSE": str(data / "warehouse.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with open(home / "webserver.log", "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
             "-w", "workspace.yaml"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_ready(base, proc, home / "webserver.log")
            yield base
        finally:
            proc.send_signal(signal.SIGTERM)  # it stops its code server too
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_ready(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, f"dagster-webserver exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            assert time.monotonic() < deadline, "dagster-webserver did not answer /server_info in 180 s"
            time.sleep(0.5)


def _graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_graphql_lists_the_marts_with_docs_schemas_checks_and_the_schedule(webserver: str) -> None:
    data = _graphql(webserver, ASSETS_QUERY)
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    marts = {key for key, n in nodes.items() if n["groupName"] == "marts"}
    assert CORE_MARTS <= marts
    for key in marts:
        node = nodes[key]
        assert node["description"], key
        schemas = [m for m in node["metadataEntries"] if m["__typename"] == "TableSchemaMetadataEntry"]
        assert schemas and schemas[0]["schema"]["columns"], f"{key} has no column schema"
        assert node["assetChecksOrError"]["checks"], f"{key} has no checks"
    cpt = nodes["cost_per_token_daily"]
    columns = {c["name"]: c["type"] for c in
               next(m for m in cpt["metadataEntries"] if m["__typename"] == "TableSchemaMetadataEntry")["schema"]["columns"]}
    assert columns["cost_per_1m_tokens"] == "decimal(38,12)"
    checks = {c["name"] for c in cpt["assetChecksOrError"]["checks"]}
    assert "unique_combination_of_columns_cost_per_token_daily_usage_date__provider__model__deployment" in checks
    export = nodes["marts_export"]
    assert export["groupName"] == "exports"
    assert {c["name"] for c in export["assetChecksOrError"]["checks"]} == {"exports_match_warehouse"}
    (repo,) = data["repositoriesOrError"]["nodes"]
    assert repo["location"]["name"] == LOCATION
    assert "daily_refresh_schedule" in {s["name"] for s in repo["schedules"]}


def test_asset_graph_in_chromium_shows_the_marts_and_their_checks(webserver: str) -> None:
    nodes = _graphql(webserver, ASSETS_QUERY)["assetNodes"]
    checks = next(n for n in nodes if n["assetKey"]["path"] == ["cost_per_token_daily"])["assetChecksOrError"]["checks"]
    marts = [n for n in nodes if n["groupName"] == "marts"]
    ARTIFACTS.mkdir(exist_ok=True)
    page_errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The graph draws only the nodes inside the window: make it tall enough for every mart.
            page = browser.new_page(viewport={"width": 1600, "height": max(1600, 280 * len(marts))})
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.goto(f"{webserver}/locations/__repository__@{LOCATION}/asset-groups/marts/lineage")
            _skip_welcome_dialog(page)
            for mart in sorted(CORE_MARTS):
                page.get_by_text(mart, exact=True).first.wait_for(state="visible", timeout=60_000)
            page.get_by_text("Asset checks").first.wait_for(state="visible", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "dagster_marts_graph.png"))
            page.goto(f"{webserver}/assets/cost_per_token_daily?view=checks")
            _skip_welcome_dialog(page)
            page.get_by_text(f"Checks ({len(checks)})").wait_for(state="visible", timeout=60_000)
            for check in checks:
                # Long names are shown truncated; the full name is the row's title.
                page.locator(f'[title="{check["name"]}"]').first.wait_for(state="visible", timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "dagster_mart_checks.png"))
        finally:
            browser.close()
    assert page_errors == []


def _skip_welcome_dialog(page: Page) -> None:
    """A fresh DAGSTER_HOME greets the first visit with a newsletter dialog over the graph."""
    try:
        page.get_by_role("button", name="Skip").click(timeout=5_000)
    except PlaywrightTimeout:  # no dialog this time: nothing to dismiss
        pass
