"""LiteLLM spend logs: disjoint token buckets, attribution, quarantine, secrets kept out."""

from __future__ import annotations

import gzip
import hashlib
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from connectors.landing import LocalStore
from connectors.litellm import read_litellm, read_litellm_jsonl
from connectors.schemas import GATEWAY_REQUESTS

SECRET_PROMPT = "TOP-SECRET-PROMPT-7f3a9c"
SECRET_KEY = "sk-live-PLANTED-91b2c3d4e5f6"
LITELLM_TOKEN = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"


def _row(request_id: str, **over: object) -> dict:
    row = {
        "request_id": request_id, "call_type": "acompletion", "api_key": SECRET_KEY,
        "spend": 0.0, "total_tokens": 0, "prompt_tokens": 0, "completion_tokens": 0,
        "startTime": "2026-10-01T10:00:00.000Z", "endTime": "2026-10-01T10:00:01.250Z",
        "completionStartTime": "2026-10-01T10:00:00.400Z", "model": "gpt-4o-2024-08-06",
        "model_id": "d1f0", "model_group": "gpt-4o", "custom_llm_provider": "openai",
        "api_base": "https://api.openai.com/v1", "user": "", "end_user": "cust_acme",
        "team_id": "team-platform", "cache_hit": "False", "cache_key": "Cache OFF",
        "request_tags": ["feature:chat-assistant", "env:prod"],
        "metadata": {"user_api_key": LITELLM_TOKEN,
                     "user_api_key_team_id": "team-platform"},
        "requester_ip_address": "10.1.2.3", "session_id": "s-1", "status": "success",
        "messages": [{"role": "user", "content": SECRET_PROMPT + " " + SECRET_KEY}],
        "response": {"choices": [{"message": {"content": SECRET_PROMPT}}]},
        "proxy_server_request": {"headers": {"authorization": "Bearer " + SECRET_KEY}},
    }
    row.update(over)
    return row


OPENAI_CACHED = _row(
    "req-openai", spend=0.00872, prompt_tokens=3000, completion_tokens=250, total_tokens=3250,
    metadata={"user_api_key_team_id": "team-platform", "additional_usage_values": {
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": None},
        "completion_tokens_details": {"reasoning_tokens": 0}}},
)
# Anthropic said input_tokens=200, cache_creation=1500, cache_read=4000, output=300;
# LiteLLM logs prompt_tokens = 200 + 1500 + 4000 = 5700.
ANTHROPIC_CACHE = _row(
    "req-anthropic", spend="1.1925e-02", prompt_tokens=5700, completion_tokens=300,
    total_tokens=6000, model="claude-sonnet-4-5-20250929", model_group="claude-sonnet-4-5",
    custom_llm_provider="anthropic", api_base="https://api.anthropic.com/v1/messages",
    end_user="", request_tags=json.dumps(["feature:doc-summarize"]),
    metadata=json.dumps({"customer_id": "cust_globex", "additional_usage_values": {
        "cache_read_input_tokens": 4000, "cache_creation_input_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 4000, "cache_creation_tokens": 1500}}}),
)
SELF_HOSTED = _row(
    "req-vllm", spend=0, prompt_tokens=812, completion_tokens=95, total_tokens=907,
    model="meta-llama/Llama-3.1-70B-Instruct", model_group="llama-3.1-70b-instruct",
    custom_llm_provider="hosted_vllm", api_base="http://10.0.12.4:8000/v1", end_user=None,
    user="user-42", request_tags=[], metadata={"feature": "code-review"},
)
PRIVATE_OPENAI_COMPATIBLE = _row(
    "req-private", prompt_tokens=10, completion_tokens=5, model="my-model", model_group="",
    model_id="", custom_llm_provider="openai", api_base="http://192.168.4.20:8080/v1",
    request_tags=None,
)
NEGATIVE = _row("req-negative", prompt_tokens=-5, completion_tokens=10)
FAILURE = _row("req-failed", status="failure", spend=0, model_group="gpt-4o-mini")


def _jsonl(rows: list[dict | str]) -> bytes:
    return ("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture()
def two_files(tmp_path: Path) -> tuple[LocalStore, list[str]]:
    day = tmp_path / "gateway_logs" / "litellm" / "2026" / "10" / "01"
    day.mkdir(parents=True)
    first = [OPENAI_CACHED, ANTHROPIC_CACHE,
             '{"request_id": "req-broken", "messages": "' + SECRET_PROMPT + '", ',
             SELF_HOSTED, "", NEGATIVE]
    second = [PRIVATE_OPENAI_COMPATIBLE, dict(OPENAI_CACHED), FAILURE]
    (day / "spend_logs-0.jsonl.gz").write_bytes(gzip.compress(_jsonl(first)))
    (day / "spend_logs-1.jsonl").write_bytes(_jsonl(second))
    store = LocalStore(tmp_path)
    return store, [o.key for o in store.list("gateway_logs/litellm")]


def test_rows_balance_and_quarantine_reasons_name_the_line(two_files) -> None:
    store, keys = two_files
    result = read_litellm(store, keys)
    # 5 non-blank lines in the first file, 3 in the second.
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (8, 5, 3)
    assert result.rows.schema == pl.Schema(GATEWAY_REQUESTS)
    q = {r["row_number"]: r for r in result.quarantine.iter_rows(named=True)}
    assert q[3]["reason"].startswith("line 3: malformed JSON")
    assert q[3]["source_file"].endswith("spend_logs-0.jsonl.gz")
    assert q[6]["reason"] == "negative prompt_tokens (-5)"
    assert q[2]["reason"] == (
        "duplicate request_id 'req-openai' (first seen in "
        "gateway_logs/litellm/2026/10/01/spend_logs-0.jsonl.gz line 1)")
    assert q[2]["source_file"].endswith("spend_logs-1.jsonl")
    assert sorted(result.rows["request_id"]) == [
        "req-anthropic", "req-failed", "req-openai", "req-private", "req-vllm"]


def test_token_buckets_are_disjoint(two_files) -> None:
    rows = read_litellm(*two_files).rows
    buckets = {
        r["request_id"]: (r["input_uncached_tokens"], r["cache_read_tokens"],
                          r["cache_write_tokens"], r["output_tokens"], r["reasoning_tokens"])
        for r in rows.iter_rows(named=True)
    }
    # OpenAI: prompt 3000 includes 1024 cached.
    assert buckets["req-openai"] == (1976, 1024, 0, 250, 0)
    # Anthropic through LiteLLM: 5700 - 4000 read - 1500 written = Anthropic's input_tokens.
    assert buckets["req-anthropic"] == (200, 4000, 1500, 300, 0)
    assert buckets["req-vllm"] == (812, 0, 0, 95, 0)


def test_attribution_cost_and_self_hosting(two_files) -> None:
    rows = {r["request_id"]: r for r in read_litellm(*two_files).rows.iter_rows(named=True)}
    openai, anthropic, vllm = rows["req-openai"], rows["req-anthropic"], rows["req-vllm"]
    assert (openai["customer_id"], openai["feature"], openai["deployment"]) == (
        "cust_acme", "chat-assistant", "gpt-4o")
    assert openai["gateway_reported_cost"] == Decimal("0.00872")
    assert openai["latency_ms"] == pytest.approx(1250.0)
    assert openai["team_id"] == "team-platform" and openai["status"] == "success"
    assert openai["is_self_hosted"] is False and openai["provider"] == "openai"
    assert (openai["model_requested"], openai["model_served"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    # metadata as JSON text, customer from metadata.customer_id, spend in exponent form.
    assert (anthropic["customer_id"], anthropic["feature"]) == ("cust_globex", "doc-summarize")
    assert anthropic["gateway_reported_cost"] == Decimal("0.011925")
    # No end_user: the `user` field; feature from metadata.feature.
    assert (vllm["customer_id"], vllm["feature"], vllm["is_self_hosted"]) == (
        "user-42", "code-review", True)
    private = rows["req-private"]
    assert (private["deployment"], private["is_self_hosted"], private["feature"]) == (
        "192.168.4.20", True, "unknown")
    assert rows["req-failed"]["status"] == "failure"
    assert openai["api_key_hash"] == hashlib.sha256(SECRET_KEY.encode()).hexdigest()


def test_self_hosted_deployments_from_inventory_and_customer_pseudonyms() -> None:
    data = _jsonl([_row("r1", custom_llm_provider="openai", model_group="team-finetune",
                        api_base="https://inference.example.com/v1")])
    plain = read_litellm_jsonl(data, source_file="a.jsonl").rows.row(0, named=True)
    assert plain["is_self_hosted"] is False
    result = read_litellm_jsonl(data, source_file="a.jsonl",
                                self_hosted_deployments=frozenset({"team-finetune"}),
                                customer_salt="pepper")
    row = result.rows.row(0, named=True)
    assert row["is_self_hosted"] is True
    assert row["customer_id"] == hashlib.sha256(b"peppercust_acme").hexdigest()[:16]


def test_customer_named_in_a_request_tag_is_hashed_with_the_salt() -> None:
    data = _jsonl([
        _row("r1", request_tags=["feature:chat-assistant", "customer:cust_acme"]),
        _row("r2", request_tags=["feature:chat-assistant", "env:prod"]),
        _row("r3", end_user="", request_tags=["End_User: cust_globex", "env:prod"])])
    plain = read_litellm_jsonl(data, source_file="t.jsonl").rows
    assert "cust_acme" in plain["tags"][0]
    rows = {r["request_id"]: r for r in read_litellm_jsonl(
        data, source_file="t.jsonl", customer_salt="pepper").rows.iter_rows(named=True)}
    acme = hashlib.sha256(b"peppercust_acme").hexdigest()[:16]
    globex = hashlib.sha256(b"peppercust_globex").hexdigest()[:16]
    assert json.loads(rows["r1"]["tags"]) == ["feature:chat-assistant", f"customer:{acme}"]
    assert rows["r1"]["customer_id"] == acme  # the tag and the column name the same pseudonym
    assert rows["r2"]["tags"] == plain["tags"][1]  # no customer tag: kept as written
    assert json.loads(rows["r3"]["tags"]) == [f"End_User:{globex}", "env:prod"]
    assert rows["r1"]["feature"] == "chat-assistant"
    for row in rows.values():
        assert "cust_acme" not in row["tags"] and "cust_globex" not in row["tags"]


def test_duplicate_within_one_file_and_cached_above_prompt() -> None:
    data = _jsonl([
        _row("dup", prompt_tokens=10), _row("dup", prompt_tokens=10),
        _row("too-cached", prompt_tokens=100, metadata={"additional_usage_values": {
            "cache_read_input_tokens": 80, "cache_creation_input_tokens": 30}}),
        _row("", prompt_tokens=1), _row("no-start", startTime=None),
    ])
    result = read_litellm_jsonl(data, source_file="b.jsonl")
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (5, 1, 4)
    reasons = dict(result.quarantine.select("row_number", "reason").iter_rows())
    assert reasons[2] == "duplicate request_id 'dup' (first seen in b.jsonl line 1)"
    assert reasons[3] == "cached tokens (80 read + 30 written) exceed prompt_tokens (100)"
    assert reasons[4] == "missing request_id"
    assert reasons[5] == "missing startTime"


def test_prompts_and_keys_never_reach_any_output(two_files) -> None:
    result = read_litellm(*two_files)
    for frame in (result.rows, result.quarantine):
        assert "messages" not in frame.columns and "response" not in frame.columns
        for col, dtype in frame.schema.items():
            if dtype == pl.String:
                text = "\n".join(v for v in frame[col].to_list() if v is not None)
                assert SECRET_PROMPT not in text, col
                assert SECRET_KEY not in text, col
                assert LITELLM_TOKEN not in text, col  # metadata.user_api_key


@pytest.fixture(scope="module")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from pipelines.demo.gateway import write_gateway_logs
    from pipelines.demo.world import build_world

    world = build_world(days=2, requests_per_day=200)
    landing = tmp_path_factory.mktemp("landing")
    info = write_gateway_logs(world, landing)
    deployments = frozenset(d.name for d in world.deployments)
    result = read_litellm(LocalStore(landing), info["files"],
                          self_hosted_deployments=deployments)
    return world, landing, info, result


def test_demo_gateway_logs_read_back_whole(demo_gateway) -> None:
    world, _, info, result = demo_gateway
    assert info["files"] == ["gateway_logs/litellm/2026/10/01/spend_logs-0.jsonl.gz",
                             "gateway_logs/litellm/2026/10/02/spend_logs-0.jsonl.gz"]
    # Day 1 is the cust_globex 8x spike day; day 2 has the new customer: both above 200.
    assert info["per_day"] == {"2026-10-01": 553, "2026-10-02": 365}
    assert result.rows_read == result.rows_written == info["requests"] == 918
    assert result.rows_quarantined == 0
    assert result.rows["request_id"].n_unique() == 918
    by_day = dict(result.rows.group_by(pl.col("ts_start").dt.day()).len().iter_rows())
    assert by_day == {1: 553, 2: 365}
    assert set(result.rows["feature"]) == set(world.features)
    first_day = result.rows.filter(pl.col("ts_start").dt.day() == 1)
    assert "cust_piedpiper" not in set(first_day["customer_id"])
    share = result.rows["is_self_hosted"].mean()
    assert 0.62 < share < 0.78
    assert set(result.rows.filter("is_self_hosted")["deployment"]) == {
        d.name for d in world.deployments}
    assert result.rows.filter(pl.col("status") == "failure").height >= 1


def test_demo_gateway_spend_is_list_price_of_the_disjoint_buckets(demo_gateway) -> None:
    from pipelines.demo.gateway import PRICES

    _, landing, info, result = demo_gateway
    raw = pl.concat([pl.read_ndjson(gzip.decompress((landing / f).read_bytes()),
                                    schema={"request_id": pl.String, "prompt_tokens": pl.Int64,
                                            "api_key": pl.String})
                     for f in info["files"]])
    rows = result.rows.join(raw, on="request_id")
    buckets = rows["input_uncached_tokens"] + rows["cache_read_tokens"] + rows["cache_write_tokens"]
    assert (buckets == rows["prompt_tokens"]).all()
    assert rows.filter(pl.col("provider") == "anthropic")["cache_write_tokens"].sum() > 0
    assert rows.filter(pl.col("provider") == "openai")["cache_read_tokens"].sum() > 0
    for model, (p_in, p_read, p_write, p_out) in PRICES.items():
        part = rows.filter(pl.col("model_requested") == model)
        expected = (part["input_uncached_tokens"] * p_in + part["cache_read_tokens"] * p_read
                    + part["cache_write_tokens"] * p_write + part["output_tokens"] * p_out) / 1e6
        reported = part["gateway_reported_cost"].cast(pl.Float64)
        assert part.height > 0
        assert ((reported - expected).abs() < 1e-9).all(), model
    assert rows.filter("is_self_hosted")["gateway_reported_cost"].cast(pl.Float64).sum() == 0
    # api_key holds LiteLLM's hashed token; the lake keeps a hash of that, never the value.
    assert not set(rows["api_key"]) & set(rows["api_key_hash"])


@pytest.mark.slow
def test_demo_gateway_month_writes_quickly(tmp_path: Path) -> None:
    import time

    from pipelines.demo.gateway import write_gateway_logs
    from pipelines.demo.world import build_world

    started = time.perf_counter()
    info = write_gateway_logs(build_world(), tmp_path)
    assert time.perf_counter() - started < 20
    assert len(info["files"]) == 30


class _RemoteStore(LocalStore):
    """A store without local paths, as S3 is: objects are downloaded to be read."""

    def local_path(self, key: str) -> None:
        return None


@pytest.mark.parametrize(("store_class", "exact"), [
    (LocalStore, False), (_RemoteStore, False),
    # DuckDB's reader refuses every file: the line reader reads them all, 4 KB at a time.
    (LocalStore, True)])
def test_batches_match_whole_reading_and_find_copies_across_batches(
        tmp_path: Path, store_class: type, exact: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors import litellm
    from connectors.litellm import iter_litellm

    streamed = []
    stream = litellm._stream

    def spy(path: Path):
        streamed.append(path)
        if exact:
            raise litellm._FastPathRefused("refused for the test")
        yield from stream(path)

    monkeypatch.setattr(litellm, "_stream", spy)

    rows = [_row(f"r{i}", prompt_tokens=10 + i, completion_tokens=i) for i in range(40)]
    first = _jsonl(rows[:25])
    # Two gzip members back to back (what `cat a.gz b.gz` makes), the second repeating r3.
    second = _jsonl([*rows[25:], _row("r3", prompt_tokens=13, completion_tokens=3)])
    folder = tmp_path / "gateway_logs" / "litellm"
    folder.mkdir(parents=True)
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(first) + gzip.compress(second))
    (folder / "b.jsonl").write_bytes(_jsonl([_row("r7", prompt_tokens=17, completion_tokens=7),
                                             _row("r99", prompt_tokens=1)]))
    store = store_class(tmp_path)
    keys = [o.key for o in store.list("gateway_logs")]
    parts = list(iter_litellm(store, keys, chunk_bytes=4096))
    for part in parts:
        part.check_balance()
    rows_out = pl.concat([p.rows for p in parts]).sort("request_id")
    assert rows_out.height == 41
    assert rows_out["input_uncached_tokens"].sum() == sum(10 + i for i in range(40)) + 1
    reasons = sorted(pl.concat([p.quarantine for p in parts])["reason"].to_list())
    assert reasons == [
        "duplicate request_id 'r3' (first seen in gateway_logs/litellm/a.jsonl.gz line 4)",
        "duplicate request_id 'r7' (first seen in gateway_logs/litellm/a.jsonl.gz line 8)",
    ]
    whole = read_litellm(store, keys)
    assert whole.rows.sort("request_id").equals(rows_out)
    # Every file went to DuckDB's reader, the remote ones as downloaded copies, since removed.
    assert len(streamed) == 4
    assert all(p.name.endswith(("a.jsonl.gz", "b.jsonl")) for p in streamed)
    assert (not any(p.exists() for p in streamed)) == (store_class is _RemoteStore)


def test_a_malformed_line_late_in_a_file_continues_line_by_line(tmp_path: Path) -> None:
    rows = [json.dumps(_row(f"r{i}", prompt_tokens=i)) for i in range(300)]
    rows[250] = '{"request_id": "r250", "prompt_tokens": '  # cut off mid-line
    (tmp_path / "big.jsonl").write_text("\n".join(rows) + "\n")
    result = read_litellm(LocalStore(tmp_path), ["big.jsonl"])
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (300, 299, 1)
    assert result.quarantine.row(0, named=True)["row_number"] == 251
    assert result.rows["request_id"].n_unique() == 299


def test_a_line_longer_than_the_fast_readers_limit_is_read_exactly(tmp_path: Path, monkeypatch) -> None:
    from connectors import litellm

    # DuckDB refuses a line over twice the limit (its buffer, 32 MiB at least).
    monkeypatch.setattr(litellm, "MAX_FAST_LINE_BYTES", 16 * 2**20)
    long_body = _row("r-long", prompt_tokens=7000, completion_tokens=9,
                     messages=[{"role": "user", "content": "x" * (40 * 2**20)}])
    refused = []
    stream = litellm._stream

    def watched(path):
        try:
            yield from stream(path)
        except litellm._FastPathRefused as e:
            refused.append(str(e))
            raise

    monkeypatch.setattr(litellm, "_stream", watched)
    rows = [_row(f"r{i}", prompt_tokens=i, completion_tokens=1) for i in range(5)]
    rows.insert(3, long_body)
    (tmp_path / "long.jsonl").write_bytes(_jsonl(rows))
    result = read_litellm(LocalStore(tmp_path), ["long.jsonl"])
    result.check_balance()
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (6, 6, 0)
    # 0+1+2 before the long line, 7000 in it, 3+4 after: none lost, none counted twice.
    assert result.rows["input_uncached_tokens"].sum() == 7010
    assert result.rows["output_tokens"].sum() == 14
    assert len(refused) == 1 and "maximum_object_size" in refused[0]


def test_truncated_gzip_is_a_whole_file_error(tmp_path: Path) -> None:
    from connectors.result import SourceFormatError

    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(_jsonl([_row("a")] * 50))[:-20])
    with pytest.raises(SourceFormatError, match=r"cut\.jsonl\.gz: damaged gzip"):
        read_litellm(LocalStore(tmp_path), ["cut.jsonl.gz"])


def test_ids_seen_earlier_must_match_both_hashes():
    """A seen id matches on both hashes: an id whose first hash collides with a seen one's
    is not a copy."""
    from connectors.litellm import SpendLogReader

    reader = SpendLogReader()
    reader._seen.add(np.array([10, 20], np.uint64), np.array([1, 2], np.uint64), 0,
                     np.array([5, 6], np.uint32))
    chunk = pl.DataFrame({"_h1": [10, 20, 20, 30, 10], "_h2": [1, 3, 3, 1, 1]},
                         schema={"_h1": pl.UInt64, "_h2": pl.UInt64})
    # 10 is seen (once, though the chunk has it twice); 20 only on its first hash.
    assert reader._earlier(chunk).rows() == [(10, 1, 0, 5)]
