"""The visual report: one self-contained HTML file that finance can open, print or forward.

Every figure is read from the marts (read-only) and drawn here as inline SVG: no script,
no stylesheet or font from the network, so the file looks the same offline, attached to
an e-mail or archived next to the month's close. Each mark in a chart carries its exact
mart value in `data-value` (and a hover title), so the picture can be checked against
the numbers.

Sections whose mart does not exist yet (`cost_anomalies`, `supplier_concentration`) say
so instead of disappearing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import click
import duckdb

Number = Decimal | float | int
SeriesData = dict[str, dict[date, Number]]

REQUIRED_MARTS = ("cost_per_token_daily", "customer_costs_daily", "feature_costs_daily", "billing_reconciliation_daily")
IDLE = "__idle__"
TOP_CUSTOMERS = 10
TOP_ANOMALIES = 20
# HHI bands of the US Merger Guidelines: above 1,800 highly concentrated (2023); the
# 1,000 line is the classic lower edge of "moderately concentrated".
HHI_BANDS = ((0, 1000, "#e3f1e0", "unconcentrated (below 1,000)"),
             (1000, 1800, "#fbefd5", "moderately concentrated (1,000 to 1,800)"),
             (1800, 10000, "#f8dcdc", "highly concentrated (above 1,800)"))
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")
IDLE_COLOR = "#c9c9c9"
SEVERITY_COLORS = {"critical": "#b2182b", "high": "#d6604d", "major": "#d6604d", "warning": "#f4a582",
                   "medium": "#f4a582", "low": "#fddbc7", "info": "#fddbc7"}

# Chart geometry (SVG user units; the viewBox scales it to the page).
WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 14, 34


# ----------------------------------------------------------------------------- data


@dataclass
class Anomaly:
    day: date
    metric: str
    dimension: str
    key: str
    actual: Decimal | None
    expected: Decimal | None
    impact_usd: Decimal | None
    impact_pct: float | None
    severity: str
    status: str


@dataclass
class Concentration:
    dimension: str
    as_of: date | None
    hhi: float
    top_supplier: str
    top_share: float | None
    supplier_count: int | None
    risk_level: str


@dataclass
class ReportData:
    source: str
    days: list[date]
    total_cost: Decimal
    total_tokens: int
    requests: int
    idle_cost: Decimal
    model_cost_per_1m: SeriesData  # "model (deployment)" -> day -> cost_per_1m_tokens
    spend_by_provider: SeriesData
    spend_by_feature: SeriesData
    daily_cost: dict[date, Decimal]
    customers: list[tuple]  # customer, requests, tokens, cost, revenue, gross_margin
    gpu_utilization: SeriesData  # deployment -> day -> gpu_utilization
    idle_by_deployment: list[tuple]  # deployment, idle_cost, fully_loaded_cost
    energy: SeriesData  # deployment -> day -> wh_per_1k_tokens
    reconciliation: list[tuple]  # provider, currency, days, passed, in scope, allocated, idle, shared,
    #                              unattributed, out of scope, max |residual|
    reconciliation_days: dict[str, dict[date, bool]]  # "provider currency" -> day -> passed
    anomalies: list[Anomaly] | None = None  # None: no cost_anomalies mart in this warehouse
    # provider, gpu_model, instance_type, gpu_hours, effective and list USD per GPU-hour,
    # savings rate, commitment coverage (the list-based three None where a day lacked ListCost)
    gpu_rates: list[tuple] | None = None  # None: no gpu_rates_daily mart in this warehouse
    concentration: list[Concentration] | None = None
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def cost_per_1m(self) -> Decimal | None:
        return self.total_cost * 1_000_000 / self.total_tokens if self.total_tokens else None


def _pivot(rows: Iterable[tuple]) -> SeriesData:
    """(series, day, value) rows into series -> day -> value, nulls left out (gaps, not zeros)."""
    out: SeriesData = {}
    for name, day, value in rows:
        out.setdefault(name, {})
        if value is not None:
            out[name][day] = value
    return out


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'main' and table_name = ? order by ordinal_position",
        [table],
    ).fetchall()
    return dict(rows)


def _pick(columns: Mapping[str, str], *names: str) -> str | None:
    return next((n for n in names if n in columns), None)


def _date_column(columns: Mapping[str, str], *preferred: str) -> str | None:
    return _pick(columns, *preferred) or next(
        (c for c, t in columns.items() if t == "DATE" or t.startswith("TIMESTAMP")), None
    )


def _select(columns: Mapping[str, str], alias: str, *names: str, cast: str | None = None) -> str:
    """`<first present column> as alias`, or `null as alias` when the mart lacks all of them."""
    col = _pick(columns, *names)
    expr = "null" if col is None else f'"{col}"'
    return f"cast({expr} as {cast}) as {alias}" if cast else f"{expr} as {alias}"


def _read_anomalies(con: duckdb.DuckDBPyConnection) -> list[Anomaly] | None:
    cols = _columns(con, "cost_anomalies")
    if not cols:
        return None
    day = _date_column(cols, "usage_date", "anomaly_date", "day", "date", "period_start", "hour_start", "ts")
    if day is None:
        return None
    rows = con.execute(
        f"""
        select cast("{day}" as date),
               {_select(cols, "metric", "metric", cast="varchar")},
               {_select(cols, "dimension", "dimension", cast="varchar")},
               {_select(cols, "key", "dimension_key", "dimension_value", "key", "entity", cast="varchar")},
               {_select(cols, "actual", "actual", "actual_usd", "actual_cost")},
               {_select(cols, "expected", "expected", "expected_usd", "expected_cost")},
               {_select(cols, "impact_usd", "impact_usd", "impact")},
               {_select(cols, "impact_pct", "impact_pct", cast="double")},
               {_select(cols, "severity", "severity", cast="varchar")},
               {_select(cols, "status", "status", cast="varchar")}
        from cost_anomalies
        order by abs(impact_usd) desc nulls last, 1
        """
    ).fetchall()
    return [Anomaly(r[0], r[1] or "", r[2] or "", r[3] or "", r[4], r[5], r[6], r[7], r[8] or "", r[9] or "")
            for r in rows]


def _read_concentration(con: duckdb.DuckDBPyConnection) -> list[Concentration] | None:
    cols = _columns(con, "supplier_concentration")
    if not cols or "hhi" not in cols or "dimension" not in cols:
        return None
    day = _date_column(cols, "usage_date", "period_start", "period_end", "day", "date")
    kind = _pick(cols, "period", "period_type", "period_kind", "window", "grain")
    # The trailing 30 days is the steadiest view; else the month; else whatever is there.
    kind_rank = (
        f"""case when cast("{kind}" as varchar) ilike '%30%' then 0
                 when cast("{kind}" as varchar) ilike '%month%' then 1 else 2 end"""
        if kind else "0"
    )
    day_order = f'"{day}" desc' if day else "1"
    rows = con.execute(
        f"""
        select dimension, {f'cast("{day}" as date)' if day else "null"}, cast(hhi as double),
               {_select(cols, "top_supplier", "top_supplier", cast="varchar")},
               {_select(cols, "top_share", "top_share", cast="double")},
               {_select(cols, "supplier_count", "supplier_count", cast="bigint")},
               {_select(cols, "risk_level", "risk_level", "band", cast="varchar")}
        from supplier_concentration
        qualify row_number() over (partition by dimension order by {kind_rank}, {day_order}) = 1
        order by dimension
        """
    ).fetchall()
    return [Concentration(r[0], r[1], r[2] or 0.0, r[3] or "", r[4], r[5], (r[6] or "").replace("_", " "))
            for r in rows]


def _read_gpu_rates(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Each GPU type over the period: what a GPU-hour cost and listed for, in USD."""
    return con.execute(
        """
        select provider, gpu_model, instance_type, sum(gpu_hours) as gpu_hours,
               sum(effective_cost_usd) / nullif(sum(gpu_hours), 0),
               case when bool_and(list_cost_complete) then sum(list_cost_usd) / nullif(sum(gpu_hours), 0) end,
               case when bool_and(list_cost_complete)
                    then 1 - sum(effective_cost_usd) / nullif(sum(list_cost_usd), 0) end,
               case when bool_and(list_cost_complete)
                    then sum(commitment_coverage * list_cost_usd) / nullif(sum(list_cost_usd), 0) end
        from gpu_rates_daily
        group by 1, 2, 3 order by gpu_hours desc, 1, 3
        """
    ).fetchall()


def read_report_data(warehouse: str | Path) -> ReportData:
    """Everything the report shows, read from the marts of `warehouse` (opened read-only)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'").fetchall()}
        missing = [m for m in REQUIRED_MARTS if m not in tables]
        if missing:
            raise ValueError(
                f"{warehouse} has no {', '.join(missing)}: point --warehouse at a built warehouse "
                "(or its marts.duckdb), e.g. after `inferledger demo`"
            )
        days = [r[0] for r in con.execute(
            "select distinct usage_date from cost_per_token_daily order by 1").fetchall()]
        total_cost, total_tokens, requests, idle_cost = con.execute(
            """
            select coalesce(sum(fully_loaded_cost), 0), coalesce(sum(total_tokens), 0),
                   coalesce(sum(requests), 0), coalesce(sum(idle_cost), 0)
            from cost_per_token_daily
            """
        ).fetchall()[0]
        model_cost = con.execute(
            """
            select model || ' (' || deployment || ')', usage_date, cost_per_1m_tokens
            from cost_per_token_daily order by 1, 2
            """
        ).fetchall()
        by_provider = con.execute(
            "select provider, usage_date, sum(fully_loaded_cost) from cost_per_token_daily group by 1, 2 order by 1, 2"
        ).fetchall()
        by_feature = con.execute(
            "select feature, usage_date, sum(cost) from feature_costs_daily group by 1, 2 order by 1, 2"
        ).fetchall()
        daily_cost = dict(con.execute(
            "select usage_date, sum(fully_loaded_cost) from cost_per_token_daily group by 1 order by 1").fetchall())
        customers = con.execute(
            """
            select customer_id, sum(requests), sum(total_tokens), sum(cost) as cost,
                   sum(revenue), sum(gross_margin)
            from customer_costs_daily where customer_id <> ?
            group by 1 order by cost desc nulls last, 1 limit ?
            """,
            [IDLE, TOP_CUSTOMERS],
        ).fetchall()
        utilization = con.execute(
            """
            select deployment, usage_date, gpu_utilization from cost_per_token_daily
            where gpu_utilization is not null order by 1, 2
            """
        ).fetchall()
        idle = con.execute(
            """
            select deployment, sum(idle_cost) as idle, sum(fully_loaded_cost) from cost_per_token_daily
            where gpu_utilization is not null group by 1 order by idle desc, 1
            """
        ).fetchall()
        energy = con.execute(
            """
            select deployment, usage_date, wh_per_1k_tokens from cost_per_token_daily
            where wh_per_1k_tokens is not null order by 1, 2
            """
        ).fetchall()
        reconciliation = con.execute(
            """
            select provider, billing_currency, count(*), count(*) filter (where passed),
                   sum(billed_in_scope), sum(allocated), sum(idle), sum(shared), sum(unattributed),
                   sum(out_of_scope), max(abs(residual))
            from billing_reconciliation_daily group by 1, 2 order by 1, 2
            """
        ).fetchall()
        recon_days = con.execute(
            """
            select provider || ' ' || billing_currency, usage_date, passed
            from billing_reconciliation_daily order by 1, 2
            """
        ).fetchall()
        gpu_rates = _read_gpu_rates(con) if "gpu_rates_daily" in tables else None
        anomalies = _read_anomalies(con) if "cost_anomalies" in tables else None
        concentration = _read_concentration(con) if "supplier_concentration" in tables else None
    return ReportData(
        source=Path(warehouse).name,
        days=days,
        total_cost=total_cost,
        total_tokens=int(total_tokens),
        requests=int(requests),
        idle_cost=idle_cost,
        model_cost_per_1m=_pivot(model_cost),
        spend_by_provider=_pivot(by_provider),
        spend_by_feature=_pivot((("idle GPUs" if f == IDLE else f), d, v) for f, d, v in by_feature),
        daily_cost=daily_cost,
        customers=customers,
        gpu_utilization=_pivot(utilization),
        idle_by_deployment=idle,
        energy=_pivot(energy),
        reconciliation=reconciliation,
        reconciliation_days=_pivot(recon_days),
        anomalies=anomalies,
        concentration=concentration,
        gpu_rates=gpu_rates,
    )


# ----------------------------------------------------------------------------- formatting


def money(x: Number | None, places: int = 2) -> str:
    """US dollars with thousands separators; `n/a` for a missing value (never a fake 0)."""
    if x is None:
        return "n/a"
    value = Decimal(str(x)) if isinstance(x, float) else Decimal(x)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{places}f}"


def hours(x: Number | None) -> str:
    """A number of hours to two places, without trailing zeros: 24, 22.5, 1,234.25."""
    if x is None:
        return "n/a"
    return f"{Decimal(str(x)) if isinstance(x, float) else Decimal(x):,.2f}".rstrip("0").rstrip(".")


def pct(x: Number | None, places: int = 1) -> str:
    return "n/a" if x is None else f"{float(x) * 100:.{places}f}%"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _color(i: int, name: str = "") -> str:
    return IDLE_COLOR if name in ("idle GPUs", IDLE) else PALETTE[i % len(PALETTE)]


# ----------------------------------------------------------------------------- SVG charts


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _linear_ticks(lo: float, hi: float) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    step = _nice_step(hi - lo)
    first = math.floor(lo / step) * step
    ticks = [first]
    while ticks[-1] < hi - 1e-9 * step:
        ticks.append(ticks[-1] + step)
    return ticks


def _short(value: float, fmt: str) -> str:
    """Axis labels: compact ($1.2k, 45%, 3.5)."""
    if fmt == "pct":
        return f"{value * 100:.0f}%"
    prefix = "$" if fmt == "money" else ""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{prefix}{value / 1e6:g}M"
    if magnitude >= 1e3:
        return f"{prefix}{value / 1e3:g}k"
    return f"{prefix}{value:g}"


class _Axes:
    """A day x-axis (one slot per day, marks at the slot centres) and a y-axis."""

    def __init__(self, days: Sequence[date], lo: float, hi: float, log: bool = False) -> None:
        self.days = list(days)
        self.index = {d: i for i, d in enumerate(self.days)}
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = HEIGHT - TOP - BOTTOM
        self.slot = self.plot_w / max(len(self.days), 1)
        self.log = log
        if log:
            self.ticks = [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
            if len(self.ticks) < 2:
                self.ticks.append(self.ticks[-1] * 10)
        else:
            self.ticks = _linear_ticks(min(lo, 0.0), hi)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]

    def x(self, day: date) -> float:
        return LEFT + (self.index[day] + 0.5) * self.slot

    def y(self, value: float) -> float:
        if self.log:
            frac = (math.log10(value) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            frac = (value - self.lo) / (self.hi - self.lo)
        return TOP + self.plot_h * (1 - frac)

    def grid(self, fmt: str) -> str:
        parts = []
        for t in self.ticks:
            y = self.y(t)
            parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
            parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_esc(_short(t, fmt))}</text>')
        every = max(1, math.ceil(len(self.days) / 8))
        for i, d in enumerate(self.days):
            if i % every == 0:
                parts.append(
                    f'<text class="tick" x="{self.x(d):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                    f'{d:%b %d}</text>'
                )
        return "".join(parts)


def _svg(chart_id: str, title: str, body: str, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" data-chart="{_esc(chart_id)}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{_esc(title)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _legend(names: Sequence[str], colors: Sequence[str] | None = None) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{colors[i] if colors else _color(i, n)}"></span>{_esc(n)}</li>'
        for i, n in enumerate(names)
    )
    return f'<ul class="legend">{items}</ul>'


def _mark_attrs(series: str, day: date, value: Number) -> str:
    return f'data-series="{_esc(series)}" data-x="{day.isoformat()}" data-value="{_esc(value)}"'


def line_chart(
    chart_id: str,
    title: str,
    days: Sequence[date],
    series: SeriesData,
    fmt: str = "number",
    log: bool = False,
    markers: Sequence[tuple[date, Number, float, str, str]] = (),
) -> str:
    """One line per series over the days; `markers`: (day, y, radius, colour, label) dots on top.

    A missing day breaks the line rather than drawing it down to zero.
    """
    values = [float(v) for s in series.values() for v in s.values()]
    values = [v for v in values if v > 0] if log else values
    if not values or not days:
        return _empty(chart_id, title)
    axes = _Axes(days, min(values), max(values), log=log)
    parts = [axes.grid(fmt)]
    for i, (name, points) in enumerate(series.items()):
        color = _color(i, name)
        run: list[str] = []
        segments: list[list[str]] = [run]
        for d in days:
            v = points.get(d)
            if v is None or (log and float(v) <= 0):
                run = []
                segments.append(run)
                continue
            run.append(f"{axes.x(d):.1f},{axes.y(float(v)):.1f}")
        for seg in segments:
            if len(seg) > 1:
                parts.append(f'<polyline class="line" fill="none" stroke="{color}" points="{" ".join(seg)}"/>')
        for d, v in points.items():
            if d in axes.index and not (log and float(v) <= 0):
                parts.append(
                    f'<circle class="mark" r="2.6" fill="{color}" cx="{axes.x(d):.1f}" cy="{axes.y(float(v)):.1f}" '
                    f'{_mark_attrs(name, d, v)}><title>{_esc(name)} {d}: {_esc(_short(float(v), fmt))}</title></circle>'
                )
    for d, v, radius, color, label in markers:
        if d in axes.index:
            parts.append(
                f'<circle class="mark anomaly" r="{radius:.1f}" fill="{color}" fill-opacity="0.85" stroke="#333" '
                f'cx="{axes.x(d):.1f}" cy="{axes.y(float(v)):.1f}" {_mark_attrs("anomaly", d, v)}>'
                f"<title>{_esc(label)}</title></circle>"
            )
    return _svg(chart_id, title, "".join(parts))


def stacked_bar_chart(chart_id: str, title: str, days: Sequence[date], series: SeriesData, fmt: str = "money") -> str:
    """Per day, one bar stacked by series: positives upwards, negatives (credits) downwards."""
    tops = [sum(float(s.get(d, 0)) for s in series.values() if float(s.get(d, 0)) > 0) for d in days]
    bottoms = [sum(float(s.get(d, 0)) for s in series.values() if float(s.get(d, 0)) < 0) for d in days]
    if not days or not series or (max(tops, default=0) == 0 and min(bottoms, default=0) == 0):
        return _empty(chart_id, title)
    axes = _Axes(days, min(bottoms), max(tops))
    parts = [axes.grid(fmt)]
    width = axes.slot * 0.72
    up = {d: 0.0 for d in days}
    down = {d: 0.0 for d in days}
    for i, (name, points) in enumerate(series.items()):
        color = _color(i, name)
        for d in days:
            v = points.get(d)
            if v is None or float(v) == 0:
                continue
            base = up if float(v) > 0 else down
            y0, y1 = axes.y(base[d]), axes.y(base[d] + float(v))
            base[d] += float(v)
            parts.append(
                f'<rect class="mark" fill="{color}" x="{axes.x(d) - width / 2:.1f}" y="{min(y0, y1):.1f}" '
                f'width="{width:.1f}" height="{max(abs(y1 - y0), 0.5):.1f}" {_mark_attrs(name, d, v)}>'
                f"<title>{_esc(name)} {d}: {_esc(money(v))}</title></rect>"
            )
    return _svg(chart_id, title, "".join(parts))


def hbar_chart(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, Number, str]],
    fmt: str = "money",
    x_max: float | None = None,
    bands: Sequence[tuple[float, float, str, str]] = (),
    colors: Sequence[str] | None = None,
) -> str:
    """Horizontal bars: (label, value, text shown after the bar); optional shaded bands."""
    if not rows:
        return _empty(chart_id, title)
    label_w, bar_h, gap, top = 200, 20, 8, 6
    height = top + len(rows) * (bar_h + gap) + 26
    hi = x_max or max(float(v) for _, v, _ in rows) or 1.0
    ticks = _linear_ticks(0.0, hi) if x_max is None else _linear_ticks(0.0, x_max)
    hi = ticks[-1]
    plot_w = WIDTH - label_w - 220  # room for the note after the longest bar

    def x(value: float) -> float:
        return label_w + plot_w * value / hi

    parts = []
    bottom = top + len(rows) * (bar_h + gap)
    for lo_b, hi_b, color, label in bands:
        parts.append(f'<rect class="band" fill="{color}" x="{x(lo_b):.1f}" y="{top}" '
                     f'width="{x(min(hi_b, hi)) - x(lo_b):.1f}" height="{bottom - top}"><title>{_esc(label)}</title></rect>')
        if lo_b > 0:  # the band edges are the thresholds a reader compares against (named in the legend)
            parts.append(f'<line class="threshold" x1="{x(lo_b):.1f}" x2="{x(lo_b):.1f}" y1="{top}" y2="{bottom}"/>')
    for t in ticks:
        parts.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{bottom}"/>')
        parts.append(f'<text class="tick" x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle">{_esc(_short(t, fmt))}</text>')
    for i, (label, value, note) in enumerate(rows):
        y = top + i * (bar_h + gap)
        color = colors[i] if colors else PALETTE[0]
        width = max(x(max(float(value), 0.0)) - label_w, 1.0)
        parts.append(f'<text class="label" x="{label_w - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">{_esc(label)}</text>')
        parts.append(
            f'<rect class="mark" fill="{color}" x="{label_w}" y="{y}" width="{width:.1f}" height="{bar_h}" '
            f'data-series="{_esc(label)}" data-value="{_esc(value)}"><title>{_esc(label)}: {_esc(note)}</title></rect>'
        )
        parts.append(f'<text class="value" x="{label_w + width + 6:.1f}" y="{y + bar_h * 0.7:.1f}">{_esc(note)}</text>')
    return _svg(chart_id, title, "".join(parts), height=height)


def status_grid(chart_id: str, title: str, days: Sequence[date], rows: Mapping[str, Mapping[date, bool]]) -> str:
    """One square per row and day: green when the day conserved to the cent, red when not."""
    if not rows or not days:
        return _empty(chart_id, title)
    label_w, cell, gap = 140, 18, 3
    height = len(rows) * (cell + gap) + 24
    step = min(cell + gap, (WIDTH - label_w - 10) / len(days))
    parts = []
    for r, (name, by_day) in enumerate(rows.items()):
        y = r * (cell + gap)
        parts.append(f'<text class="label" x="{label_w - 8}" y="{y + cell * 0.75:.1f}" text-anchor="end">{_esc(name)}</text>')
        for i, d in enumerate(days):
            if d not in by_day:
                continue
            ok = bool(by_day[d])
            parts.append(
                f'<rect class="mark" fill="{"#59a14f" if ok else "#e15759"}" x="{label_w + i * step:.1f}" y="{y}" '
                f'width="{step - gap:.1f}" height="{cell}" {_mark_attrs(name, d, "passed" if ok else "failed")}>'
                f'<title>{_esc(name)} {d}: {"conserved" if ok else "NOT conserved"}</title></rect>'
            )
    last = len(rows) * (cell + gap) + 14
    parts.append(f'<text class="tick" x="{label_w}" y="{last}">{days[0]:%b %d}</text>')
    if len(days) * step > 120:  # room for the last day's label too
        parts.append(f'<text class="tick" x="{label_w + len(days) * step:.1f}" y="{last}" '
                     f'text-anchor="end">{days[-1]:%b %d}</text>')
    return _svg(chart_id, title, "".join(parts), height=height)


def _empty(chart_id: str, title: str) -> str:
    return f'<p class="empty" data-chart="{_esc(chart_id)}">No data for {_esc(title.lower())} in this period.</p>'


# ----------------------------------------------------------------------------- HTML


CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;margin:0;background:#f6f7f9}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 6px}
.sub{color:#666;margin:0 0 18px}.note{color:#555;margin:4px 0 10px}
section{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:16px 18px;margin:0 0 16px}
.kpis{display:grid;grid-template-columns:repeat(5,1fr);gap:10px;margin:0 0 16px}
.kpi{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:10px 12px}
.kpi b{display:block;font-size:20px}.kpi span{color:#666;font-size:12px}
.ok{color:#2e7d32}.bad{color:#c62828}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#e6e6e6;stroke-width:1}svg .tick{fill:#777;font-size:11px}
svg .label{fill:#333;font-size:12px}svg .value{fill:#333;font-size:12px}
svg .line{stroke-width:2}svg .threshold{stroke:#888;stroke-dasharray:3 3}
.legend{list-style:none;padding:0;margin:6px 0 0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right}th{color:#555;font-weight:600}
th:first-child,td:first-child{text-align:left}
.empty{color:#777;font-style:italic}
h3{font-size:14px;margin:14px 0 4px;color:#444}
@media print{body{background:#fff}section{break-inside:avoid}}
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], table_id: str) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table data-table="{_esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _section(section_id: str, title: str, *content: str) -> str:
    return f'<section id="{_esc(section_id)}"><h2>{_esc(title)}</h2>{"".join(content)}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _kpis(data: ReportData) -> str:
    passed = sum(r[3] for r in data.reconciliation)
    checked = sum(r[2] for r in data.reconciliation)
    recon_class = "ok" if passed == checked else "bad"
    tiles = [
        ("total-cost", money(data.total_cost), "inference cost, fully loaded (USD)"),
        ("tokens", f"{data.total_tokens:,}", f"tokens in {data.requests:,} requests"),
        ("cost-per-1m", money(data.cost_per_1m), "blended cost per 1M tokens"),
        ("idle-cost", money(data.idle_cost),
         f"idle GPU spend ({pct(data.idle_cost / data.total_cost if data.total_cost else None)} of cost)"),
        ("reconciliation", f"{passed}/{checked}", "provider-days conserve the bill to the cent"),
    ]
    return '<div class="kpis">' + "".join(
        f'<div class="kpi" data-kpi="{k}"><b class="{recon_class if k == "reconciliation" else ""}">{_esc(v)}</b>'
        f"<span>{_esc(label)}</span></div>"
        for k, v, label in tiles
    ) + "</div>"


def _models_section(data: ReportData) -> str:
    return _section(
        "cost-per-token", "Cost per 1M tokens, per model",
        _note("Fully loaded (busy GPU + idle GPU + shared platform for self-hosted models; list price for "
              "hosted APIs), per day. Log scale: self-hosted and API models differ by orders of magnitude."),
        line_chart("cost_per_1m_tokens", "Cost per 1M tokens per model", data.days, data.model_cost_per_1m,
                   fmt="money", log=True),
        _legend(list(data.model_cost_per_1m)),
    )


def _spend_section(data: ReportData) -> str:
    return _section(
        "spend", "Spend by provider and by feature",
        _note("Fully loaded cost per day, stacked. Idle GPUs are a feature of their own: the cost of capacity "
              "nobody used."),
        "<h3>By provider</h3>",
        stacked_bar_chart("spend_by_provider", "Spend by provider", data.days, data.spend_by_provider),
        _legend(list(data.spend_by_provider)),
        "<h3>By feature</h3>",
        stacked_bar_chart("spend_by_feature", "Spend by feature", data.days, data.spend_by_feature),
        _legend(list(data.spend_by_feature)),
    )


def _customers_section(data: ReportData) -> str:
    rows = data.customers
    has_revenue = any(r[4] is not None for r in rows)
    bars = [
        (c, cost or 0, money(cost) + (f"  margin {pct(margin / revenue)}" if revenue else ""))
        for c, _req, _tok, cost, revenue, margin in rows
    ]
    table_rows = [
        (c, f"{int(req or 0):,}", f"{int(tok or 0):,}", money(cost),
         money(cost * 1000 / tok if tok and cost is not None else None, 4), money(revenue), money(margin),
         pct(margin / revenue) if revenue else "n/a")
        for c, req, tok, cost, revenue, margin in rows
    ]
    return _section(
        "customers", f"Top {len(rows)} customers by cost, with margin",
        _note("" if has_revenue else "No price plan is configured, so revenue and gross margin are not "
              "available (n/a): cost is shown alone."),
        hbar_chart("top_customers", "Top customers by cost", bars),
        _table(["customer", "requests", "tokens", "cost", "cost / 1k tokens", "revenue", "gross margin", "margin %"],
               table_rows, "customers"),
    )


def _gpu_section(data: ReportData) -> str:
    idle_rows = [(d, idle or 0, f"{money(idle)} ({pct(idle / total if total else None)} of its cost)")
                 for d, idle, total in data.idle_by_deployment]
    return _section(
        "gpu", "GPU utilization and idle share",
        _note("Share of each self-hosted deployment's GPU cost that was busy serving requests, per day."),
        line_chart("gpu_utilization", "GPU utilization", data.days, data.gpu_utilization, fmt="pct"),
        _legend(list(data.gpu_utilization)),
        "<h3>Idle GPU spend over the period</h3>",
        hbar_chart("idle_spend", "Idle GPU spend per deployment", idle_rows, colors=[IDLE_COLOR] * len(idle_rows)),
        "<h3>What a GPU-hour cost against its list price</h3>",
        _gpu_rates_table(data),
    )


def _gpu_rates_table(data: ReportData) -> str:
    if data.gpu_rates is None:
        return _note("This warehouse has no gpu_rates_daily mart yet.")
    rows = [
        (provider, gpu_model or "", instance_type, hours(gpu_hours), money(effective, 4), money(listed, 4),
         pct(savings), pct(coverage))
        for provider, gpu_model, instance_type, gpu_hours, effective, listed, savings, coverage in data.gpu_rates
    ]
    return "".join([
        _note("Allocated GPU instance-hours over the period, EffectiveCost against ListCost (on-demand): the "
              "savings rate is the share of list price that commitments and discounts saved; n/a where the "
              "bill carried no list cost."),
        _table(["provider", "GPU", "instance type", "GPU-hours", "cost per GPU-hour", "list per GPU-hour",
                "savings rate", "commitment coverage"], rows, "gpu_rates"),
    ])


def _energy_section(data: ReportData) -> str:
    return _section(
        "energy", "Energy per 1k tokens",
        _note("GPU energy from telemetry, allocated like the cost (Wh per 1,000 tokens), per self-hosted deployment."),
        line_chart("energy_per_1k_tokens", "Energy per 1k tokens", data.days, data.energy),
        _legend(list(data.energy)),
    )


def _anomalies_section(data: ReportData) -> str:
    if data.anomalies is None:
        return _section("anomalies", "Cost anomalies",
                        _note("This warehouse has no cost_anomalies mart yet: anomaly detection has not run."))
    # A `resolved` row marks the end of an incident, not a new anomaly: listed in the mart, not here.
    fired = [a for a in data.anomalies if a.status.lower() != "resolved"]
    biggest = max((abs(float(a.impact_usd)) for a in fired if a.impact_usd is not None), default=0.0)
    markers = [
        (a.day, data.daily_cost[a.day],
         4 + 8 * math.sqrt(abs(float(a.impact_usd)) / biggest) if biggest and a.impact_usd is not None else 5,
         SEVERITY_COLORS.get(a.severity.lower(), "#f4a582"),
         f"{a.day} {a.metric} {a.dimension}={a.key}: impact {money(a.impact_usd)} ({a.severity}, {a.status})")
        for a in fired if a.day in data.daily_cost
    ]
    rows = [
        (a.day.isoformat(), a.metric, a.dimension, a.key, money(a.actual), money(a.expected), money(a.impact_usd),
         pct(a.impact_pct), a.severity, a.status)
        for a in fired[:TOP_ANOMALIES]
    ]
    return _section(
        "anomalies", "Cost anomalies on the timeline",
        _note(f"{len(fired)} anomalies fired in the period; the table lists the {len(rows)} largest by dollar "
              "impact. Total daily cost, with each anomaly on its day: the dot's size is its impact, its colour "
              "the severity."),
        line_chart("anomaly_timeline", "Daily cost with anomalies", data.days, {"daily cost": data.daily_cost},
                   fmt="money", markers=markers),
        _table(["day", "metric", "dimension", "key", "actual", "expected", "impact", "impact %", "severity",
                "status"], rows, "anomalies"),
    )


def _concentration_section(data: ReportData) -> str:
    if data.concentration is None:
        return _section("concentration", "Supplier concentration",
                        _note("This warehouse has no supplier_concentration mart yet."))
    colors = [next(c for lo, hi, c, _ in HHI_BANDS if lo <= row.hhi <= hi) for row in data.concentration]
    darker = {HHI_BANDS[0][2]: "#59a14f", HHI_BANDS[1][2]: "#edc948", HHI_BANDS[2][2]: "#e15759"}
    bars = [
        (row.dimension, row.hhi,
         f"HHI {row.hhi:,.0f}" + (f", top {row.top_supplier} {pct(row.top_share, 0)}" if row.top_supplier else ""))
        for row in data.concentration
    ]
    rows = [
        (r.dimension, r.as_of.isoformat() if r.as_of else "", f"{r.hhi:,.0f}",
         f"{10000 / r.hhi:.1f}" if r.hhi else "n/a", r.top_supplier, pct(r.top_share),
         "" if r.supplier_count is None else r.supplier_count, r.risk_level)
        for r in data.concentration
    ]
    return _section(
        "concentration", "Supplier concentration (HHI per dimension)",
        _note("Herfindahl-Hirschman index of spend shares (0-10,000) over the latest period (trailing 30 days "
              "where available), against the US Merger Guidelines bands; 10,000 / HHI is the effective number "
              "of suppliers."),
        hbar_chart("concentration_hhi", "HHI per dimension", bars, fmt="number", x_max=10000,
                   bands=HHI_BANDS, colors=[darker[c] for c in colors]),
        _legend([label for *_, label in HHI_BANDS], [darker[color] for _, _, color, _ in HHI_BANDS]),
        _table(["dimension", "as of", "HHI", "effective suppliers", "top supplier", "top share", "suppliers", "risk"],
               rows, "concentration"),
    )


def _reconciliation_section(data: ReportData) -> str:
    rows = [
        (f"{p} {cur}", f"{passed}/{days}", money(billed), money(alloc), money(idle), money(shared),
         money(unattr), money(out), money(resid, 6), "OK" if passed == days else "FAILED")
        for p, cur, days, passed, billed, alloc, idle, shared, unattr, out, resid in data.reconciliation
    ]
    return _section(
        "reconciliation", "Reconciliation with the bill",
        _note("Per day, cloud provider and currency: the in-scope bill must equal allocated + idle + shared + "
              "unattributed to the cent. Hosted APIs have no bill ingested yet and are not reconciled."),
        status_grid("reconciliation_status", "Reconciliation status", data.days, data.reconciliation_days),
        _table(["provider", "days conserved", "in-scope bill", "allocated", "idle", "shared", "unattributed",
                "out of scope", "max |residual|", "status"], rows, "reconciliation"),
    )


def render_report(data: ReportData) -> str:
    """The whole report as one HTML document (inline CSS and SVG, no script)."""
    period = f"{data.days[0]} to {data.days[-1]}" if data.days else "no data"
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>inferledger report: {_esc(period)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>AI inference costs: {_esc(period)}</h1>",
        (f'<p class="sub">From {_esc(data.source)}, generated {data.generated_at:%Y-%m-%d %H:%M} UTC. '
         "All amounts in USD, fully loaded unless said otherwise.</p>"),
        _kpis(data),
        _models_section(data),
        _spend_section(data),
        _customers_section(data),
        _gpu_section(data),
        _energy_section(data),
        _anomalies_section(data),
        _concentration_section(data),
        _reconciliation_section(data),
        "</main></body></html>",
    ])


def write_report(warehouse: str | Path, out: str | Path) -> Path:
    """Read the marts of `warehouse` and write the report to `out` (written whole, then renamed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render_report(read_report_data(warehouse)), encoding="utf-8")
    tmp.replace(out)
    return out


@click.command("report")
@click.option("--warehouse", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="DuckDB warehouse (or its marts.duckdb) to read  [default: the configured warehouse, "
                   "data/warehouse.duckdb]")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=Path("report.html"),
              show_default=True, help="HTML file to write.")
def report_command(warehouse: Path | None, out: Path) -> None:
    """Write a self-contained HTML report of the marts (inline SVG charts, works offline)."""
    from pipelines.config import load_settings

    warehouse = warehouse or Path(load_settings().warehouse)
    if not warehouse.exists():
        raise click.ClickException(
            f"no warehouse at {warehouse}: run `inferledger demo` (or `inferledger run`) first, or pass --warehouse"
        )
    try:
        path = write_report(warehouse, out)
    except duckdb.IOException as exc:
        raise click.ClickException(
            f"cannot open {warehouse} ({exc}); while a pipeline run holds the warehouse, "
            f"read the BI snapshot instead: --warehouse {warehouse.with_name('marts.duckdb')}"
        ) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Wrote the report to {path.resolve()}")
