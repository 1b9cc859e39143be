"""The report as a reader sees it: rendered by headless Chromium, every chart drawn, no errors."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

from pipelines.report import write_report
from tests.report.hand_marts import ANOMALIES_SQL, CONCENTRATION_SQL, write_hand_marts

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
CHARTS = {
    "cost_per_1m_tokens", "spend_by_provider", "spend_by_feature", "top_customers", "gpu_utilization",
    "idle_spend", "energy_per_1k_tokens", "anomaly_timeline", "concentration_hhi", "reconciliation_status",
}
# Each chart's drawn marks (points, bars, cells) with a non-empty box on the page.
MEASURE = """
els => els.map(svg => {
  const box = svg.getBoundingClientRect();
  const drawn = [...svg.querySelectorAll('.mark')].filter(m => {
    const b = m.getBoundingClientRect();
    return b.width > 0 && b.height > 0;
  });
  return {id: svg.dataset.chart, width: box.width, height: box.height, marks: drawn.length};
})
"""


def test_report_renders_in_headless_chromium_with_every_chart_drawn(tmp_path: Path) -> None:
    warehouse = write_hand_marts(tmp_path / "marts.duckdb", ANOMALIES_SQL, CONCENTRATION_SQL)
    report = write_report(warehouse, tmp_path / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    requested: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda req: requested.append(req.url))
            page.goto(report.as_uri(), wait_until="load")
            charts = page.eval_on_selector_all("svg.chart", MEASURE)
            title = page.title()
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requested == [report.as_uri()]  # nothing fetched but the file itself
    assert title == "inferledger report: 2026-10-01 to 2026-10-02"
    assert {c["id"] for c in charts} == CHARTS
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 40, chart
        assert chart["marks"] > 0, chart
    marks = {c["id"]: c["marks"] for c in charts}
    # 2 models x 2 days; 2 customers; 2 anomalies fired (the resolved row is no dot) + 2 cost points.
    assert marks["cost_per_1m_tokens"] == 4
    assert marks["top_customers"] == 2
    assert marks["anomaly_timeline"] == 4
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
