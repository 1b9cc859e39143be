"""GPU list prices from the Cloud Billing Catalog into the lake (asset `gpu_list_prices`):
the real CloudCatalogClient over REST against the fake API, effective-dated partitions, a
rerun that counts nothing twice and a price change that keeps the old price as history."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import duckdb
import polars as pl
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import billing_v1

from assets.prices import gpu_list_prices
from assets.resources import StorageResource
from connectors.gcp_catalog import COMPUTE_ENGINE_SERVICE, CatalogSource
from connectors.schemas import GPU_LIST_PRICES
from tests.connectors.test_gcp_catalog import CATALOG, SERVICE
from tests.support.fake_gcp import FakeGcp, fake_gcp

DAY = "2026-10-01"


@pytest.fixture
def gcp() -> Iterator[FakeGcp]:
    with fake_gcp() as fake:
        fake.add_skus(SERVICE, CATALOG)
        yield fake


@pytest.fixture
def storage(tmp_path) -> StorageResource:
    return StorageResource(landing=str(tmp_path / "landing"), lake=str(tmp_path / "lake"),
                           warehouse=str(tmp_path / "warehouse.duckdb"))


def _source(gcp: FakeGcp) -> CatalogSource:
    def client() -> billing_v1.CloudCatalogClient:
        return billing_v1.CloudCatalogClient(
            credentials=AnonymousCredentials(), transport="rest",
            client_options={"api_endpoint": gcp.endpoint})

    return CatalogSource(service=f"services/{SERVICE}", currency="USD", client=client,
                         endpoint=gcp.endpoint)


def _materialize(storage: StorageResource) -> dg.MaterializeResult:
    result = dg.materialize([gpu_list_prices], resources={"storage": storage}, partition_key=DAY)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return event.materialization.metadata


def _lake(storage: StorageResource) -> pl.DataFrame:
    return pl.read_parquet(f"{storage.lake}/gpu_list_prices/*/*.parquet", hive_partitioning=True)


def _as_of(storage: StorageResource, day: str) -> list[tuple]:
    """The H100's list price per region on `day`, as a BI user would ask the lake."""
    query = f"""
        select region, price_per_hour from (
            select *, row_number() over (partition by sku_id, region, usage_type,
                                         start_usage_amount order by effective_time desc) as n
            from read_parquet('{storage.lake}/gpu_list_prices/*/*.parquet')
            where effective_time < date '{day}' + interval 1 day and gpu_model = 'H100 80GB')
        where n = 1 order by region"""
    return duckdb.sql(query).fetchall()


def test_the_catalog_is_configured_from_the_environment():
    assert CatalogSource.from_env({}) is None
    assert CatalogSource.from_env({"INFERLEDGER_GCP_CATALOG": "off"}) is None
    on = CatalogSource.from_env({"INFERLEDGER_GCP_CATALOG": "true"})
    assert (on.service, on.currency, on.endpoint) == (COMPUTE_ENGINE_SERVICE, "USD", None)
    other = CatalogSource.from_env({
        "INFERLEDGER_GCP_CATALOG": "E000-3F2A-0C55",
        "INFERLEDGER_GCP_CATALOG_CURRENCY": "eur",
        "INFERLEDGER_GCP_CATALOG_ENDPOINT": "https://private.googleapis.example",
    })
    assert (other.service, other.currency, other.endpoint) == (
        "services/E000-3F2A-0C55", "EUR", "https://private.googleapis.example")


def test_list_prices_land_effective_dated_and_a_rerun_counts_nothing_twice(gcp, storage, monkeypatch):
    monkeypatch.setattr(CatalogSource, "from_env", classmethod(lambda cls, env=None: _source(gcp)))
    metadata = _materialize(storage)
    assert metadata["configured"].value is True
    assert metadata["prices"].value == 4  # H100 in two regions, L4, T4; the CPU SKUs are not GPUs
    assert metadata["partitions_written"].value == ["date=2026-02-01"]
    lake = _lake(storage)
    assert lake.drop("date").schema == pl.Schema(GPU_LIST_PRICES)
    assert lake.height == 4
    assert sorted(lake.select("sku_id", "region", "price_per_hour").rows()) == [
        ("5C3D-0E9F-8A21", "us-central1", Decimal("0.3499992")),  # 97,222 nanos a second
        ("9B1E-77AA-3C40", "europe-west1", Decimal("0.224")),
        ("F7A3-5C2B-9E1D", "us-central1", Decimal("11.06")),
        ("F7A3-5C2B-9E1D", "us-east4", Decimal("11.06")),
    ]
    first_pull = lake["pulled_at"].max()

    # The same catalog read again: the same four prices, pulled later, none twice.
    _materialize(storage)
    again = _lake(storage)
    assert again.height == 4
    assert again["pulled_at"].min() > first_pull
    assert again["price_per_hour"].sum() == lake["price_per_hour"].sum() == Decimal("22.6939992")


def test_a_price_change_adds_a_partition_and_keeps_the_old_price(gcp, storage, monkeypatch):
    monkeypatch.setattr(CatalogSource, "from_env", classmethod(lambda cls, env=None: _source(gcp)))
    _materialize(storage)
    cut = copy.deepcopy(CATALOG)
    h100 = next(s for s in cut if s["skuId"] == "F7A3-5C2B-9E1D")
    info = h100["pricingInfo"][0]
    info["effectiveTime"] = "2026-10-15T00:00:00.000Z"
    info["pricingExpression"]["tieredRates"][0]["unitPrice"].update(units="9", nanos=800000000)
    gcp.replace_skus(SERVICE, cut)

    metadata = _materialize(storage)
    assert metadata["partitions_written"].value == ["date=2026-02-01", "date=2026-10-15"]
    lake = _lake(storage)
    assert lake.height == 6  # the four of February, and the H100's new price in two regions
    by_day = dict(lake.group_by("date").len().sort("date").rows())
    assert by_day == {datetime(2026, 2, 1).date(): 4, datetime(2026, 10, 15).date(): 2}
    assert _as_of(storage, "2026-10-01") == [("us-central1", Decimal("11.060000000000")),
                                            ("us-east4", Decimal("11.060000000000"))]
    assert _as_of(storage, "2026-10-20") == [("us-central1", Decimal("9.800000000000")),
                                            ("us-east4", Decimal("9.800000000000"))]
    assert lake.filter(pl.col("effective_time") == datetime(2026, 10, 15, tzinfo=UTC)).height == 2


def test_without_a_catalog_configured_nothing_is_pulled_or_written(gcp, storage, monkeypatch):
    monkeypatch.delenv("INFERLEDGER_GCP_CATALOG", raising=False)
    metadata = _materialize(storage)
    assert metadata["configured"].value is False
    assert "INFERLEDGER_GCP_CATALOG" in metadata["how_to_enable"].value
    assert gcp.requests == []
    assert not (storage.lake_path / "gpu_list_prices").exists()
