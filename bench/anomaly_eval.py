"""Evaluation harness for the cost anomaly detector (`make bench-anomalies`).

Generates labelled daily cost series (weekly pattern, heavy-tailed noise, 210 days), plants
one incident per series (one-day spikes of 1.5x to 10x, level shifts, ramps, new series,
drops; planned launches that must NOT alert; control series with nothing) and scores, in
one run, the detector against two common baselines:

- `mean_3sigma`: alert when a day leaves the trailing 14-day mean +- 3 sigma;
- `day_over_day`: alert when a day moves more than 30% from the day before.

Both baselines get the same dollar floor as the detector, so the comparison is about the
statistics, not about ignoring small series. A baseline alert is a run of consecutive
alerting days (generous: a naive rule would page every day of the run); a detector alert
is a notification (a triggered or escalated incident), planned launches excepted.

Per anomaly type: precision (alerts inside an incident's window / alerts on that type's
series), recall, F1, detection delay (days from the incident's first day to its first
alert; median, p90) and alerts per detected incident. Writes the table to
bench/ANOMALIES.md and prints it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assets import anomaly_detection as ad

DAYS = 210
WARMUP = 56  # 8 weeks: alerts before this day are not scored (every method is still learning)
PER_TYPE = 40
START = date(2026, 1, 5)  # a Monday
WEEKLY = np.array([1.08, 1.1, 1.1, 1.08, 1.02, 0.72, 0.66])
TYPES = ("spike", "level_shift", "ramp", "new_series", "drop", "planned_launch", "control")
# Days after the incident's first day in which an alert still counts as detecting it.
WINDOW = {"spike": 0, "drop": 0, "level_shift": 3, "ramp": 35, "new_series": 0, "planned_launch": 14}
SETTINGS = ad.DAILY_SETTINGS


@dataclass(frozen=True)
class Incident:
    series: str
    kind: str
    day: int
    size: float  # spike / drop factor, shift factor, ramp end factor
    base_usd: float


def generate(seed: int = 2026) -> tuple[pl.DataFrame, list[Incident]]:
    """Labelled series: period, key, actual; one incident per series (none for control)."""
    rng = np.random.default_rng(seed)
    frames, incidents = [], []
    days = np.arange(DAYS)
    weekday = np.array([(START + timedelta(days=int(d))).weekday() for d in days])
    for kind in TYPES:
        for n in range(PER_TYPE):
            key = f"{kind}-{n:02d}"
            base = float(np.exp(rng.uniform(np.log(40), np.log(4000))))
            noise = np.exp(0.07 * rng.standard_t(5, DAYS))
            level = base * WEEKLY[weekday] * noise * (1 + 0.0008 * days)  # slow organic growth
            day = int(rng.integers(WARMUP + 14, DAYS - 40))
            size = 1.0
            if kind == "spike":
                size = float(rng.choice([1.5, 2.0, 3.0, 5.0, 8.0, 10.0]))
                level[day] *= size
            elif kind == "drop":
                size = float(rng.uniform(0.1, 0.5))
                level[day] *= size
            elif kind in ("level_shift", "planned_launch"):
                size = float(rng.uniform(1.5, 2.5) if kind == "planned_launch" or rng.random() < 0.7 else rng.uniform(0.3, 0.6))
                level[day:] *= size
            elif kind == "ramp":
                size = float(rng.uniform(1.8, 2.5))
                length = 28
                growth = np.clip((days - day + 1) / length, 0, 1)
                level *= size ** growth
            elif kind == "new_series":
                level[:day] = np.nan
            if kind != "control":
                incidents.append(Incident(key, kind, day, size, base))
            frames.append(pl.DataFrame({"day": days, "key": key, "actual": level}))
    series = pl.concat(frames).filter(pl.col("actual").is_not_nan())
    return series, incidents


def detector_alerts(series: pl.DataFrame, incidents: list[Incident]) -> pl.DataFrame:
    periods = [START + timedelta(days=d) for d in range(DAYS)]
    obs = series.select(
        pl.col("day").map_elements(lambda d: periods[d], return_dtype=pl.Date).alias("period"),
        pl.lit(ad.COST).alias("metric"), pl.lit("customer").alias("dimension"), "key", "actual",
        pl.lit(None, pl.Float64).alias("volume"),
    )
    planned = [
        ad.PlannedEvent("customer", i.series, periods[i.day], periods[i.day] + timedelta(days=6), "launch")
        for i in incidents if i.kind == "planned_launch"
    ]
    found = ad.detect(obs, periods, settings=SETTINGS, planned=planned)
    notified = found.filter(
        pl.col("status").is_in(ad.NOTIFY_STATUSES)
        & ~pl.col("explained_by").fill_null("").str.starts_with("planned:")
    )
    return notified.select(
        ((pl.col("usage_date") - pl.lit(START)).dt.total_days()).cast(pl.Int64).alias("day"), "key",
        (pl.col("severity") == "critical").alias("pages"),
    )


def _runs(flags: pl.DataFrame) -> pl.DataFrame:
    """Runs of consecutive alerting days per series, as one alert on the run's first day."""
    return (
        flags.filter("alert").sort("key", "day")
        .filter((pl.col("day").diff().over("key").fill_null(99)) > 1)
        .select("day", "key", pl.lit(False).alias("pages"))
    )


def mean_3sigma_alerts(series: pl.DataFrame) -> pl.DataFrame:
    prior = pl.col("actual").shift(1).over("key", order_by="day")
    mean = prior.rolling_mean(14, min_samples=14).over("key", order_by="day")
    std = prior.rolling_std(14, min_samples=14).over("key", order_by="day")
    flags = series.with_columns(mean=mean, std=std).with_columns(
        alert=((pl.col("actual") - pl.col("mean")).abs() > 3 * pl.col("std"))
        & ((pl.col("actual") - pl.col("mean")).abs() >= SETTINGS.min_impact_usd)
    )
    return _runs(flags.with_columns(pl.col("alert").fill_null(False)))


def day_over_day_alerts(series: pl.DataFrame, pct: float = 0.30) -> pl.DataFrame:
    prev = pl.col("actual").shift(1).over("key", order_by="day")
    flags = series.with_columns(prev=prev).with_columns(
        alert=((pl.col("actual") / pl.col("prev") - 1).abs() > pct)
        & ((pl.col("actual") - pl.col("prev")).abs() >= SETTINGS.min_impact_usd)
    )
    return _runs(flags.with_columns(pl.col("alert").fill_null(False)))


def score(alerts: pl.DataFrame, incidents: list[Incident], method: str) -> list[dict]:
    """Per-type precision, recall, F1, delays and alerts per incident for one method."""
    alerts = alerts.filter(pl.col("day") >= WARMUP)
    labels = pl.DataFrame(
        [{"key": i.series, "kind": i.kind, "start": i.day, "end": i.day + WINDOW[i.kind]} for i in incidents]
    )
    tagged = alerts.join(labels, on="key", how="left").with_columns(
        kind=pl.col("kind").fill_null("control"),
        hit=pl.col("start").is_not_null() & (pl.col("day") >= pl.col("start")) & (pl.col("day") <= pl.col("end"))
        & (pl.col("kind") != "planned_launch"),
    )
    rows = []
    for kind in TYPES:
        on_type = tagged.filter(pl.col("kind") == kind)
        inc = labels.filter(pl.col("kind") == kind)
        hits = on_type.filter("hit")
        first = hits.group_by("key").agg((pl.col("day").min()).alias("first"), pl.len().alias("n"))
        detected = inc.join(first, on="key", how="inner").with_columns(delay=pl.col("first") - pl.col("start"))
        tp, n_alerts = hits.height, on_type.height
        precision = tp / n_alerts if n_alerts else (1.0 if kind not in ("control", "planned_launch") else None)
        recall = detected.height / inc.height if inc.height else None
        if kind in ("control", "planned_launch"):
            precision, recall = (0.0 if n_alerts else 1.0), None
        f1 = 2 * precision * recall / (precision + recall) if recall and precision else (0.0 if recall is not None else None)
        delays = detected.get_column("delay").to_numpy()
        rows.append({
            "method": method, "type": kind, "incidents": inc.height, "alerts": n_alerts,
            "precision": precision, "recall": recall, "f1": f1,
            "delay_median": float(np.median(delays)) if delays.size else None,
            "delay_p90": float(np.percentile(delays, 90)) if delays.size else None,
            "alerts_per_incident": (detected.get_column("n").sum() / detected.height) if detected.height else None,
        })
    anomalies = [r for r in rows if r["type"] not in ("control", "planned_launch")]
    tp = sum((r["precision"] or 0) * r["alerts"] for r in anomalies)
    all_alerts = tagged.height
    recall = sum((r["recall"] or 0) * r["incidents"] for r in anomalies) / sum(r["incidents"] for r in anomalies)
    precision = tp / all_alerts if all_alerts else 0.0
    rows.append({
        "method": method, "type": "all", "incidents": sum(r["incidents"] for r in anomalies),
        "alerts": all_alerts, "precision": precision, "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "delay_median": None, "delay_p90": None, "alerts_per_incident": None,
    })
    return rows


def targets(det: pl.DataFrame, incidents: list[Incident], rows: list[dict]) -> list[tuple[str, str, bool]]:
    """The issue's targets, each with the measured figure and whether it is met."""
    det = det.filter(pl.col("day") >= WARMUP)
    by = {(r["method"], r["type"]): r for r in rows}
    label_of = {i.series: i for i in incidents}
    pages = det.filter("pages")
    page_hits = sum(
        1 for d, k in pages.select("day", "key").iter_rows()
        if k in label_of and label_of[k].kind != "planned_launch"
        and label_of[k].day <= d <= label_of[k].day + WINDOW[label_of[k].kind]
    )
    page_precision = page_hits / pages.height if pages.height else 1.0

    def recall_of(pred) -> float:
        chosen = [i for i in incidents if pred(i)]
        hit = {(k) for d, k in det.select("day", "key").iter_rows()
               if k in label_of and label_of[k].day <= d <= label_of[k].day + WINDOW[label_of[k].kind]}
        return sum(i.series in hit for i in chosen) / len(chosen)

    big_spikes = recall_of(lambda i: i.kind == "spike" and i.size >= 2 and i.base_usd * (i.size - 1) * 0.66 >= SETTINGS.min_impact_usd)
    shifts = recall_of(lambda i: i.kind == "level_shift" and abs(i.size - 1) >= 0.5)
    new_day1 = by[("detector", "new_series")]
    out = [
        ("precision of paging alerts >= 0.8", f"{page_precision:.2f} ({pages.height} pages)", page_precision >= 0.8),
        ("recall on spikes >= 2x above the dollar floor >= 0.9", f"{big_spikes:.2f}", big_spikes >= 0.9),
        ("recall on level shifts >= 50% >= 0.8", f"{shifts:.2f}", shifts >= 0.8),
        ("median detection delay 0 days (spikes, shifts, new series)",
         ", ".join(f"{by[('detector', k)]['delay_median']:.0f}" for k in ("spike", "level_shift", "new_series")),
         all(by[("detector", k)]["delay_median"] == 0 for k in ("spike", "level_shift", "new_series"))),
        ("new series caught on day 1", f"recall {new_day1['recall']:.2f}, p90 delay {new_day1['delay_p90']:.0f}",
         new_day1["recall"] == 1.0 and new_day1["delay_p90"] == 0),
    ]
    f1 = {m: by[(m, "all")]["f1"] for m in ("detector", "mean_3sigma", "day_over_day")}
    out.append(("better F1 than both baselines", ", ".join(f"{m} {v:.2f}" for m, v in f1.items()),
                f1["detector"] > max(f1["mean_3sigma"], f1["day_over_day"])))
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict], checks: list[tuple[str, str, bool]]) -> str:
    cols = ["type", "method", "incidents", "alerts", "precision", "recall", "f1", "delay_median", "delay_p90", "alerts_per_incident"]
    lines = [
        "# Cost anomaly detection: evaluation",
        "",
        (
            f"Generated by `make bench-anomalies` (bench/anomaly_eval.py): {PER_TYPE} series per "
            f"type, {DAYS} days each, weekly pattern and Student-t noise; scored from day {WARMUP}. "
            "Delays in days after the incident's first day; control and planned-launch rows count "
            "false alarms (precision 1.00 = none)."
        ),
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in sorted(rows, key=lambda r: (TYPES.index(r["type"]) if r["type"] in TYPES else 99, r["method"])):
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, value, ok in checks]
    return "\n".join(lines) + "\n"


def main() -> int:
    series, incidents = generate()
    det = detector_alerts(series, incidents)
    rows = (
        score(det, incidents, "detector")
        + score(mean_3sigma_alerts(series), incidents, "mean_3sigma")
        + score(day_over_day_alerts(series), incidents, "day_over_day")
    )
    checks = targets(det, incidents, rows)
    text = markdown(rows, checks)
    (Path(__file__).resolve().parent / "ANOMALIES.md").write_text(text)
    print(text)
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
