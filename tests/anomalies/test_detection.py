"""The detection library on hand-built series: baselines, rules, incidents, root causes."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from assets import anomaly_detection as ad

MONDAY = date(2026, 1, 5)
DAYS = [MONDAY + timedelta(days=i) for i in range(80)]


def _weekly(weekday: float, weekend: float, n: int = 80, wobble: float = 20.0) -> np.ndarray:
    """Weekdays at `weekday`, weekends at `weekend`, +-wobble alternating day by day."""
    base = np.array([weekend if (MONDAY + timedelta(days=i)).weekday() >= 5 else weekday for i in range(n)])
    return base + np.where(np.arange(n) % 2 == 0, -wobble, wobble)


def _obs(values: dict[str, np.ndarray], dimension: str = "customer") -> pl.DataFrame:
    rows = [
        {"period": DAYS[i], "metric": ad.COST, "dimension": dimension, "key": key, "actual": float(v), "volume": None}
        for key, series in values.items() for i, v in enumerate(series) if not np.isnan(v)
    ]
    return pl.DataFrame(rows, schema_overrides={"volume": pl.Float64})


def _notified(alerts: pl.DataFrame) -> pl.DataFrame:
    return alerts.filter(pl.col("status").is_in(ad.NOTIFY_STATUSES))


def test_baseline_is_the_same_weekday_median_with_its_mad() -> None:
    history = np.zeros((1, 63))
    history[0, [63 - 7 * k for k in range(1, 9)]] = [10, 20, 30, 40, 50, 60, 70, 80]
    expected, mad, n = ad.baseline(history, np.ones_like(history, dtype=bool), 63, ad.DetectorSettings())
    # median(10..80) = 45; |x - 45| = 35 25 15 5 5 15 25 35, median 20
    assert (expected[0], mad[0], n[0]) == (45.0, 20.0, 8)


def test_baseline_falls_back_to_the_28_day_median_below_four_same_weekdays() -> None:
    history = np.arange(1.0, 29.0)[None, :]  # index i holds i + 1
    usable = np.ones_like(history, dtype=bool)
    assert ad.baseline(history, usable, 28, ad.DetectorSettings())[0][0] == 11.5  # lags 7..28: 22 15 8 1
    usable[0, 0] = False  # three same-weekday points left: the last 28 days instead (2..28)
    expected, mad, n = ad.baseline(history, usable, 28, ad.DetectorSettings())
    assert (expected[0], mad[0], n[0]) == (15.0, 7.0, 27)


def test_spike_fires_on_score_dollars_and_percent_then_resolves() -> None:
    acme = _weekly(1000, 600)
    acme[63] = 4000  # Monday 2026-03-09
    acme[64] = 1250 + 20  # +25%: under the 50% rule
    alerts = ad.detect(_obs({"cust_acme": acme}), DAYS)
    spike = alerts.filter(pl.col("rule") == "spike").row(0, named=True)
    # Same-weekday median 1000, MAD 20 -> scale max(1.4826 x 20, 5% x 1000) = 50.
    assert spike["usage_date"] == date(2026, 3, 9)
    assert (spike["expected"], spike["impact_usd"], spike["impact_pct"], spike["score"]) == (1000, 3000, 3.0, 60.0)
    assert (spike["lower"], spike["upper"]) == (750, 1250)
    assert (spike["severity"], spike["status"], spike["direction"]) == ("critical", "triggered", "up")
    assert spike["dedup_key"] == ad.dedup_key("day", "cost", "customer", "cust_acme", datetime(2026, 3, 9))
    resolved = alerts.filter(pl.col("status") == "resolved").row(0, named=True)
    assert resolved["usage_date"] == date(2026, 3, 11)  # two normal days later
    assert resolved["dedup_key"] == spike["dedup_key"]
    assert alerts.height == 2
    # The spike stays out of the next Monday's baseline.
    rerun = ad.detect(_obs({"cust_acme": acme}), DAYS)
    assert rerun.drop("period_start").equals(alerts.drop("period_start"))


def test_new_series_fires_on_its_first_day_on_the_dollar_rule_alone() -> None:
    big = np.full(80, np.nan)
    big[40:] = 800.0
    tiny = np.full(80, np.nan)
    tiny[40:] = 10.0
    alerts = ad.detect(_obs({"cust_acme": _weekly(1000, 600), "cust_new": big, "cust_tiny": tiny}), DAYS)
    (row,) = _notified(alerts).rows(named=True)
    assert (row["key"], row["rule"], row["usage_date"]) == ("cust_new", "new_series", DAYS[40])
    assert (row["expected"], row["impact_usd"], row["severity"]) == (0.0, 800.0, "critical")


def test_level_shift_alerts_once_and_becomes_the_new_normal() -> None:
    shifted = _weekly(1000, 600)
    shifted[60:] *= 2
    alerts = ad.detect(_obs({"cust_acme": shifted}), DAYS)
    fired = alerts.filter(pl.col("status") != "resolved")
    assert fired.get_column("usage_date").to_list() == DAYS[60:63]  # accepted after 3 days
    assert fired.get_column("status").to_list() == ["triggered", "ongoing", "ongoing"]
    assert fired.get_column("dedup_key").n_unique() == 1
    # The weekly pattern survives the rescale: the next weekend is not a drop.
    assert alerts.filter(pl.col("status") == "resolved").get_column("usage_date").to_list() == [DAYS[64]]


def test_slow_ramp_is_caught_by_the_drift_detector() -> None:
    ramp = _weekly(1000, 600)
    ramp[56:] *= 1.03 ** np.arange(1, 25)
    alerts = ad.detect(_obs({"cust_acme": ramp}), DAYS)
    first = _notified(alerts).row(0, named=True)
    assert first["rule"] == "drift"
    assert first["severity"] == "warning"
    assert DAYS[56] < first["usage_date"] <= DAYS[70]


def test_planned_launch_is_recorded_but_never_pages() -> None:
    launch = _weekly(1000, 600)
    launch[60:] *= 2
    event = ad.PlannedEvent("customer", "cust_acme", DAYS[60], DAYS[66], "pricing page launch")
    alerts = ad.detect(_obs({"cust_acme": launch}), DAYS, planned=[event])
    assert alerts.filter(pl.col("severity") != "info").is_empty()
    assert set(alerts.get_column("explained_by")) == {"planned: pricing page launch"}


def test_runaway_customer_on_one_feature_pages_once_with_its_root_cause() -> None:
    rows = []
    for i, day in enumerate(DAYS):
        wobble = 10 if i % 2 else -10
        for customer, feature, cost in [("a", "x", 500), ("a", "y", 500), ("b", "x", 300), ("b", "y", 300)]:
            value = 3000 if (i == 63 and customer == "a" and feature == "x") else cost + wobble
            rows.append({"period": day, "provider": "openai", "model": "gpt-4o", "deployment": "gpt-4o",
                         "customer": customer, "feature": feature, "value": float(value)})
    leaves = pl.DataFrame(rows)
    alerts = ad.detect(ad.series_from_leaves(leaves), DAYS, leaves=leaves)
    new = _notified(alerts)
    # Every dimension sees it (one provider, model and deployment carry it all) ...
    assert sorted(new.get_column("dimension")) == ["customer", "deployment", "feature", "model", "provider", "total"]
    (page,) = new.filter(pl.col("severity") == "critical").rows(named=True)
    # Day 63 is odd: a/y sits at 510, so a = 3000 + 510 against a baseline of 1000.
    assert (page["dimension"], page["key"], page["impact_usd"]) == ("customer", "a", 2510.0)
    assert json.loads(page["root_causes"])[0] == {
        "dimension": "feature", "key": "x", "impact_usd": 2500.0, "share": round(2500 / 2510, 3),
    }
    # ... and all but the customer are grouped under the customer's incident.
    grouped = new.filter(pl.col("severity") == "info")
    assert grouped.height == 5
    assert set(grouped.get_column("explained_by")) == {page["dedup_key"]}


@pytest.mark.parametrize("metric", [ad.COST, ad.UNIT_COST])
def test_decreases_and_unit_costs_never_page(metric: str) -> None:
    series = _weekly(10_000, 6_000)
    series[63] = 20_000 if metric == ad.UNIT_COST else 2_000
    obs = _obs({"m": series}, dimension="model").with_columns(
        metric=pl.lit(metric), volume=pl.lit(1e6 if metric == ad.UNIT_COST else None, pl.Float64)
    )
    (row,) = _notified(ad.detect(obs, DAYS)).rows(named=True)
    assert row["severity"] == "warning"


def test_baseline_median_matches_numpy_nanmedian_row_by_row():
    """The sort-based median gives numpy's numbers exactly, NaN rows included."""
    import warnings

    from assets.anomaly_detection import _nanmedian

    a = np.array([
        [3.0, np.nan, 1.0, 2.0],        # odd count: 2
        [4.0, 1.0, np.nan, np.nan],     # even count: (1 + 4) / 2
        [np.nan, np.nan, np.nan, np.nan],
        [7.5, 7.5, -1.0, 100.0],        # (7.5 + 7.5) / 2
    ])
    got = _nanmedian(a)
    assert got[:2].tolist() == [2.0, 2.5] and np.isnan(got[2]) and got[3] == 7.5
    rng = np.random.default_rng(7)
    for width in (1, 2, 5, 28):
        m = rng.normal(size=(400, width)) * 1e3
        m[rng.random(m.shape) < 0.6] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmedian(m, axis=1)
        np.testing.assert_array_equal(_nanmedian(m), expected)
    assert _nanmedian(np.empty((3, 0))).shape == (3,)


def test_series_that_cannot_reach_the_dollar_floor_are_not_judged() -> None:
    # Daily floor $25. `small` jumps from 1 to 20 on the last day (x20, but a $19 impact:
    # span 20 < 25); `credit` swings between -15 and +12 (span 27, zero inside it: kept);
    # `big` sits at 100 and doubles on the last day (kept, and it alerts).
    small = np.full(80, 1.0)
    small[-1] = 20.0
    credit = np.where(np.arange(80) % 2 == 0, -15.0, 12.0)
    big = _weekly(100, 100, wobble=2.0)
    big[-1] = 200.0
    obs = _obs({"small": small, "credit": credit, "big": big})
    mx = ad._to_matrix(obs, [ad._as_datetime(d) for d in DAYS])
    kept = ad._that_can_alert(mx, ad.DAILY_SETTINGS)
    assert kept.ids.get_column("key").to_list() == ["big", "credit"]
    assert kept.actual.shape == (2, 80)
    # `credit` alerts once on a $27 drop (12 expected, -15 actual) though none of its
    # values reaches $25: why the span, not the largest value, decides. `big`: same-weekday
    # median 100 (98s and 102s), scale max(1.4826 x 2, 5 % x 100) = 5, so 200 scores 20.
    alerts = _notified(ad.detect(obs, DAYS))
    assert alerts.select("key", "usage_date", "impact_usd", "score").rows() == [
        ("credit", date(2026, 2, 24), -27.0, -45.0), ("big", DAYS[79], 100.0, 20.0)]
