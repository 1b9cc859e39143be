"""LiteLLM spend logs read from S3 (moto in server mode, real HTTP on loopback): each object
is downloaded to a temporary file and streamed by the same DuckDB reader as a local file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from connectors import litellm
from connectors.landing import LocalStore, S3Store
from connectors.litellm import read_litellm
from tests.connectors.test_litellm import SECRET_KEY, SECRET_PROMPT, two_files  # noqa: F401
from tests.support.moto_server import MotoServer, moto_server

BUCKET = "acme-gateway"


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


def test_s3_objects_read_like_local_files_and_leave_no_copy(
        aws: MotoServer, two_files, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    local, keys = two_files
    aws.reset()
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=f"landing/{key}", Body=local.read_bytes(key))
    store = S3Store(f"s3://{BUCKET}/landing", client=client)
    assert [o.key for o in store.list("gateway_logs/litellm")] == keys

    streamed: list[Path] = []
    stream = litellm._stream

    def spy(path: Path):
        # Called from the reader's threads: the next object may start before this one, so
        # each copy is matched to its object by the index its name starts with.
        streamed.append(path)
        assert path.read_bytes() == local.read_bytes(keys[int(path.name.split("-", 1)[0])])
        yield from stream(path)

    monkeypatch.setattr(litellm, "_stream", spy)
    from_s3 = read_litellm(store, keys)
    monkeypatch.setattr(litellm, "_stream", stream)
    from_disk = read_litellm(local, keys)

    # Both objects went through DuckDB's reader as downloaded copies, removed after.
    assert sorted(p.name for p in streamed) == ["000000-spend_logs-0.jsonl.gz",
                                                "000001-spend_logs-1.jsonl"]
    assert not streamed[0].parent.exists()
    # The same rows and quarantine as from disk: the malformed line in the first object
    # stopped DuckDB and the line reader read on from the downloaded copy.
    assert (from_s3.rows_read, from_s3.rows_written, from_s3.rows_quarantined) == (8, 5, 3)
    assert from_s3.rows.equals(from_disk.rows)
    assert from_s3.quarantine.equals(from_disk.quarantine)
    reasons = sorted(from_s3.quarantine["reason"])
    assert reasons[0].startswith("duplicate request_id 'req-openai'")
    assert reasons[1].startswith("line 3: malformed JSON")
    # Bodies and keys stay out, whatever path the bytes took.
    text = from_s3.rows.cast(pl.String).write_csv() + from_s3.quarantine.write_csv()
    assert SECRET_PROMPT not in text and SECRET_KEY not in text


def test_a_missing_object_is_named(aws: MotoServer, tmp_path: Path) -> None:
    aws.reset()
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    store = S3Store(f"s3://{BUCKET}/landing", client=client)
    with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/landing/gateway_logs/x.jsonl"):
        read_litellm(store, ["gateway_logs/x.jsonl"])
    with pytest.raises(FileNotFoundError):
        LocalStore(tmp_path).download("nothing.jsonl", tmp_path / "copy")
