"""vLLM Prometheus counters -> tokens and prefill/decode seconds per deployment and hour."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import polars as pl
import pytest

from connectors.schemas import VLLM_HOURLY
from connectors.vllm import read_vllm_metrics, vllm_hourly

T0 = 1790812800  # 2026-10-01T00:00:00Z
LLAMA_0 = 'model_name="llama-3.1-70b-instruct",pod="vllm-llama-0"'
LLAMA_1 = 'model_name="llama-3.1-70b-instruct",pod="vllm-llama-1"'
SMALL = 'model_name="qwen2.5-7b",pod="vllm-small-0"'


def _sample(name: str, labels: str, value: float, minute: int) -> str:
    return f"{name}{{{labels}}} {value:g} {(T0 + minute * 60) * 1000}"


def _text() -> str:
    lines = ["# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
             "# TYPE vllm:prompt_tokens_total counter"]
    # llama-0: +1000 prompt / +200 generated each 30 min; restarts at 01:30 (counter -> 400).
    for minute, prompt, gen in [(0, 5000, 900), (30, 6000, 1100), (60, 7000, 1300),
                                (90, 400, 80), (120, 1400, 280)]:
        lines += [_sample("vllm:prompt_tokens_total", LLAMA_0, prompt, minute),
                  _sample("vllm:generation_tokens_total", LLAMA_0, gen, minute)]
    # llama-1 joins at 00:30.
    for minute, prompt, gen in [(30, 100, 10), (60, 600, 110)]:
        lines += [_sample("vllm:prompt_tokens_total", LLAMA_1, prompt, minute),
                  _sample("vllm:generation_tokens_total", LLAMA_1, gen, minute)]
    for minute, prefill, decode, ok_stop, ok_len in [(0, 10.0, 100.0, 50, 5), (30, 12.5, 130.0, 60, 5),
                                                    (60, 15.0, 170.5, 75, 6)]:
        lines += [
            _sample("vllm:request_prefill_time_seconds_sum", SMALL, prefill, minute),
            _sample("vllm:request_prefill_time_seconds_count", SMALL, ok_stop, minute),
            _sample("vllm:request_prefill_time_seconds_bucket", SMALL + ',le="0.5"', 3, minute),
            _sample("vllm:request_decode_time_seconds_sum", SMALL, decode, minute),
            _sample("vllm:request_success_total", SMALL + ',finished_reason="stop"', ok_stop,
                    minute),
            _sample("vllm:request_success_total", SMALL + ',finished_reason="length"', ok_len,
                    minute),
            _sample("vllm:num_requests_running", SMALL, 4, minute),  # a gauge: not read
        ]
    lines += ['vllm:prompt_tokens_total{pod="orphan"} 5 1790812800000',
              'vllm:generation_tokens_total{model_name="x"} NaN 1790812800000',
              'vllm:generation_tokens_total{model_name="x"} 12',
              "# EOF"]
    return "\n".join(lines) + "\n"


@pytest.fixture()
def samples():
    return read_vllm_metrics(gzip.compress(_text().encode()), source_file="vllm/metrics.prom.gz")


def test_only_counter_samples_are_rows_and_bad_ones_are_quarantined(samples) -> None:
    samples.check_balance()
    # 14 token samples + 3 x (prefill sum, decode sum, 2 success) + 3 broken lines.
    assert (samples.rows_read, samples.rows_written, samples.rows_quarantined) == (29, 26, 3)
    assert sorted(samples.quarantine["reason"].to_list()) == [
        "no model_name label: the deployment is unknown",
        "sample has no timestamp; save scrapes with their time",
        "unparseable value 'NaN'",
    ]


def test_hourly_increases_with_counter_reset_and_new_replica(samples) -> None:
    hourly = vllm_hourly(samples.rows)
    assert hourly.schema == pl.Schema(VLLM_HOURLY)
    llama = {r["hour_start"].hour: r for r in hourly.filter(
        pl.col("deployment") == "llama-3.1-70b-instruct").iter_rows(named=True)}
    # Hour 0: llama-0 5000 -> 6000 (its first sample is the baseline); llama-1 starts.
    assert (llama[0]["prompt_tokens"], llama[0]["generation_tokens"]) == (1000, 200)
    # Hour 1: llama-0 +1000 then restarts at 400 (+400); llama-1 +500 (generated:
    # +200, +80 after the restart, +100).
    assert (llama[1]["prompt_tokens"], llama[1]["generation_tokens"]) == (1900, 380)
    assert llama[1]["replicas"] == 2 and llama[1]["counter_resets"] == 2
    assert (llama[2]["prompt_tokens"], llama[2]["generation_tokens"]) == (1000, 200)
    small = hourly.filter(pl.col("deployment") == "qwen2.5-7b").row(0, named=True)
    assert small["hour_start"] == datetime(2026, 10, 1, tzinfo=UTC)
    assert small["prefill_seconds"] == pytest.approx(2.5)
    assert small["decode_seconds"] == pytest.approx(30.0)
    assert small["requests"] == 10  # stop +10, length +0
    small_1 = hourly.filter(pl.col("deployment") == "qwen2.5-7b").row(1, named=True)
    assert (small_1["prefill_seconds"], small_1["decode_seconds"], small_1["requests"]) == (
        pytest.approx(2.5), pytest.approx(40.5), 16)


def test_the_same_scrape_in_two_files_counts_once(samples) -> None:
    again = read_vllm_metrics(_text().encode(), source_file="vllm/copy.prom")
    once = vllm_hourly(samples.rows)
    twice = vllm_hourly(pl.concat([samples.rows, again.rows]))
    assert twice.equals(once)
