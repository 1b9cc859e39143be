"""The demo company: its fleet, deployments, customers, features and the anomalies planted.

Every writer (bill, telemetry, gateway logs, inventory) draws from one `World`, so the
bill's instances, DCGM's hostnames and the gateway's deployments line up the way they do
in a real company. Everything is a pure function of the seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class Instance:
    provider: str  # "AWS" (written to CUR) or "Microsoft" (written to the FOCUS export)
    instance_type: str
    resource_id: str  # i-... for AWS, the ARM resource id for Azure
    hostname: str
    region: str
    gpu_model: str  # DCGM modelName, e.g. "NVIDIA H100 80GB HBM3"
    gpus: int
    on_demand_usd_per_hour: float
    deployment: str | None  # None: in the bill and in telemetry, but in no inventory
    savings_plan_covered: bool = False
    first_day: int = 0  # index of the first day the instance runs (level shift)


@dataclass(frozen=True)
class Deployment:
    name: str  # LiteLLM model_group
    model: str  # served model name
    api_base: str
    weight: float  # share of self-hosted traffic


@dataclass(frozen=True)
class HostedModel:
    provider: str  # LiteLLM custom_llm_provider: openai, anthropic
    model: str
    weight: float


@dataclass(frozen=True)
class Customer:
    customer_id: str
    weight: float
    first_day: int = 0


@dataclass(frozen=True)
class Anomaly:
    kind: str  # spike, level_shift, new_customer
    day: date
    dimension: str  # customer, deployment, provider, total
    key: str
    description: str
    factor: float = 1.0


@dataclass
class World:
    seed: int
    start: date
    days: int
    requests_per_day: int
    instances: list[Instance]
    deployments: list[Deployment]
    hosted_models: list[HostedModel]
    customers: list[Customer]
    features: dict[str, float]
    anomalies: list[Anomaly]
    self_hosted_share: float = 0.7
    aws_account_id: str = "111122223333"
    savings_plan_arn: str = "arn:aws:savingsplans::111122223333:savingsplan/4b9e6f2a-0c1d-4e5f-8a7b-1c2d3e4f5a6b"
    savings_plan_hourly_commitment: float = 70.0
    api_keys: dict[str, str] = field(default_factory=dict)  # team -> plaintext key (hashed on ingest)

    @property
    def day_list(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def hour_starts(self, day: date) -> list[datetime]:
        base = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return [base + timedelta(hours=h) for h in range(24)]

    def day_index(self, day: date) -> int:
        return (day - self.start).days

    def instance_active(self, inst: Instance, day: date) -> bool:
        return self.day_index(day) >= inst.first_day

    def traffic_multiplier(self, ts: datetime) -> float:
        """Diurnal and weekly shape of request volume, 1.0 on an average hour."""
        hour = ts.hour + ts.minute / 60
        diurnal = 1.0 + 0.45 * math.sin((hour - 9) / 24 * 2 * math.pi)
        weekly = 0.72 if ts.weekday() >= 5 else 1.1
        return diurnal * weekly

    def customer_weights(self, day: date) -> list[tuple[Customer, float]]:
        idx = self.day_index(day)
        out = []
        for c in self.customers:
            if idx < c.first_day:
                continue
            w = c.weight
            for a in self.anomalies:
                if a.dimension == "customer" and a.key == c.customer_id and a.kind == "spike" and a.day == day:
                    w *= a.factor
            out.append((c, w))
        return out


GPU_MODELS = {
    "p5.48xlarge": ("NVIDIA H100 80GB HBM3", 8, 98.32),
    "g6e.xlarge": ("NVIDIA L40S", 1, 1.861),
    "g6e.12xlarge": ("NVIDIA L40S", 4, 10.493),
    "Standard_ND96isr_H100_v5": ("NVIDIA H100 80GB HBM3", 8, 98.32),
}


def build_world(
    *, seed: int = 7, start: date = date(2026, 10, 1), days: int = 30,
    requests_per_day: int = 5000, gpus: int = 27,
) -> World:
    """A company serving three open models on its own GPUs and two hosted APIs.

    `gpus` sizes the fleet: whole p5.48xlarge (8 GPUs) nodes first, the rest as g6e nodes.
    """
    rng = random.Random(seed)

    def iid() -> str:
        return "i-0" + "".join(rng.choice("0123456789abcdef") for _ in range(16))

    deployments = [
        Deployment("llama-3.1-70b-instruct", "meta-llama/Llama-3.1-70B-Instruct", "http://10.0.12.4:8000/v1", 0.55),
        Deployment("qwen2.5-72b-instruct", "Qwen/Qwen2.5-72B-Instruct", "http://10.0.13.7:8000/v1", 0.30),
        Deployment("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "http://10.0.14.2:8000/v1", 0.15),
    ]
    instances: list[Instance] = []
    remaining = max(gpus, 1)
    # The big models on H100 nodes; the first AWS node is Savings-Plan covered.
    n_p5 = max(1, min(2, remaining // 8))
    for i in range(n_p5):
        instances.append(Instance("AWS", "p5.48xlarge", iid(), f"ip-10-0-12-{4 + i}.ec2.internal", "us-east-1",
                                  *GPU_MODELS["p5.48xlarge"], deployment=deployments[0].name,
                                  savings_plan_covered=(i == 0)))
        remaining -= 8
    # Qwen on Azure H100 (the FOCUS export), one node.
    if remaining >= 8:
        instances.append(Instance(
            "Microsoft", "Standard_ND96isr_H100_v5",
            "/subscriptions/5c7d1a2e-3f4b-4c5d-8e9f-0a1b2c3d4e5f/resourceGroups/inference/providers/"
            "Microsoft.Compute/virtualMachines/nd-h100-qwen-0",
            "nd-h100-qwen-0", "eastus", *GPU_MODELS["Standard_ND96isr_H100_v5"],
            deployment=deployments[1].name))
        remaining -= 8
    # Small model on L40S; one spare node with no deployment (unattributed) and, halfway
    # through, an extra node for the small model (a level shift in the bill).
    n_g6e = max(3, remaining)
    for i in range(n_g6e):
        spare = i == n_g6e - 1
        instances.append(Instance(
            "AWS", "g6e.xlarge", iid(), f"ip-10-0-14-{2 + i}.ec2.internal", "us-east-1",
            *GPU_MODELS["g6e.xlarge"], deployment=None if spare else deployments[2].name,
            first_day=(days // 2 if i == 1 and not spare else 0)))

    hosted = [
        HostedModel("openai", "gpt-4o", 0.45),
        HostedModel("openai", "gpt-4o-mini", 0.30),
        HostedModel("anthropic", "claude-sonnet-4-5", 0.25),
    ]
    customers = [Customer(f"cust_{name}", w) for name, w in [
        ("acme", 0.30), ("globex", 0.22), ("initech", 0.16), ("umbrella", 0.12),
        ("hooli", 0.08), ("stark", 0.07), ("wayne", 0.05),
    ]]
    new_day = min(days - 1, max(1, (2 * days) // 3))
    customers.append(Customer("cust_piedpiper", 0.60, first_day=new_day))
    features = {"chat-assistant": 0.45, "doc-summarize": 0.25, "code-review": 0.18, "search-rerank": 0.12}
    spike_day = start + timedelta(days=min(days - 1, max(0, days // 3)))
    anomalies = [
        Anomaly("spike", spike_day, "customer", "cust_globex",
                "one-day spike: cust_globex sends 8x its usual traffic", factor=8.0),
        Anomaly("new_customer", start + timedelta(days=new_day), "customer", "cust_piedpiper",
                "new big customer cust_piedpiper starts sending traffic"),
    ]
    if any(i.first_day for i in instances):
        shift = next(i for i in instances if i.first_day)
        anomalies.append(Anomaly("level_shift", start + timedelta(days=shift.first_day), "deployment",
                                 shift.deployment or "", f"level shift: {shift.instance_type} "
                                 f"{shift.resource_id} added to {shift.deployment}"))
    return World(seed=seed, start=start, days=days, requests_per_day=requests_per_day,
                 instances=instances, deployments=deployments, hosted_models=hosted,
                 customers=customers, features=features, anomalies=anomalies,
                 api_keys={"platform": "sk-demo-platform-" + "".join(rng.choice("abcdef0123456789") for _ in range(24)),
                           "search": "sk-demo-search-" + "".join(rng.choice("abcdef0123456789") for _ in range(24))})
