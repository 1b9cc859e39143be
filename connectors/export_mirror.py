"""The BI exports mirrored to S3, for query engines that read a bucket (Athena, Trino,
Databricks, DuckDB with httpfs) and for pods whose local disk goes away with them.

With `INFERLEDGER_EXPORTS=s3://bucket/prefix`, each run's Parquet export folder is brought
level under that prefix, in the same layout (`<prefix>/<mart>/month=YYYY-MM/part-YYYY-MM-DD.parquet`):

- a file is uploaded when S3 lacks it, or when it is not the version uploaded last (its
  size and modification time differ from those recorded in the manifest object
  `_inferledger_exports.json`): a run uploads the days it rewrote, not the history;
- an object whose file is gone (a day a mart no longer has) is deleted;
- the manifest is written last.

Each object is replaced by a single PUT, so a reader sees a day's old file or its new one,
never half of one; between the first and the last upload of a run a reader can see some
days of the run new and others still old, as with the local folder. The prefix must not be
inside the lake's own (`connectors.lake_remote` owns that). Credentials come from boto3's
chain; `INFERLEDGER_S3_ENDPOINT_URL` points at an S3-compatible endpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.s3 import s3_client, s3_key, split_s3_uri

MANIFEST = "_inferledger_exports.json"


@dataclass
class MirrorReport:
    uri: str
    files: int = 0  # files the export folder holds
    uploaded: list[str] = field(default_factory=list)  # relative paths
    deleted: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


def check_outside_lake(exports_uri: str, lake_uri: str) -> None:
    """Refuse an exports prefix inside the S3 lake's: the lake's pull would take the export
    files for partitions."""
    if not lake_uri.startswith("s3://"):
        return
    exports, lake = split_s3_uri(exports_uri), split_s3_uri(lake_uri)
    if exports[0] == lake[0] and (not lake[1] or f"{exports[1]}/".startswith(f"{lake[1]}/")):
        raise ValueError(f"INFERLEDGER_EXPORTS={exports_uri} is inside the lake {lake_uri}: "
                         "give the exports a prefix of their own (s3://bucket/exports)")


def mirror_to_s3(local_dir: str | Path, uri: str, client: Any = None) -> MirrorReport:
    """Bring `uri` level with the folder `local_dir` (see the module's docstring)."""
    bucket, prefix = split_s3_uri(uri)
    client = client if client is not None else s3_client()
    root = Path(local_dir)

    def key(rel: str) -> str:
        return s3_key(prefix, rel)

    local = {p.relative_to(root).as_posix(): p.stat() for p in sorted(root.rglob("*.parquet")) if p.is_file()}
    remote: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key("")):
        remote |= {o["Key"] for o in page.get("Contents", [])}
    try:
        recorded = json.loads(client.get_object(Bucket=bucket, Key=key(MANIFEST))["Body"].read())
    except client.exceptions.NoSuchKey:
        recorded = {}

    report = MirrorReport(uri=uri, files=len(local))
    manifest = {}
    for rel, stat in local.items():
        version = [stat.st_size, stat.st_mtime_ns]
        manifest[rel] = version
        if key(rel) in remote and recorded.get(rel) == version:
            continue
        client.upload_file(str(root / rel), bucket, key(rel))
        report.uploaded.append(rel)
        report.bytes_uploaded += stat.st_size
    gone = sorted(k for k in remote if k != key(MANIFEST) and k.endswith(".parquet")
                  and k.removeprefix(key("")) not in local)
    for start in range(0, len(gone), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in gone[start:start + 1000]]})
    report.deleted = [k.removeprefix(key("")) for k in gone]
    client.put_object(Bucket=bucket, Key=key(MANIFEST), Body=json.dumps(manifest, sort_keys=True).encode())
    return report
