"""The HTML report: hand-computed figures, the same numbers as the marts, self-contained."""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import duckdb
from click.testing import CliRunner

from pipelines.config import Settings
from pipelines.report import money, read_report_data, render_report, report_command
from tests.report.hand_marts import (
    ANOMALIES_SQL,
    CONCENTRATION_SQL,
    GPU_RATES_SQL,
    write_hand_marts,
)


class _Page(HTMLParser):
    """Collects chart marks (data-* attributes), table rows and KPI tiles of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.tables: dict[str, list[list[str]]] = defaultdict(list)
        self.kpis: dict[str, str] = {}
        self._chart = self._table = self._kpi = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if tag == "svg" and "data-chart" in a:
            self._chart = a["data-chart"]
        elif self._chart and "data-value" in a:
            self.marks[self._chart].append(a)
        elif tag == "table":
            self._table = a.get("data-table")
        elif tag == "tr" and self._table:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "div" and "data-kpi" in a:
            self._kpi = a["data-kpi"]
        elif tag == "b" and self._kpi:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "b" and self._kpi and self._cell is not None:
            self.kpis[self._kpi] = "".join(self._cell)
            self._cell = self._kpi = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    return page


def test_kpis_and_customer_margins_are_the_hand_computed_figures(hand_marts: Path) -> None:
    page = _parse(render_report(read_report_data(hand_marts)))
    # 30 + 5 + 25 + 2.5 = 62.50 over 4.5M tokens: 13.888... per 1M; idle 10 + 15 = 25.00 = 40%.
    assert page.kpis["total-cost"] == "$62.50"
    assert page.kpis["tokens"] == "4,500,000"
    assert page.kpis["cost-per-1m"] == "$13.89"
    assert page.kpis["idle-cost"] == "$25.00"
    assert page.kpis["reconciliation"] == "1/2"
    customers = {row[0]: row for row in page.tables["customers"]}
    assert "__idle__" not in customers
    # acme: cost 20 + 12.5, revenue 30 + 20, margin 10 + 7.5 = 35% of revenue; 32.5 per 2.5M tokens.
    assert customers["cust_acme"] == ["cust_acme", "185", "2,500,000", "$32.50", "$0.0130", "$50.00", "$17.50", "35.0%"]
    assert customers["cust_globex"][3:] == ["$5.00", "$0.0033", "n/a", "n/a", "n/a"]
    assert list(customers) == ["cust_acme", "cust_globex"]  # by cost, descending


def test_reconciliation_shows_the_failed_day(hand_marts: Path) -> None:
    page = _parse(render_report(read_report_data(hand_marts)))
    assert page.tables["reconciliation"] == [
        ["AWS USD", "1/2", "$55.02", "$30.00", "$25.00", "$0.00", "$0.00", "$2.00", "$0.020000", "FAILED"]
    ]
    cells = {m["data-x"]: m["data-value"] for m in page.marks["reconciliation_status"]}
    assert cells == {"2026-10-01": "passed", "2026-10-02": "failed"}


def test_chart_marks_carry_the_mart_values(hand_marts: Path) -> None:
    page = _parse(render_report(read_report_data(hand_marts)))
    per_1m = {(m["data-series"], m["data-x"]): Decimal(m["data-value"]) for m in page.marks["cost_per_1m_tokens"]}
    assert per_1m == {
        ("llama-8b (llama-8b-dep)", "2026-10-01"): Decimal(15), ("llama-8b (llama-8b-dep)", "2026-10-02"): Decimal(25),
        ("gpt-4o (gpt-4o)", "2026-10-01"): Decimal(5), ("gpt-4o (gpt-4o)", "2026-10-02"): Decimal(5),
    }
    features = {(m["data-series"], m["data-x"]): Decimal(m["data-value"]) for m in page.marks["spend_by_feature"]}
    assert features[("idle GPUs", "2026-10-02")] == Decimal(15)
    assert features[("chat", "2026-10-01")] == Decimal(25)
    utilization = {m["data-x"]: float(m["data-value"]) for m in page.marks["gpu_utilization"]}
    assert utilization == {"2026-10-01": 0.5, "2026-10-02": 0.4}  # APIs have no GPU line


def test_missing_anomaly_and_concentration_marts_are_said_not_hidden(hand_marts: Path) -> None:
    text = render_report(read_report_data(hand_marts))
    assert "no cost_anomalies mart yet" in text
    assert "no supplier_concentration mart yet" in text


def test_anomalies_and_concentration_are_drawn_when_their_marts_exist(tmp_path: Path) -> None:
    path = write_hand_marts(tmp_path / "full.duckdb", ANOMALIES_SQL, CONCENTRATION_SQL)
    page = _parse(render_report(read_report_data(path)))
    anomalies = page.tables["anomalies"]
    # By dollar impact; the row that resolves incident k2 is not an anomaly of its own.
    assert [row[:4] for row in anomalies] == [
        ["2026-10-02", "cost", "customer", "cust_acme"], ["2026-10-01", "cost", "feature", "chat"]
    ]
    assert anomalies[0][4:] == ["$12.50", "$5.00", "$7.50", "150.0%", "critical", "triggered"]
    dots = [m for m in page.marks["anomaly_timeline"] if m["data-series"] == "anomaly"]
    # Each dot sits on its day's total cost: Oct 2 = 25 + 2.5.
    assert sorted((m["data-x"], Decimal(m["data-value"])) for m in dots) == [
        ("2026-10-01", Decimal(35)), ("2026-10-02", Decimal("27.5"))
    ]
    # The trailing 30 days, latest period, per dimension; 10,000 / 8,200 = 1.2 effective suppliers.
    assert page.tables["concentration"] == [
        ["cloud_provider", "2026-10-02", "8,200", "1.2", "AWS", "90.0%", "2", "highly concentrated"],
        ["model_provider", "2026-10-02", "1,500", "6.7", "meta", "30.0%", "5", "moderately concentrated"],
    ]
    assert {m["data-series"]: float(m["data-value"]) for m in page.marks["concentration_hhi"]} == {
        "cloud_provider": 8200.0, "model_provider": 1500.0
    }


def test_gpu_rates_are_the_hand_computed_figures(tmp_path: Path, hand_marts: Path) -> None:
    assert "no gpu_rates_daily mart yet" in render_report(read_report_data(hand_marts))
    path = write_hand_marts(tmp_path / "rates.duckdb", GPU_RATES_SQL)
    page = _parse(render_report(read_report_data(path)))
    # H100: 16 + 6.5 GPU-hours (the second day's instance ran 48.75 minutes), 199.885 paid
    # against 276.525 list: 8.8838 against 12.29 a GPU-hour, 1 - 199.885 / 276.525 = 27.7%
    # saved, 196.64 of 276.525 under a commitment = 71.1%. The A100's bill had no list cost:
    # its rate is n/a, not 0. Most GPU-hours first.
    assert page.tables["gpu_rates"] == [
        ["Microsoft", "A100", "Standard_NC24ads_A100_v4", "24", "$8.1200", "n/a", "n/a", "n/a"],
        ["AWS", "H100", "p5.48xlarge", "22.5", "$8.8838", "$12.2900", "27.7%", "71.1%"],
    ]


def test_report_is_one_self_contained_file_without_script(hand_marts: Path) -> None:
    text = render_report(read_report_data(hand_marts))
    page = _parse(text)
    assert not page.tags & {"script", "link", "img", "iframe", "object"}
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace is a name, never fetched
    assert "@import" not in text and "url(" not in text


def test_report_numbers_match_the_marts_of_a_built_warehouse(built_bi: Settings) -> None:
    page = _parse(render_report(read_report_data(built_bi.warehouse)))
    with duckdb.connect(built_bi.warehouse, read_only=True) as con:
        total = con.execute("select sum(fully_loaded_cost) from cost_per_token_daily").fetchall()[0][0]
        per_1m = con.execute(
            "select model || ' (' || deployment || ')', usage_date, cost_per_1m_tokens from cost_per_token_daily "
            "where cost_per_1m_tokens is not null"
        ).fetchall()
        daily_by_provider = dict(con.execute(
            "select usage_date, sum(fully_loaded_cost) from cost_per_token_daily group by 1").fetchall())
        customers = con.execute(
            "select customer_id, sum(cost) from customer_costs_daily where customer_id <> '__idle__' "
            "group by 1 order by 2 desc limit 10"
        ).fetchall()
        recon = con.execute("select count(*), count(*) filter (where passed) from billing_reconciliation_daily").fetchall()[0]
    assert page.kpis["total-cost"] == money(total)
    assert {(m["data-series"], m["data-x"]): Decimal(m["data-value"]) for m in page.marks["cost_per_1m_tokens"]} == {
        (series, day.isoformat()): value for series, day, value in per_1m
    }
    stacked: dict[str, Decimal] = defaultdict(Decimal)
    for m in page.marks["spend_by_provider"]:
        stacked[m["data-x"]] += Decimal(m["data-value"])
    assert stacked == {day.isoformat(): cost for day, cost in daily_by_provider.items()}
    assert [(row[0], row[3]) for row in page.tables["customers"]] == [(c, money(cost)) for c, cost in customers]
    assert page.kpis["reconciliation"] == f"{recon[1]}/{recon[0]}"
    assert len(customers) >= 5 and len(per_1m) >= 10


def test_report_command_writes_the_file_and_explains_a_missing_warehouse(hand_marts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(report_command, ["--warehouse", str(hand_marts), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    missing = CliRunner().invoke(report_command, ["--warehouse", str(tmp_path / "nope.duckdb"), "--out", str(out)])
    assert missing.exit_code != 0
    assert "run `inferledger demo`" in missing.output


def test_write_report_refuses_a_file_without_marts(tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    result = CliRunner().invoke(report_command, ["--warehouse", str(empty), "--out", str(tmp_path / "r.html")])
    assert result.exit_code != 0
    assert "has no cost_per_token_daily" in result.output
    assert not (tmp_path / "r.html").exists()
