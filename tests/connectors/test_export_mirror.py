"""The BI exports mirrored to S3 (moto on loopback): a run uploads what it rewrote, deletes
what is gone, and a rerun with nothing changed uploads nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.export_mirror import MANIFEST, check_outside_lake, mirror_to_s3
from tests.support.moto_server import MotoServer, moto_server

BUCKET = "finops-bi"


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with moto_server() as server:
        server.client("s3").create_bucket(Bucket=BUCKET)
        yield server


def _day(root: Path, mart: str, day: str, body: bytes) -> Path:
    path = root / mart / f"month={day[:7]}" / f"part-{day}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def _remote(aws: MotoServer, prefix: str) -> dict[str, bytes]:
    s3 = aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
    return {k.removeprefix(prefix): s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def test_a_run_uploads_what_changed_and_deletes_what_is_gone(aws: MotoServer, tmp_path: Path) -> None:
    s3, uri = aws.client("s3"), f"s3://{BUCKET}/bi/marts"
    first = _day(tmp_path, "cost_per_token_daily", "2026-10-01", b"day one")
    _day(tmp_path, "cost_per_token_daily", "2026-10-02", b"day two")
    _day(tmp_path, "gpu_rates_daily", "2026-10-01", b"rates")
    (tmp_path / "notes.txt").write_text("not an export")

    report = mirror_to_s3(tmp_path, uri, client=s3)
    assert (report.files, len(report.uploaded), report.deleted, report.bytes_uploaded) == (3, 3, [], 19)
    assert _remote(aws, "bi/marts/") == {
        "cost_per_token_daily/month=2026-10/part-2026-10-01.parquet": b"day one",
        "cost_per_token_daily/month=2026-10/part-2026-10-02.parquet": b"day two",
        "gpu_rates_daily/month=2026-10/part-2026-10-01.parquet": b"rates",
        MANIFEST: _remote(aws, "bi/marts/")[MANIFEST],
    }
    assert set(json.loads(_remote(aws, "bi/marts/")[MANIFEST])) == {
        "cost_per_token_daily/month=2026-10/part-2026-10-01.parquet",
        "cost_per_token_daily/month=2026-10/part-2026-10-02.parquet",
        "gpu_rates_daily/month=2026-10/part-2026-10-01.parquet"}

    # Nothing changed: nothing uploaded.
    assert mirror_to_s3(tmp_path, uri, client=s3).uploaded == []

    # Day one rewritten by a rerun (same size, a later modification time), day two gone.
    first.write_bytes(b"day 1!!")
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    (tmp_path / "cost_per_token_daily" / "month=2026-10" / "part-2026-10-02.parquet").unlink()
    report = mirror_to_s3(tmp_path, uri, client=s3)
    assert report.uploaded == ["cost_per_token_daily/month=2026-10/part-2026-10-01.parquet"]
    assert report.deleted == ["cost_per_token_daily/month=2026-10/part-2026-10-02.parquet"]
    remote = _remote(aws, "bi/marts/")
    assert remote["cost_per_token_daily/month=2026-10/part-2026-10-01.parquet"] == b"day 1!!"
    assert sorted(remote) == [MANIFEST, "cost_per_token_daily/month=2026-10/part-2026-10-01.parquet",
                              "gpu_rates_daily/month=2026-10/part-2026-10-01.parquet"]

    # An object deleted behind the mirror's back comes back at the next run.
    s3.delete_object(Bucket=BUCKET, Key="bi/marts/gpu_rates_daily/month=2026-10/part-2026-10-01.parquet")
    assert mirror_to_s3(tmp_path, uri, client=s3).uploaded == ["gpu_rates_daily/month=2026-10/part-2026-10-01.parquet"]


def test_the_exports_prefix_must_be_outside_the_lake() -> None:
    check_outside_lake("s3://b/exports", "s3://b/lake")
    check_outside_lake("s3://b/lake-exports", "s3://b/lake")
    check_outside_lake("s3://other/lake/exports", "s3://b/lake")
    check_outside_lake("s3://b/exports", "/data/lake")
    for inside, lake in (("s3://b/lake/exports", "s3://b/lake"), ("s3://b/lake", "s3://b/lake"),
                         ("s3://b/exports", "s3://b")):
        with pytest.raises(ValueError, match="inside the lake"):
            check_outside_lake(inside, lake)
    with pytest.raises(ValueError, match="not an s3:// URI"):
        mirror_to_s3(".", "/tmp/exports")
