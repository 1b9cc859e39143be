"""Real LLM traffic through the LiteLLM reader: the Azure LLM inference traces.

Each trace row (TIMESTAMP, ContextTokens, GeneratedTokens; Patel et al., "Splitwise") becomes
one LiteLLM spend-log row, with a customer, a model and a deployment the test assigns. The
token totals must survive exactly; they are computed here independently with the csv module.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from connectors.landing import LocalStore
from connectors.litellm import read_litellm

TRACES = ["AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv"]
CUSTOMERS = ["cust_acme", "cust_globex", "cust_initech"]
# (model_group, model, provider, api_base): one self-hosted deployment, two hosted APIs.
MODELS = [
    ("llama-3.1-70b-instruct", "meta-llama/Llama-3.1-70B-Instruct", "hosted_vllm",
     "http://10.0.12.4:8000/v1"),
    ("gpt-4o", "gpt-4o-2024-08-06", "openai", "https://api.openai.com/v1"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "anthropic",
     "https://api.anthropic.com/v1/messages"),
]


def _trace_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _to_spend_logs(name: str, rows: list[dict[str, str]]) -> bytes:
    lines = []
    for i, r in enumerate(rows):
        group, model, provider, api_base = MODELS[i % len(MODELS)]
        lines.append(json.dumps({
            "request_id": f"{name}-{i}", "call_type": "acompletion", "api_key": "hashed",
            # The trace's own timestamp: 7 fractional digits and no zone (taken as UTC).
            "startTime": r["TIMESTAMP"], "endTime": r["TIMESTAMP"],
            "prompt_tokens": int(r["ContextTokens"]),
            "completion_tokens": int(r["GeneratedTokens"]),
            "total_tokens": int(r["ContextTokens"]) + int(r["GeneratedTokens"]),
            "model": model, "model_group": group, "custom_llm_provider": provider,
            "api_base": api_base, "end_user": CUSTOMERS[i % len(CUSTOMERS)],
            "request_tags": [f"feature:{name}"], "metadata": {}, "spend": 0,
            "status": "success", "messages": {}, "response": {},
        }))
    return gzip.compress(("\n".join(lines) + "\n").encode())


@pytest.fixture(scope="module")
def traces(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    landing = tmp_path_factory.mktemp("landing")
    expected = {}
    for file in TRACES:
        rows = _trace_rows(conformance_dir / "llm_traces" / file)
        name = file.removeprefix("AzureLLMInferenceTrace_").removesuffix(".csv")
        target = landing / "gateway_logs" / "litellm" / "azure" / f"{name}.jsonl.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_to_spend_logs(name, rows))
        expected[name] = (len(rows), sum(int(r["ContextTokens"]) for r in rows),
                          sum(int(r["GeneratedTokens"]) for r in rows))
    store = LocalStore(landing)
    return expected, read_litellm(store, [o.key for o in store.list("gateway_logs")])


def test_every_trace_request_arrives(traces) -> None:
    expected, result = traces
    result.check_balance()
    assert result.rows_quarantined == 0
    assert expected["code"][0] == 8819 and expected["conv"][0] == 19366
    assert result.rows_written == 8819 + 19366


def test_token_totals_per_trace_are_exact(traces) -> None:
    expected, result = traces
    got = result.rows.group_by("feature").agg(
        pl.len(), pl.col("input_uncached_tokens").sum(), pl.col("output_tokens").sum(),
        pl.col("cache_read_tokens").sum(), pl.col("cache_write_tokens").sum())
    got = {r[0]: tuple(r[1:4]) for r in got.rows()}
    assert got == {name: counts for name, counts in expected.items()}
    assert result.rows.select(pl.col("cache_read_tokens", "cache_write_tokens").sum()).row(0) == (
        0, 0)


def test_attribution_the_test_assigned(traces) -> None:
    _, result = traces
    per_customer = dict(result.rows.group_by("customer_id").len().rows())
    assert sum(per_customer.values()) == 8819 + 19366
    assert per_customer["cust_acme"] == (8819 + 2) // 3 + (19366 + 2) // 3
    self_hosted = result.rows.filter("is_self_hosted")
    assert set(self_hosted["deployment"]) == {"llama-3.1-70b-instruct"}
    assert self_hosted.height == (8819 + 2) // 3 + (19366 + 2) // 3
    first = result.rows.filter(pl.col("request_id") == "code-0").row(0, named=True)
    assert first["ts_start"].isoformat() == "2023-11-16T18:17:03.979960+00:00"
