"""`inferledger generate`: the demo company's month, in the vendors' formats, with labels."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

from pipelines.demo.bill import write_bill
from pipelines.demo.gateway import write_gateway_logs
from pipelines.demo.inventory import write_inventory
from pipelines.demo.telemetry import write_telemetry
from pipelines.demo.world import World, build_world

LABELS_FILE = "anomaly_labels.json"


def generate(
    landing: Path, *, seed: int = 7, start: date = date(2026, 10, 1), days: int = 30,
    requests_per_day: int = 5000, gpus: int = 27,
) -> dict:
    """Write a deterministic landing folder; returns what was written, per source."""
    world = build_world(seed=seed, start=start, days=days, requests_per_day=requests_per_day, gpus=gpus)
    landing.mkdir(parents=True, exist_ok=True)
    summary = {
        "bill": write_bill(world, landing),
        "telemetry": write_telemetry(world, landing),
        "gateway_logs": write_gateway_logs(world, landing),
        "inventory": write_inventory(world, landing),
    }
    write_labels(world, landing)
    return summary


def write_labels(world: World, landing: Path) -> Path:
    """The planted anomalies, beside the data, for detectors to be scored against."""
    path = landing / LABELS_FILE
    labels = [{**asdict(a), "day": a.day.isoformat()} for a in world.anomalies]
    payload = {"seed": world.seed, "start": world.start.isoformat(), "days": world.days, "anomalies": labels}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def demo_range(labels_path: Path) -> tuple[date, date]:
    """The first and last day (inclusive) of a generated landing folder."""
    meta = json.loads(labels_path.read_text())
    start = date.fromisoformat(meta["start"])
    return start, start + timedelta(days=int(meta["days"]) - 1)
