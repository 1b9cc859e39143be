"""The lake on S3 (moto on loopback): commits published whole, pulled whole, the same marts.

`INFERLEDGER_LAKE=s3://bucket/prefix` is a configuration change only: the pipeline works on
a local copy and publishes each partition it commits (connectors.lake_remote).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from assets.exports import exports_dir
from connectors import lake
from connectors.lake_remote import COMMIT_OBJECT, LOCAL_COMMIT, S3Lake, attach, detach
from pipelines.config import Settings
from pipelines.runner import run_range
from tests.support.moto_server import MotoServer, moto_server_in_env
from tests.warehouse.conftest import MARTS

from .conftest import DAYS, START

BUCKET = "finops-lake"
DAY = date(2026, 10, 1)


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with moto_server_in_env() as server:
        server.client("s3").create_bucket(Bucket=BUCKET)
        yield server


def _objects(aws: MotoServer, prefix: str) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _costs(n: int) -> pl.DataFrame:
    return pl.DataFrame({"line": list(range(n)),
                         "cost": [Decimal(f"{i}.25") for i in range(n)]},
                        schema={"line": pl.Int64, "cost": pl.Decimal(38, 12)})


def _rows(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(folder.glob("*.parquet"))).sort("line")


def test_commits_replace_whole_partitions_and_another_copy_pulls_them(
        aws: MotoServer, tmp_path: Path) -> None:
    uri = f"s3://{BUCKET}/unit"
    prefix = f"unit/costs/date={DAY}/"
    writer = attach(S3Lake(uri, tmp_path / "writer", client=aws.client("s3")))
    reader = S3Lake(uri, tmp_path / "reader", client=aws.client("s3"))
    try:
        lake.replace_partition(writer.cache, "costs", DAY, _costs(3))
        first = _objects(aws, prefix)
        assert len(first) == 2 and first[0].endswith(COMMIT_OBJECT)  # one part and its commit

        # A rerun replaces the commit: one part again, the earlier one deleted from S3.
        lake.replace_partition(writer.cache, "costs", DAY, _costs(2))
        second = _objects(aws, prefix)
        assert len(second) == 2 and second[1] != first[1]
        commit = json.loads(aws.client("s3").get_object(
            Bucket=BUCKET, Key=f"{prefix}{COMMIT_OBJECT}")["Body"].read())
        assert [f"{prefix}{p['name']}" for p in commit["parts"]] == [second[1]]

        # Another machine's copy: the partition as committed, 2 rows, costs to the cent.
        pulled = reader.pull()
        assert (pulled.partitions, pulled.downloaded, pulled.files) == (1, [f"costs/date={DAY}"], 1)
        got = _rows(reader.cache / "costs" / f"date={DAY}")
        assert got["cost"].to_list() == [Decimal("0.25"), Decimal("1.25")]
        assert reader.pull().downloaded == []  # level already: nothing downloaded again

        # Parts uploaded by a publish that died before its commit object are not read.
        crashed = tmp_path / "crashed.parquet"
        _costs(100).write_parquet(crashed)
        aws.client("s3").upload_file(str(crashed), BUCKET, f"{prefix}part-crashed-00000.parquet")
        fresh = S3Lake(uri, tmp_path / "fresh", client=aws.client("s3"))
        fresh.pull()
        assert _rows(fresh.cache / "costs" / f"date={DAY}").height == 2

        # A day written in parts: 3 parts under one commit; the crashed part is cleaned up.
        parts = lake.PartitionWriter(writer.cache, "costs", DAY, schema=dict(_costs(0).schema))
        for n in (4, 5, 6):
            parts.write(_costs(n))
        parts.commit()
        assert len(_objects(aws, prefix)) == 4
        # A writer that is never committed publishes nothing.
        aborted = lake.PartitionWriter(writer.cache, "costs", DAY, schema=dict(_costs(0).schema))
        aborted.write(_costs(7))
        aborted.abort()
        assert len(_objects(aws, prefix)) == 4
        assert reader.pull().downloaded == [f"costs/date={DAY}"]
        assert _rows(reader.cache / "costs" / f"date={DAY}").height == 15
        assert (reader.cache / "costs" / f"date={DAY}" / LOCAL_COMMIT).exists()

        # A dropped partition goes from S3, then from every copy on its next pull.
        lake.drop_partition(writer.cache, "costs", DAY)
        assert _objects(aws, prefix) == []
        assert reader.pull().removed == [f"costs/date={DAY}"]
        assert not (reader.cache / "costs" / f"date={DAY}").exists()
    finally:
        detach(writer)


def _mart_rows(warehouse: str) -> dict[str, list[tuple]]:
    with duckdb.connect(warehouse, read_only=True) as con:
        return {m: sorted(con.execute(f"select * from {m}").fetchall(), key=repr) for m in MARTS}


def test_the_pipeline_on_an_s3_lake_builds_the_same_marts(
        aws: MotoServer, small_landing: Path, built: Settings, tmp_path: Path) -> None:
    """The session's small company, run again with its lake on S3: every mart equal to the
    local-lake run's, row for row and to the cent; S3 holds every partition; a second
    machine's copy pulled from S3 is the same lake; the BI exports are mirrored to S3."""
    settings = Settings(landing=str(small_landing), lake=f"s3://{BUCKET}/e2e",
                        warehouse=str(tmp_path / "warehouse.duckdb"),
                        lake_cache=str(tmp_path / "lake-copy"), exports=f"s3://{BUCKET}/bi")
    run_range(settings, START, date(2026, 10, DAYS))

    # The exports on S3 are the local export files, byte for byte: a day file per mart and day.
    exported = exports_dir(settings.lake_path)
    local_files = {p.relative_to(exported).as_posix(): p.read_bytes() for p in exported.rglob("*.parquet")}
    s3 = aws.client("s3")
    mirrored = {k.removeprefix("bi/"): s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
                for k in _objects(aws, "bi/") if k.endswith(".parquet")}
    assert mirrored == local_files
    assert f"cost_per_token_daily/month=2026-10/part-{START}.parquet" in mirrored
    assert len(mirrored) >= len(MARTS) * DAYS - 2  # a mart may have no rows on a day

    on_s3 = _mart_rows(settings.warehouse)
    local = _mart_rows(built.warehouse)
    assert sum(len(rows) for rows in on_s3.values()) > 1000
    for mart in MARTS:
        assert on_s3[mart] == local[mart], mart

    copy = Path(settings.lake_cache)
    committed = sorted(p.parent.relative_to(copy).as_posix() for p in copy.rglob(LOCAL_COMMIT))
    markers = sorted(k.removeprefix("e2e/").removesuffix(f"/{COMMIT_OBJECT}")
                     for k in _objects(aws, "e2e/") if k.endswith(COMMIT_OBJECT))
    assert committed == markers
    assert f"gateway_requests/date={START}" in markers and len(markers) >= 4 * DAYS

    second = S3Lake(settings.lake, tmp_path / "second-machine", client=aws.client("s3"))
    assert len(second.pull().downloaded) == len(markers)
    for table in ("gateway_requests", "billing_line_items", "gpu_hourly"):
        mine = pl.read_parquet(copy / table / "*" / "*.parquet", hive_partitioning=False)
        theirs = pl.read_parquet(second.cache / table / "*" / "*.parquet", hive_partitioning=False)
        assert theirs.height == mine.height > 0, table
        assert theirs.sort(theirs.columns).equals(mine.sort(mine.columns)), table


def test_dbt_reads_the_local_copy_unless_spark_reads_s3_itself(tmp_path: Path) -> None:
    from assets.warehouse import dbt_lake_location

    copy = tmp_path / "lake-copy"
    assert dbt_lake_location("s3://b/lake", copy, {}) == str(copy.resolve())
    assert dbt_lake_location(str(copy), copy, {"DBT_TARGET": "spark"}) == str(copy.resolve())
    assert dbt_lake_location("s3://b/lake", copy, {"DBT_TARGET": "spark"}) == "s3a://b/lake"
    assert dbt_lake_location("s3://b/lake", copy, {"DBT_TARGET": "spark",
                                                   "INFERLEDGER_SPARK_LAKE": "s3://b/lake"}) == "s3://b/lake"


def test_an_s3_lake_is_configured_by_its_uri_alone(tmp_path: Path) -> None:
    from pipelines.config import load_settings

    warehouse = str(tmp_path / "wh" / "warehouse.duckdb")
    on_s3 = load_settings({"INFERLEDGER_LAKE": "s3://b/lake", "INFERLEDGER_WAREHOUSE": warehouse})
    assert on_s3.lake_path == (tmp_path / "wh" / "lake-cache").resolve()
    cached = load_settings({"INFERLEDGER_LAKE": "s3://b/lake", "INFERLEDGER_WAREHOUSE": warehouse,
                            "INFERLEDGER_LAKE_CACHE": str(tmp_path / "copy")})
    assert cached.lake_path == tmp_path / "copy"
    local = load_settings({"INFERLEDGER_LAKE": str(tmp_path / "lake"), "INFERLEDGER_WAREHOUSE": warehouse,
                           "INFERLEDGER_LAKE_CACHE": str(tmp_path / "copy")})
    assert local.lake_path == tmp_path / "lake"  # a folder lake is its own copy
    assert (on_s3.exports, load_settings({"INFERLEDGER_EXPORTS": "s3://b/bi"}).exports) == (None, "s3://b/bi")
