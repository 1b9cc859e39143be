"""Cost anomaly detection: robust seasonal baselines, drift, root causes and incidents.

A pure library (polars + numpy, no Dagster), so the `cost_anomalies` asset, the evaluation
harness (`bench/anomaly_eval.py`) and a notebook all run the same detector.

How a period (a day, or an hour) of one series is judged:

- **Baseline**: the median of the same season slot (same weekday) over the last 8
  seasons; when fewer than 4 of those are usable, the median of the last 28 periods
  (same hour of day for hourly series). Periods already flagged are kept out, so a spike
  does not raise the bar for the next one.
- **Scale**: max(1.4826 x MAD, a floor as a share of the baseline): a flat series (a GPU
  node's fixed cost) would otherwise turn every cent into an infinite score.
- **Fire** when the robust score, the dollar impact and the percentage impact all pass
  their thresholds. A series with no history fires on its first period on the dollar rule
  alone. A slow ramp, which never moves one period far enough, is caught by a two-sided
  CUSUM on the log ratio actual / baseline.
- **Incidents**: consecutive alerts of a series share one stable `dedup_key`; after
  `resolve_after` normal periods the incident resolves, and a re-fire within `cooldown`
  periods reopens it instead of paging again. When an incident lasts `accept_after`
  periods it is a level shift: the series' history is rescaled to the new level, so the
  weekly pattern survives and the alerts stop.
- **Root cause**: each new alert walks down the dimensions of the leaf cells and names the
  deepest keys that carry most of the change; an alert explained by another alert of the
  same period is grouped under it (severity info), so one incident pages once.

Money arrives as Decimal in the marts and is analysed as float64 here: the detector's
outputs are statistics (baselines, scores), and the asset casts the dollar figures back to
Decimal(38, 12) when it writes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

# Every series is (metric, dimension, key); `total` has the key `all`.
TOTAL_KEY = "all"
COST = "cost"
UNIT_COST = "unit_cost"  # USD per 1M tokens; its dollar impact is the change x tokens
ESTIMATED_COST = "estimated_cost"  # hourly spend from gateway logs priced at known rates

# Dimensions of the leaf cells (fct_inference_costs_daily), coarse to fine. The customer
# comes last: when a customer and a feature explain each other, the customer is the
# actionable name (rate-limit it, call it), so its alert is the one that pages.
LEAF_DIMENSIONS = ("provider", "model", "deployment", "feature", "customer")

# Idle GPU time is a line of its own in the customer and feature marts, not a customer or
# a feature: it moves whenever traffic moves, and is seen through deployments and total.
NOT_A_KEY = "__idle__"

SEVERITIES = ("critical", "warning", "info")  # critical pages; warning goes to chat


@dataclass(frozen=True)
class DetectorSettings:
    """Thresholds and windows of one grain (the defaults are daily)."""

    min_score: float = 5.0
    min_impact_usd: float = 25.0
    min_impact_pct: float = 0.50
    # An unexplained increase pages when it costs at least page_usd and at least page_pct
    # more than expected; smaller ones go to chat. Noise alone rarely doubles a series.
    page_usd: float = 500.0
    page_pct: float = 0.75
    scale_floor_pct: float = 0.05
    season: int = 7  # periods between two equal season slots (7 days, 168 hours)
    season_count: int = 8
    min_season_points: int = 4
    fallback_step: int = 1  # 1 day; 24 hours for hourly series (same hour of day)
    fallback_count: int = 28
    min_history: int = 7  # a week of points before a spike or drift can fire
    # Allowance per period and decision interval, in robust standard deviations: wide
    # enough that thousands of quiet series-days raise almost no false drift.
    cusum_k: float = 1.0
    cusum_h: float = 8.0
    drift: bool = True  # hourly series are too noisy for a ramp detector; days catch ramps
    drift_min_pct: float = 0.15
    accept_after: int = 3
    resolve_after: int = 2
    cooldown: int = 3
    explain_share: float = 0.5  # a key explains a change when it carries this share of it
    max_root_depth: int = 3


DAILY_SETTINGS = DetectorSettings()
HOURLY_SETTINGS = DetectorSettings(
    min_score=5.0,
    min_impact_usd=50.0,
    min_impact_pct=1.0,
    page_usd=150.0,
    drift=False,
    season=168,
    fallback_step=24,
    accept_after=36,  # a runaway day is an incident, not a new hourly level
    resolve_after=3,
    cooldown=6,
)


@dataclass(frozen=True)
class PlannedEvent:
    """A change someone announced (a launch): alerts inside it are recorded, never paged."""

    dimension: str
    key: str
    start: date
    end: date  # inclusive
    description: str


@dataclass
class _Incident:
    dedup_key: str
    start: int
    direction: int
    ratios: list[float] = field(default_factory=list)
    consecutive: int = 0
    normal_run: int = 0
    explained_by: str | None = None
    resolved_at: int | None = None
    severity: str = "info"  # the highest severity sent so far


ALERT_SCHEMA: dict[str, pl.DataType] = {
    "period_start": pl.Datetime("us", "UTC"),
    "usage_date": pl.Date,
    "grain": pl.String,
    "metric": pl.String,
    "dimension": pl.String,
    "key": pl.String,
    "actual": pl.Float64,
    "expected": pl.Float64,
    "lower": pl.Float64,
    "upper": pl.Float64,
    "score": pl.Float64,
    "impact_usd": pl.Float64,
    "impact_pct": pl.Float64,
    "rule": pl.String,  # spike, drift, new_series, resolve
    "direction": pl.String,  # up, down
    "severity": pl.String,
    "root_causes": pl.String,  # JSON list of {dimension, key, impact_usd, share}
    "explained_by": pl.String,  # dedup_key of the alert that explains this one, or planned:...
    "dedup_key": pl.String,
    "status": pl.String,  # triggered, escalated, ongoing, resolved
}

# The statuses that reach a person: a new incident, or one that grew past its severity.
NOTIFY_STATUSES = ("triggered", "escalated")


def series_from_leaves(
    leaves: pl.DataFrame, *, metric: str = COST, dimensions: tuple[str, ...] = LEAF_DIMENSIONS
) -> pl.DataFrame:
    """The total and one series per key of each dimension, from leaf cells.

    `leaves` has `period`, the dimension columns and `value`; the result has `period`,
    `metric`, `dimension`, `key`, `actual` (and `volume` null).
    """
    parts = [
        leaves.group_by("period").agg(pl.col("value").sum().alias("actual"))
        .with_columns(dimension=pl.lit("total"), key=pl.lit(TOTAL_KEY))
    ]
    for dim in dimensions:
        parts.append(
            leaves.filter(pl.col(dim).is_not_null() & (pl.col(dim) != NOT_A_KEY))
            .group_by("period", dim)
            .agg(pl.col("value").sum().alias("actual"))
            .rename({dim: "key"})
            .with_columns(dimension=pl.lit(dim))
        )
    return (
        pl.concat([p.select("period", "dimension", "key", "actual") for p in parts])
        .with_columns(metric=pl.lit(metric), volume=pl.lit(None, pl.Float64))
        .select("period", "metric", "dimension", "key", "actual", "volume")
    )


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """The median of each row, NaNs left out; NaN for a row with no value (no usable history).

    The same numbers as `np.nanmedian(a, axis=1)`, which takes a masked-array path and
    raises a warning per row for the many short rows that are mostly NaN here (5 s of a
    day's check for a few thousand series); one sort of the whole matrix does it at once.
    """
    if not a.shape[1]:
        return np.full(a.shape[0], np.nan)
    ordered = np.sort(a, axis=1)  # NaNs sort last
    n = np.count_nonzero(~np.isnan(a), axis=1)
    rows = np.arange(a.shape[0])
    low, high = np.maximum((n - 1) // 2, 0), n // 2
    high = np.minimum(high, a.shape[1] - 1)
    middle = (ordered[rows, low] + ordered[rows, high]) / 2
    return np.where(n > 0, middle, np.nan)


def _lags(t: int, step: int, count: int) -> np.ndarray:
    """The period indexes `step`, 2 x `step`, ... `count` x `step` before `t` that exist."""
    lags = t - step * np.arange(1, count + 1)
    return lags[lags >= 0]


def _lag_points(history: np.ndarray, usable: np.ndarray, t: int, step: int, count: int) -> np.ndarray:
    lags = _lags(t, step, count)
    return np.where(usable[:, lags], history[:, lags], np.nan)


def _state_lags(st: _State, t: int, step: int, count: int) -> np.ndarray:
    """_lag_points of the state's history, kept out where flagged."""
    lags = _lags(t, step, count)
    return np.where(st.flagged[:, lags], np.nan, st.history[:, lags])


def baseline(
    history: np.ndarray, usable: np.ndarray, t: int, s: DetectorSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected value, MAD and number of points used, for every row at period index `t`.

    Same season slot over `season_count` seasons; the last `fallback_count` periods (every
    `fallback_step`) when fewer than `min_season_points` slots are usable.
    """
    seasonal = _lag_points(history, usable, t, s.season, s.season_count)
    fallback = _lag_points(history, usable, t, s.fallback_step, s.fallback_count)
    return _baseline_of(seasonal, fallback, s)


def _baseline_of(seasonal: np.ndarray, fallback: np.ndarray, s: DetectorSettings
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_seasonal = np.count_nonzero(~np.isnan(seasonal), axis=1)
    use_seasonal = n_seasonal >= s.min_season_points
    points = [seasonal, fallback]
    medians = [_nanmedian(p) for p in points]
    mads = [_nanmedian(np.abs(p - m[:, None])) for p, m in zip(points, medians)]
    expected = np.where(use_seasonal, medians[0], medians[1])
    mad = np.where(use_seasonal, mads[0], mads[1])
    n = np.where(use_seasonal, n_seasonal, np.count_nonzero(~np.isnan(fallback), axis=1))
    return expected, mad, n


def dedup_key(grain: str, metric: str, dimension: str, key: str, start: datetime) -> str:
    """Stable across reruns: the series and the period its incident started."""
    raw = f"{grain}|{metric}|{dimension}|{key}|{start.isoformat()}"
    return "inferledger-" + hashlib.sha256(raw.encode()).hexdigest()[:20]


@dataclass
class _Matrix:
    ids: pl.DataFrame  # one row per series: metric, dimension, key
    periods: list[datetime]
    actual: np.ndarray  # series x periods; NaN before a series first appears
    volume: np.ndarray  # tokens, for unit-cost series; NaN elsewhere


def _as_datetime(p: date | datetime) -> datetime:
    """Naive UTC: the matrices index periods without a time zone."""
    if isinstance(p, datetime):
        return p.astimezone(UTC).replace(tzinfo=None) if p.tzinfo else p
    return datetime(p.year, p.month, p.day)


def _to_matrix(observations: pl.DataFrame, periods: list[datetime]) -> _Matrix:
    obs = observations.with_columns(pl.col("period").cast(pl.Datetime("us")))
    ids = obs.select("metric", "dimension", "key").unique().sort("metric", "dimension", "key")
    ids = ids.with_row_index("row")
    index = pl.DataFrame({"period": periods}, schema={"period": pl.Datetime("us")}).with_row_index("col")
    cells = obs.join(ids, on=["metric", "dimension", "key"]).join(index, on="period")
    shape = (ids.height, len(periods))
    actual = np.full(shape, np.nan)
    volume = np.full(shape, np.nan)
    rows = cells.get_column("row").to_numpy()
    cols = cells.get_column("col").to_numpy()
    actual[rows, cols] = cells.get_column("actual").cast(pl.Float64).fill_null(0.0).to_numpy()
    volume[rows, cols] = cells.get_column("volume").cast(pl.Float64).to_numpy()
    # Once a series exists, a period without rows is a real zero (a customer who stopped).
    seen = np.maximum.accumulate(~np.isnan(actual), axis=1)
    actual = np.where(seen & np.isnan(actual), 0.0, actual)
    return _Matrix(ids.drop("row"), periods, actual, volume)


def _first_seen(actual: np.ndarray) -> np.ndarray:
    return np.argmax(~np.isnan(actual), axis=1)


def _that_can_alert(mx: _Matrix, s: DetectorSettings) -> _Matrix:
    """The series that can fire at all, with each model's cost (unit-cost causes read it).

    A cost series (daily, or hourly estimated) alerts only on a dollar impact of at least
    `min_impact_usd`: for a spike or a drift, actual minus a baseline made of its own
    earlier values; for a new series, its value. Both stay within the span of its values
    and zero, so a series whose span is smaller never alerts, and it touches no other
    series: judging it is wasted work, most of an hourly run's (the many small customers
    of 35 days of hours).
    """
    ids = mx.ids
    values = np.nan_to_num(mx.actual)  # a period without the series is zero here
    span = values.max(axis=1, initial=0.0) - values.min(axis=1, initial=0.0)
    metric = ids.get_column("metric")
    keep = ((span >= s.min_impact_usd) | (metric == UNIT_COST).to_numpy()
            | ((metric == COST) & (ids.get_column("dimension") == "model")).to_numpy())
    if keep.all():
        return mx
    rows = np.flatnonzero(keep)
    return _Matrix(ids[rows], mx.periods, mx.actual[rows], mx.volume[rows])


@dataclass
class _Leaves:
    """Leaf cells as one matrix per period index, for the root-cause walk."""

    frame: pl.DataFrame  # col, dimension columns, value
    dimensions: tuple[str, ...]

    @classmethod
    def build(cls, leaves: pl.DataFrame | None, periods: list[datetime], dims: tuple[str, ...]) -> _Leaves | None:
        if leaves is None or leaves.is_empty():
            return None
        index = pl.DataFrame({"period": periods}, schema={"period": pl.Datetime("us")}).with_row_index("col")
        frame = leaves.with_columns(pl.col("period").cast(pl.Datetime("us"))).join(index, on="period")
        return cls(frame.select("col", *dims, pl.col("value").cast(pl.Float64)), dims)

    def deltas(self, slice_filter: pl.Expr, dim: str, t: int, s: DetectorSettings) -> pl.DataFrame:
        """Per key of `dim` inside the slice: actual at t minus its own baseline."""
        lo = t - max(s.season * s.season_count, s.fallback_step * s.fallback_count)
        cells = (
            self.frame.filter(slice_filter & (pl.col("col") >= lo) & (pl.col("col") <= t))
            .group_by(dim, "col")
            .agg(pl.col("value").sum())
        )
        if cells.is_empty():
            return pl.DataFrame(schema={"key": pl.String, "delta": pl.Float64, "expected": pl.Float64})
        keys = cells.get_column(dim).unique().sort()
        k_index = {k: i for i, k in enumerate(keys.to_list())}
        m = np.full((len(keys), t + 1), np.nan)
        m[[k_index[k] for k in cells.get_column(dim).to_list()], cells.get_column("col").to_numpy()] = (
            cells.get_column("value").to_numpy()
        )
        seen = np.maximum.accumulate(~np.isnan(m), axis=1)
        m = np.where(seen & np.isnan(m), 0.0, m)
        expected, _, n = baseline(m[:, :t], ~np.isnan(m[:, :t]), t, s)
        expected = np.where(n > 0, expected, 0.0)  # a key with no history is all change
        actual = np.nan_to_num(m[:, t])
        return pl.DataFrame({"key": keys.cast(pl.String), "delta": actual - expected, "expected": expected})

    def walk(self, dimension: str, key: str, delta: float, t: int, s: DetectorSettings) -> list[dict]:
        """Down the dimensions: at each level the key that carries the change most surprisingly.

        A key qualifies when it carries at least `explain_share` of the change; among those,
        the one whose share of the change most exceeds its share of the baseline wins (a
        provider that always carries 95% of the cost explains nothing by carrying 95% of a
        spike). A dimension with a single key inside the slice is no split: a coarser one
        (the provider of a deployment) is skipped, a finer one (the only deployment of a
        model) is named, since an alert on it says the same thing more precisely.
        """
        path: list[dict] = []
        if delta == 0 or np.isnan(delta):
            return path
        conditions = [] if dimension == "total" else [pl.col(dimension) == key]
        depth = self.rank(dimension)
        remaining = [d for d in self.dimensions if d != dimension]
        for _ in range(s.max_root_depth):
            flt = pl.all_horizontal(conditions) if conditions else pl.lit(True)
            best: tuple[float, str, str, float, float] | None = None
            for dim in remaining:
                d = self.deltas(flt, dim, t, s)
                if d.is_empty() or (d.height == 1 and self.rank(dim) < depth):
                    continue
                total_expected = d.get_column("expected").sum()
                k, d_usd, share, surprise = (
                    d.with_columns(share=pl.col("delta") / delta)
                    .with_columns(
                        surprise=pl.col("share")
                        - (pl.col("expected") / total_expected if total_expected > 0 else pl.lit(0.0))
                    )
                    .filter(pl.col("share") >= s.explain_share)
                    .sort("surprise", descending=True)
                    .select("key", "delta", "share", "surprise")
                    .row(0) if (d.get_column("delta") / delta >= s.explain_share).any() else (None,) * 4
                )
                if d.height == 1:
                    surprise = np.inf  # the same cells under a finer name: always named first
                if k is not None and (best is None or surprise > best[0]):
                    best = (surprise, dim, k, d_usd, share)
            if best is None:
                break
            _, dim, k, d_usd, share = best
            path.append({"dimension": dim, "key": k, "impact_usd": round(d_usd, 2), "share": round(share, 3)})
            conditions.append(pl.col(dim) == k)
            remaining.remove(dim)
            depth = max(depth, self.rank(dim))
        return path

    def rank(self, dimension: str) -> int:
        return self.dimensions.index(dimension) if dimension in self.dimensions else -1


class _LeafSource:
    """The leaf cells, built the first time a root-cause walk asks for them."""

    def __init__(self, leaves: pl.DataFrame | Callable[[], pl.DataFrame] | None,
                 periods: list[datetime], dims: tuple[str, ...]) -> None:
        self._leaves, self._periods, self._dims = leaves, periods, dims
        self._built: _Leaves | None = None
        self.loaded = False

    def get(self) -> _Leaves | None:
        if not self.loaded:
            leaves = self._leaves() if callable(self._leaves) else self._leaves
            self._built = _Leaves.build(leaves, self._periods, self._dims)
            self.loaded = True
        return self._built


def _severity(
    metric: str, rule: str, direction: int, impact: float, pct: float | None, explained: bool,
    s: DetectorSettings,
) -> str:
    if explained:
        return "info"
    # A unit cost moves with utilization as much as with price: a price change that costs
    # money also moves the cost series, which pages; the unit cost itself only warns.
    if rule == "drift" or metric == UNIT_COST:
        return "warning"
    if direction < 0:
        # Spend falling is rarely an emergency: chat, not a page.
        return "warning" if abs(impact) >= s.page_usd else "info"
    big = pct is None or pct >= s.page_pct  # a new series has no percentage
    return "critical" if impact >= s.page_usd and big else "warning"


def _planned(events: Sequence[PlannedEvent], dimension: str, key: str, day: date) -> PlannedEvent | None:
    for e in events:
        if e.dimension == dimension and e.key == key and e.start <= day <= e.end:
            return e
    return None


def detect(
    observations: pl.DataFrame,
    periods: list[date] | list[datetime],
    *,
    settings: DetectorSettings = DAILY_SETTINGS,
    grain: str = "day",
    leaves: pl.DataFrame | Callable[[], pl.DataFrame] | None = None,
    leaf_dimensions: tuple[str, ...] = LEAF_DIMENSIONS,
    planned: Sequence[PlannedEvent] = (),
) -> pl.DataFrame:
    """Alerts and incident events for every series over `periods` (in order, complete).

    `observations`: period, metric, dimension, key, actual, volume (tokens; unit cost only).
    `leaves`: period, the `leaf_dimensions` columns and value, for the root-cause walk of
    cost series; or a function returning them, called only when a walk needs them (most
    runs fire no new cost alert, and the leaves are the largest input). Returns rows in
    ALERT_SCHEMA: one per alerting series and period, plus one `resolved` row when an
    incident ends.
    """
    s = settings
    ps = [_as_datetime(p) for p in periods]
    mx = _to_matrix(observations, ps)
    data_start = _first_seen(mx.actual)
    mx = _that_can_alert(mx, s)
    lv = _LeafSource(leaves, ps, leaf_dimensions)
    ids = mx.ids.rows(named=True)
    state = _State.start(mx, ids, data_start=int(data_start.min()) if len(data_start) else 0)
    out: list[dict] = []
    for t in range(len(ps)):
        p = _judge(state, mx, t, s)
        fired_now = {
            i: _fire(state, ids, ps, grain, t, i, p, mx.actual[i, t], s, out)
            for i in np.flatnonzero(p.spike | p.drift | p.new)
        }
        _explain(fired_now, ids, mx, lv, t, s, planned, ps)
        for i, row in fired_now.items():
            out.append(_alert_row(ps[t], grain, ids[i], mx.actual[i, t], row, s))
            _accept_if_lasting(state, i, row["inc"], row["rule"], t, s)
        for i, inc in state.incidents.items():
            if i in fired_now or inc.resolved_at is not None:
                continue
            inc.consecutive = 0
            inc.normal_run += 1
            if inc.normal_run >= s.resolve_after:
                inc.resolved_at = t
                out.append(_resolved_row(ps[t], grain, ids[i], mx.actual[i, t], p.expected[i], inc))
    alerts = pl.DataFrame(out, schema={**ALERT_SCHEMA, "period_start": pl.Datetime("us")})
    return alerts.with_columns(pl.col("period_start").dt.replace_time_zone("UTC"))


@dataclass
class _State:
    """What the detector carries from one period to the next."""

    history: np.ndarray  # the actuals, rescaled in place when a level shift is accepted
    flagged: np.ndarray  # periods kept out of the baseline
    first_seen: np.ndarray
    data_start: int
    unit: np.ndarray  # unit-cost series (dollar impact = change x tokens)
    cusum_hi: np.ndarray
    cusum_lo: np.ndarray
    incidents: dict[int, _Incident]

    @classmethod
    def start(cls, mx: _Matrix, ids: list[dict], data_start: int | None = None) -> _State:
        n = mx.actual.shape[0]
        first_seen = _first_seen(mx.actual)
        if data_start is None:
            data_start = int(first_seen.min()) if n else 0
        return cls(
            history=mx.actual.copy(), flagged=np.zeros(mx.actual.shape, dtype=bool),
            first_seen=first_seen, data_start=data_start,
            unit=np.array([r["metric"] == UNIT_COST for r in ids], dtype=bool),
            cusum_hi=np.zeros(n), cusum_lo=np.zeros(n), incidents={},
        )


@dataclass
class _Period:
    """One period judged for every series at once."""

    expected: np.ndarray
    scale: np.ndarray
    diff: np.ndarray
    impact: np.ndarray
    pct: np.ndarray
    score: np.ndarray
    spike: np.ndarray
    drift: np.ndarray
    new: np.ndarray


def _judge(st: _State, mx: _Matrix, t: int, s: DetectorSettings) -> _Period:
    """Baseline, scale, score and the three rules for period `t`, vectorized over series."""
    # `baseline` over the lagged columns alone: judging every period must not touch the
    # whole history before it each time (quadratic in the lookback: 35 days of hours).
    expected, mad, n = _baseline_of(_state_lags(st, t, s.season, s.season_count),
                                    _state_lags(st, t, s.fallback_step, s.fallback_count), s)
    x = mx.actual[:, t]
    exists = ~np.isnan(x)
    scale = np.maximum(1.4826 * np.nan_to_num(mad), s.scale_floor_pct * np.abs(np.nan_to_num(expected)))
    scale = np.where(scale > 0, scale, 1e-9)
    diff = x - expected
    impact = np.where(st.unit, diff * np.nan_to_num(mx.volume[:, t]) / 1e6, diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(expected > 0, diff / expected, np.nan)
        score = diff / scale
        # CUSUM input: the log ratio in robust standard deviations, winsorized at 3.
        z = np.clip(np.log((x + 1e-9) / (expected + 1e-9)) / (scale / np.maximum(expected, 1e-9)), -3, 3)
    judged = exists & (n >= s.min_history) & (expected > 0)
    big = np.abs(impact) >= s.min_impact_usd
    abs_pct = np.abs(np.nan_to_num(pct))
    spike = judged & (np.abs(score) >= s.min_score) & big & (abs_pct >= s.min_impact_pct)
    # A spike is judged on its own; the CUSUM accumulates only the quieter periods.
    z = np.where(judged & ~spike, np.nan_to_num(z), 0.0)
    st.cusum_hi = np.maximum(0.0, st.cusum_hi + z - s.cusum_k)
    st.cusum_lo = np.minimum(0.0, st.cusum_lo + z + s.cusum_k)
    drift = s.drift & judged & ~spike & big & (abs_pct >= s.drift_min_pct) & (
        (st.cusum_hi > s.cusum_h) | (st.cusum_lo < -s.cusum_h)
    )
    # No history (a new customer), or a series back from zero: the dollar rule alone.
    # Series present from the first period are the data's start, not new ones.
    new = exists & ~st.unit & (x >= s.min_impact_usd) & (t - st.data_start >= s.min_history) & (
        (st.first_seen == t) | ((n >= s.min_history) & (expected == 0))
    )
    # Only increases are kept out of the baseline: a spike must not raise the bar for the
    # next one. Keeping dips out too would let a dip that recurs (every weekend, before
    # the same-weekday baseline has enough points) lock itself out of the baseline for
    # good. A new series' first period is its level, not an outlier.
    st.flagged[:, t] = (spike | drift) & (diff > 0)
    st.cusum_hi[drift] = 0.0
    st.cusum_lo[drift] = 0.0
    return _Period(expected, scale, diff, impact, pct, score, spike, drift, new)


def _fire(
    st: _State, ids: list[dict], ps: list[datetime], grain: str, t: int, i: int, p: _Period,
    x: float, s: DetectorSettings, out: list[dict],
) -> dict:
    """Open an incident for series i, or continue its open (or cooling-down) one."""
    new = bool(p.new[i])
    rule = "new_series" if new else ("spike" if p.spike[i] else "drift")
    direction = 1 if (new or p.diff[i] > 0) else -1
    inc = st.incidents.get(i)
    cooling = inc is not None and (inc.resolved_at is None or t - inc.resolved_at <= s.cooldown)
    if inc is not None and inc.direction == direction and cooling:
        status = "ongoing"
        inc.resolved_at = None
        inc.normal_run = 0
    else:
        if inc is not None and inc.resolved_at is None:
            # It turned around (a drop right after a spike): that incident is over.
            out.append(_resolved_row(ps[t], grain, ids[i], x, p.expected[i], inc))
        inc = _Incident(dedup_key(grain, **_id_args(ids[i]), start=ps[t]), t, direction)
        st.incidents[i] = inc
        status = "triggered"
    inc.consecutive += 1
    if p.expected[i] > 0:
        inc.ratios.append(float(x / p.expected[i]))
    return {
        "rule": rule, "direction": direction, "status": status, "inc": inc,
        "expected": 0.0 if new else p.expected[i], "impact": x if new else p.impact[i],
        "pct": None if new else p.pct[i], "score": None if new else p.score[i], "scale": p.scale[i],
    }


def _accept_if_lasting(st: _State, i: int, inc: _Incident, rule: str, t: int, s: DetectorSettings) -> None:
    """A shift that has lasted `accept_after` periods is the new normal: rescale the history
    before it to the new level, so the weekly pattern is kept and the alerts stop."""
    if inc.consecutive < s.accept_after or not inc.ratios or rule == "new_series":
        return
    st.history[i, : inc.start] *= float(np.median(inc.ratios[-s.accept_after:]))
    st.flagged[i, inc.start : t + 1] = False
    st.cusum_hi[i] = st.cusum_lo[i] = 0.0
    inc.consecutive = 0
    inc.ratios.clear()


def _id_args(series: dict) -> dict:
    return {"metric": series["metric"], "dimension": series["dimension"], "key": series["key"]}


def _explain(
    fired: dict[int, dict], ids: list[dict], mx: _Matrix, source: _LeafSource, t: int,
    s: DetectorSettings, planned: Sequence[PlannedEvent], ps: list[datetime],
) -> None:
    """Root causes of each new alert, and which alert of the same period explains it."""
    by_series = {(ids[i]["metric"], ids[i]["dimension"], ids[i]["key"]): i for i in fired}
    for i, row in fired.items():
        sid = ids[i]
        row["root_causes"] = []
        if row["status"] == "ongoing":
            continue  # an ongoing incident keeps the explanation it started with
        event = _planned(planned, sid["dimension"], sid["key"], ps[t].date())
        if event is not None:
            row["inc"].explained_by = f"planned: {event.description}"
            continue
        if sid["metric"] == UNIT_COST:
            row["root_causes"] = _unit_cost_causes(mx, ids, i, t)
            cost = by_series.get((COST, "model", sid["key"]))
            if cost is not None and fired[cost]["direction"] == row["direction"]:
                row["explain_to"] = cost
            continue
        lv = source.get()
        if lv is None:
            continue
        path = lv.walk(sid["dimension"], sid["key"], float(row["impact"]), t, s)
        row["root_causes"] = path
        # The first node of the path that alerted on its own explains this alert: its slice
        # is exactly that series, while deeper nodes are intersections of several.
        for node in path:
            j = by_series.get((sid["metric"], node["dimension"], node["key"]))
            if j is not None and j != i and fired[j]["direction"] == row["direction"]:
                row["explain_to"] = j
                break
    # Coarse alerts claim their explanation first; an edge that would close a loop (two
    # alerts each naming the other) is dropped, so every group keeps one alert that pages.
    parent: dict[int, int] = {}
    rank = {d: r for r, d in enumerate(("total", *LEAF_DIMENSIONS))}
    for i in sorted(fired, key=lambda i: (rank.get(ids[i]["dimension"], 99), i)):
        j = fired[i].get("explain_to")
        if j is None:
            continue
        root = j
        while root in parent and root != i:
            root = parent[root]
        if root != i:
            parent[i] = j
    for i, row in fired.items():
        if i not in parent or row["status"] != "triggered":
            continue
        root = parent[i]
        while root in parent:
            root = parent[root]
        row["inc"].explained_by = fired[root]["inc"].dedup_key


def _unit_cost_causes(mx: _Matrix, ids: list[dict], i: int, t: int) -> list[dict]:
    """A unit cost moves with its cost or against its volume: say which."""
    key = ids[i]["key"]
    cost_rows = [j for j, r in enumerate(ids) if r["metric"] == COST and r["dimension"] == "model" and r["key"] == key]
    if not cost_rows or t == 0:
        return []
    j = cost_rows[0]
    prev = slice(max(0, t - 7), t)
    with np.errstate(divide="ignore", invalid="ignore"):
        cost_change = mx.actual[j, t] / np.nanmedian(mx.actual[j, prev]) - 1
        vol_change = mx.volume[i, t] / np.nanmedian(mx.volume[i, prev]) - 1
    return [{"cost_change_pct": _round(cost_change), "token_change_pct": _round(vol_change)}]


def _round(v: float, digits: int = 4) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def _alert_row(ts: datetime, grain: str, sid: dict, actual: float, row: dict, s: DetectorSettings) -> dict:
    inc: _Incident = row["inc"]
    explained = inc.explained_by is not None
    severity = _severity(sid["metric"], row["rule"], row["direction"], float(row["impact"]), row["pct"], explained, s)
    status = row["status"]
    # An incident that grows past its severity while ongoing notifies again, under its key.
    if SEVERITIES.index(severity) < SEVERITIES.index(inc.severity):
        status = "escalated" if status == "ongoing" else status
        inc.severity = severity
    band = s.min_score * row["scale"]
    return {
        "period_start": ts, "usage_date": ts.date(), "grain": grain, **_id_args(sid),
        # Micro-dollars: float sums in another order differ around 1e-13, and a rerun of a
        # day must write the same figures.
        "actual": round(float(actual), 6), "expected": round(float(row["expected"]), 6),
        "lower": round(max(0.0, float(row["expected"] - band)), 6),
        "upper": round(float(row["expected"] + band), 6),
        "score": _round(row["score"]), "impact_usd": round(float(row["impact"]), 6),
        "impact_pct": _round(row["pct"]), "rule": row["rule"],
        "direction": "up" if row["direction"] > 0 else "down", "severity": severity,
        "root_causes": json.dumps(row["root_causes"]), "explained_by": inc.explained_by,
        "dedup_key": inc.dedup_key, "status": status,
    }


def _resolved_row(ts: datetime, grain: str, sid: dict, actual: float, expected: float, inc: _Incident) -> dict:
    return {
        "period_start": ts, "usage_date": ts.date(), "grain": grain, **_id_args(sid),
        "actual": round(float(np.nan_to_num(actual)), 6), "expected": round(float(np.nan_to_num(expected)), 6),
        "lower": None, "upper": None, "score": None, "impact_usd": 0.0, "impact_pct": None,
        "rule": "resolve", "direction": "up" if inc.direction > 0 else "down", "severity": "info",
        "root_causes": "[]", "explained_by": inc.explained_by, "dedup_key": inc.dedup_key,
        "status": "resolved",
    }
