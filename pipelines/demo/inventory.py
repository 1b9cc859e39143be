"""The demo company's fleet inventory: `inventory/fleet.csv`.

Every instance that serves a deployment is listed from the day it starts. The spare node
(deployment None) is left out on purpose: its cost is in the bill and its GPUs are in DCGM,
but nobody owns it, so the marts must show it as unattributed.
"""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

from pipelines.demo.world import World

COLUMNS = ["hostname", "provider", "resource_id", "deployment", "valid_from", "valid_to"]


def write_inventory(world: World, landing: Path) -> dict:
    """Write `inventory/fleet.csv` under `landing`; returns {"files": [...], "rows": n}."""
    path = Path(landing) / "inventory" / "fleet.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "hostname": inst.hostname,
            "provider": inst.provider,
            "resource_id": inst.resource_id,
            "deployment": inst.deployment,
            "valid_from": (world.start + timedelta(days=inst.first_day)).isoformat(),
            "valid_to": "",
        }
        for inst in world.instances
        if inst.deployment is not None
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return {"files": [path.relative_to(landing).as_posix()], "rows": len(rows)}
