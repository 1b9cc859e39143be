"""The lake on S3: a local working copy, published to S3 partition by partition.

S3 has no rename, so a partition cannot be swapped in as `connectors.lake` does on a file
system. With `INFERLEDGER_LAKE=s3://bucket/prefix` the lake of record is on S3 and every
process works on a local copy of it (the cache):

- **publish** (after each local commit): the partition's files are uploaded under names of
  their own commit, `<table>/date=D/part-<commit>-NNNNN.parquet`; then one small object,
  `<table>/date=D/_inferledger_commit.json`, names that commit's parts (a single PUT, so
  it changes at once); then the objects of earlier commits are deleted.
- **pull** (when a run starts): the bucket is listed once; each partition whose commit
  object changed since the copy was made is downloaded, taking exactly the parts its
  commit object names, into a folder swapped in locally; partitions dropped on S3 are
  dropped from the copy. A reader of the copy (DuckDB, dbt, the checks) therefore sees
  either a partition's previous commit or its new one, never a mix, as on a file system.
- **drop**: a partition removed from the lake (a withdrawn FX rate date) is removed on S3,
  its commit object first.

Readers that list S3 themselves (Spark through `s3a://`, Athena) ignore names starting
with `_` and see a partition's parts: between a publish's upload and its clean-up they can
see two commits of one partition. The pipeline builds the warehouse only after the day's
ingestion has finished, so its own Spark build never does; other readers should read after
the daily run, or take the parts the commit object names.

Each process commits and pulls under one lock file in the cache, so two steps on one
machine never interleave a publish with a pull of the same partition. Credentials come from
the environment (boto3's chain); `INFERLEDGER_S3_ENDPOINT_URL` points at an S3-compatible
endpoint (MinIO, moto in the tests).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.s3 import s3_client, s3_key, split_s3_uri

COMMIT_OBJECT = "_inferledger_commit.json"
# The local record of which commit a partition folder holds: a dot file, so DuckDB's and
# Spark's `*.parquet` globs never read it.
LOCAL_COMMIT = ".inferledger_commit"
LOCK_FILE = ".inferledger_lake.lock"


def is_remote(lake: str | Path) -> bool:
    return str(lake).startswith("s3://")


def local_lake(lake: str | Path, cache: str | Path | None, warehouse: str | Path) -> Path:
    """The folder the pipeline reads and writes: the lake itself, or the working copy of an
    S3 lake (`cache`, else `lake-cache` beside the warehouse, which is on local disk)."""
    if not is_remote(lake):
        return Path(lake)
    return Path(cache) if cache else Path(warehouse).resolve().parent / "lake-cache"


@dataclass
class PullReport:
    partitions: int = 0  # partitions the bucket holds
    downloaded: list[str] = field(default_factory=list)  # partitions brought up to date
    removed: list[str] = field(default_factory=list)  # partitions dropped on S3
    files: int = 0
    bytes: int = 0


class S3Lake:
    """An S3 prefix holding the lake, mirrored by a local folder."""

    def __init__(self, uri: str, cache: str | Path, client: Any = None) -> None:
        self.uri = uri.rstrip("/")
        self.bucket, self.prefix = split_s3_uri(uri)
        self.cache = Path(cache).resolve()
        self.client = client if client is not None else s3_client()

    # -- keys -------------------------------------------------------------------------------

    def _key(self, rel: str) -> str:
        return s3_key(self.prefix, rel)

    def _rel(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    def _relative(self, partition: Path) -> str:
        try:
            return Path(partition).resolve().relative_to(self.cache).as_posix()
        except ValueError:
            raise ValueError(f"{partition} is not inside the lake cache {self.cache}") from None

    def _list(self, rel_prefix: str = "") -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = self._key(rel_prefix) if rel_prefix else (f"{self.prefix}/" if self.prefix else "")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    # -- the lock ---------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One publish or pull at a time on this machine (threads and processes alike: each
        acquisition opens the file anew, and flock locks belong to the open file)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- writing ----------------------------------------------------------------------------

    def publish(self, partition: Path) -> str:
        """Upload the committed local partition folder as a new commit; returns its id.

        Called with the lock held (connectors.lake takes it around the local swap)."""
        rel = self._relative(partition)
        commit = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        files = sorted(Path(partition).glob("*.parquet"))
        parts = []
        for i, f in enumerate(files):
            name = f"part-{commit}-{i:05d}.parquet"
            self.client.upload_file(str(f), self.bucket, self._key(f"{rel}/{name}"))
            parts.append({"name": name, "source": f.name, "bytes": f.stat().st_size})
        body = json.dumps({"commit": commit, "parts": parts}, indent=1).encode()
        put = self.client.put_object(Bucket=self.bucket, Key=self._key(f"{rel}/{COMMIT_OBJECT}"),
                                     Body=body, ContentType="application/json")
        (Path(partition) / LOCAL_COMMIT).write_text(put["ETag"])
        keep = {self._key(f"{rel}/{p['name']}") for p in parts} | {self._key(f"{rel}/{COMMIT_OBJECT}")}
        stale = [o["Key"] for o in self._list(f"{rel}/") if o["Key"] not in keep
                 and "/" not in o["Key"][len(self._key(rel)) + 1:]]
        self._delete(stale)
        return commit

    def drop(self, partition: Path) -> None:
        """Remove a partition from S3: its commit object first, so no reader takes its parts."""
        rel = self._relative(partition)
        marker = self._key(f"{rel}/{COMMIT_OBJECT}")
        self._delete([marker])
        self._delete([o["Key"] for o in self._list(f"{rel}/")
                      if "/" not in o["Key"][len(self._key(rel)) + 1:]])

    def _delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            if batch:
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})

    # -- reading ----------------------------------------------------------------------------

    def pull(self) -> PullReport:
        """Bring the local copy level with S3 (see the module's docstring)."""
        from botocore.exceptions import ClientError

        report = PullReport()
        with self.locked():
            remote: dict[str, str] = {}  # partition -> ETag of its commit object
            for obj in self._list():
                rel = self._rel(obj["Key"])
                if rel.endswith(f"/{COMMIT_OBJECT}"):
                    remote[rel[: -len(COMMIT_OBJECT) - 1]] = obj["ETag"]
            report.partitions = len(remote)
            for rel, etag in sorted(remote.items()):
                local = self.cache / rel
                held = local / LOCAL_COMMIT
                if held.exists() and held.read_text() == etag:
                    continue
                for attempt in range(3):
                    try:
                        files, size = self._download(rel, local)
                        break
                    except ClientError as e:
                        # A publish elsewhere replaced the commit between the listing and
                        # the download: read its commit object again.
                        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                            raise
                        if attempt == 2:
                            raise RuntimeError(
                                f"{self.uri}/{rel}: its commit object names files S3 no longer "
                                "has, three times running: two writers are replacing this "
                                "partition at once. Let them finish, then rerun.") from e
                report.downloaded.append(rel)
                report.files += files
                report.bytes += size
            for held in sorted(self.cache.rglob(LOCAL_COMMIT)):
                rel = held.parent.relative_to(self.cache).as_posix()
                if rel not in remote:
                    shutil.rmtree(held.parent, ignore_errors=True)
                    report.removed.append(rel)
        return report

    def _download(self, rel: str, local: Path) -> tuple[int, int]:
        got = self.client.get_object(Bucket=self.bucket, Key=self._key(f"{rel}/{COMMIT_OBJECT}"))
        etag = got["ETag"]
        commit = json.loads(got["Body"].read())
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.parent / f".tmp-{local.name}-{uuid.uuid4().hex}"
        tmp.mkdir()
        size = 0
        try:
            for part in commit["parts"]:
                self.client.download_file(self.bucket, self._key(f"{rel}/{part['name']}"),
                                          str(tmp / part["name"]))
                size += (tmp / part["name"]).stat().st_size
            (tmp / LOCAL_COMMIT).write_text(etag)
            old = local.parent / f".old-{local.name}-{uuid.uuid4().hex}"
            if local.exists():
                os.rename(local, old)
            os.rename(tmp, local)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return len(commit["parts"]), size


# The S3 lakes this process writes through, by the resolved path of their local copy.
_ATTACHED: dict[Path, S3Lake] = {}


def attach(remote: S3Lake) -> S3Lake:
    """Publish every partition committed under `remote.cache` from now on (connectors.lake
    calls `remote_for` on each commit)."""
    _ATTACHED[remote.cache] = remote
    return remote


def detach(remote: S3Lake) -> None:
    _ATTACHED.pop(remote.cache, None)


def remote_for(partition: Path) -> S3Lake | None:
    """The attached S3 lake whose copy holds `partition`, if any."""
    if not _ATTACHED:
        return None
    resolved = Path(partition).resolve()
    for root, remote in _ATTACHED.items():
        if resolved.is_relative_to(root):
            return remote
    return None
