"""What every S3 user here shares: parsing `s3://bucket/prefix`, and a boto3 client whose
credentials come from boto3's own chain (environment, instance or pod role), pointed at
`INFERLEDGER_S3_ENDPOINT_URL` when set (MinIO, moto in the tests)."""

from __future__ import annotations

import os
from typing import Any


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, prefix without slashes at either end)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{uri}: no bucket named; use s3://bucket/prefix")
    return bucket, prefix.strip("/")


def s3_key(prefix: str, rel: str) -> str:
    """The key of `rel` under `prefix` (a bucket's root when the prefix is empty)."""
    return f"{prefix}/{rel}" if prefix else rel


def s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("INFERLEDGER_S3_ENDPOINT_URL"))
