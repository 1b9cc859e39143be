"""The landing store: where sources arrive, a local folder or an S3 prefix.

Connectors read bytes through this small interface so the same parsing code serves a
folder on a laptop and `s3://bucket/prefix` in production (through boto3; DuckDB's httpfs
extension cannot be downloaded here).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol

from connectors.s3 import s3_client, s3_key, split_s3_uri


@dataclass(frozen=True)
class LandingObject:
    key: str  # path relative to the store root, with forward slashes
    size: int
    etag: str
    last_modified: datetime


class LandingStore(Protocol):
    uri: str

    def list(self, prefix: str = "") -> list[LandingObject]: ...

    def read_bytes(self, key: str) -> bytes: ...

    def local_path(self, key: str) -> Path | None:
        """A path on disk when the object is a local file (lets polars scan it lazily)."""
        ...

    def download(self, key: str, dest: Path) -> None:
        """Copy the object to a local file, streamed (for readers that need a path)."""
        ...


class LocalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def list(self, prefix: str = "") -> list[LandingObject]:
        base = self.root / prefix
        if not base.exists():
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                st = path.stat()
                out.append(
                    LandingObject(
                        key=path.relative_to(self.root).as_posix(),
                        size=st.st_size,
                        etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
                        last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
                    )
                )
        return out

    def read_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def local_path(self, key: str) -> Path | None:
        return self.root / key

    def download(self, key: str, dest: Path) -> None:
        shutil.copyfile(self.root / key, dest)


class S3Store:
    """An S3 prefix read with boto3; credentials come from the environment only."""

    def __init__(self, uri: str, client=None) -> None:
        self.uri = uri.rstrip("/")
        self.bucket, self.prefix = split_s3_uri(uri)
        self.client = client if client is not None else s3_client()

    def _full(self, key: str) -> str:
        return s3_key(self.prefix, key)

    def list(self, prefix: str = "") -> list[LandingObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        out = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        # A prefix names a folder, as in LocalStore: `aws_cur` must not list `aws_cur_old/`.
        folder = self._full(prefix.strip("/")) + "/" if prefix.strip("/") else self._full("")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
            for obj in page.get("Contents", []):
                out.append(
                    LandingObject(
                        key=obj["Key"][strip:],
                        size=obj["Size"],
                        etag=obj["ETag"].strip('"'),
                        last_modified=obj["LastModified"].astimezone(UTC),
                    )
                )
        return sorted(out, key=lambda o: o.key)

    def read_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except self.client.exceptions.NoSuchKey as exc:
            # The same error a LocalStore raises, so callers handle one kind of absence.
            raise FileNotFoundError(f"{self.uri}/{key}") from exc
        return response["Body"].read()

    def local_path(self, key: str) -> Path | None:
        return None

    def download(self, key: str, dest: Path) -> None:
        """boto3's managed transfer: the object streamed to `dest` in parts, never whole in
        memory."""
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._full(key), str(dest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"{self.uri}/{key}") from exc
            raise


def open_store(uri: str | Path) -> LandingStore:
    uri = str(uri)
    return S3Store(uri) if uri.startswith("s3://") else LocalStore(uri)


def matching(objects: list[LandingObject], *patterns: str) -> list[LandingObject]:
    """Objects whose file name matches any of the glob patterns (e.g. '*.jsonl.gz')."""
    return [o for o in objects if any(fnmatch.fnmatch(o.key.rsplit("/", 1)[-1], p) for p in patterns)]


_PATH_DATE = re.compile(r"(?<!\d)(\d{4})[-/](\d{2})[-/](\d{2})(?!\d)")


def path_date(key: str) -> date | None:
    """The day a landing key names (`.../2026/10/01/...`, `date=2026-10-01`, `2026-10-01.csv`)."""
    found = _PATH_DATE.findall(key)
    if not found:
        return None
    y, m, d = found[-1]
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        return None


def objects_near_day(objects: list[LandingObject], day: date, slack_days: int = 1) -> list[LandingObject]:
    """Objects that may hold rows of `day`: dated within `slack_days` of it, or undated.

    Logs are filed by the day a writer flushed them, which is not always the day of every
    row inside (a request that starts at 23:59:59): readers take the neighbours and keep
    the rows whose own timestamp falls on `day`.
    """
    out = []
    for o in objects:
        d = path_date(o.key)
        if d is None or abs((d - day).days) <= slack_days:
            out.append(o)
    return out
