"""GPU list prices from the real CloudCatalogClient (REST transport) against the fake API."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from google.auth.credentials import AnonymousCredentials
from google.cloud import billing_v1

from connectors.gcp_catalog import GPU_SKU_PRICES, list_gpu_sku_prices
from tests.support.fake_gcp import fake_gcp

SERVICE = "6F81-5844-456A"


def _sku(
    sku_id: str,
    description: str,
    group: str,
    usage_type: str,
    regions: list[str],
    unit: str,
    units: str,
    nanos: int,
) -> dict:
    """A SKU as the Cloud Billing Catalog REST API returns it (camelCase, int64 as text)."""
    return {
        "name": f"services/{SERVICE}/skus/{sku_id}",
        "skuId": sku_id,
        "description": description,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": "Compute",
            "resourceGroup": group,
            "usageType": usage_type,
        },
        "serviceRegions": regions,
        "pricingInfo": [
            {
                "summary": "",
                "pricingExpression": {
                    "usageUnit": unit,
                    "displayQuantity": 1,
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {"currencyCode": "USD", "units": units, "nanos": nanos},
                        }
                    ],
                    "usageUnitDescription": {"h": "hour", "s": "second"}[unit],
                    "baseUnit": "s",
                    "baseUnitDescription": "second",
                    "baseUnitConversionFactor": {"h": 3600, "s": 1}[unit],
                },
                "aggregationInfo": {
                    "aggregationLevel": "ACCOUNT",
                    "aggregationInterval": "MONTHLY",
                    "aggregationCount": 1,
                },
                "currencyConversionRate": 1,
                "effectiveTime": "2026-02-01T08:00:00.000Z",
            }
        ],
        "serviceProviderName": "Google",
        "geoTaxonomy": {"type": "REGIONAL", "regions": regions},
    }


CATALOG = [
    _sku("0D9C-4B6E-2A11", "N2 Instance Core running in Americas", "CPU", "OnDemand",
         ["us-central1"], "h", "0", 31611000),
    _sku("F7A3-5C2B-9E1D", "Nvidia H100 80GB GPU running in Americas", "GPU", "OnDemand",
         ["us-central1", "us-east4"], "h", "11", 60000000),
    _sku("2E27-4F75-95CD", "A3 Instance Core running in Americas", "CPU", "OnDemand",
         ["us-central1"], "h", "0", 35000000),
    _sku("9B1E-77AA-3C40", "Nvidia L4 GPU attached to Spot Preemptible VMs running in Belgium",
         "GPU", "Preemptible", ["europe-west1"], "h", "0", 224000000),
    # Filed under another resource group and priced per second: kept by its description.
    _sku("5C3D-0E9F-8A21", "Nvidia Tesla T4 GPU running in Iowa", "N1Standard", "OnDemand",
         ["us-central1"], "s", "0", 97222),
]


def test_gpu_skus_become_exact_hourly_list_prices():
    with fake_gcp() as fake:
        fake.add_skus(SERVICE, CATALOG)
        client = billing_v1.CloudCatalogClient(
            credentials=AnonymousCredentials(),
            transport="rest",
            client_options={"api_endpoint": fake.endpoint},
        )
        prices = list_gpu_sku_prices(client)
        sku_calls = [path for method, path in fake.requests if "/skus" in path]

    assert len(sku_calls) == 3  # five SKUs in pages of two: the client followed the tokens
    assert "currencyCode=USD" in sku_calls[0]
    assert prices.schema == GPU_SKU_PRICES
    assert prices.select(
        "sku_id", "gpu_model", "usage_type", "region", "unit_price", "price_per_hour"
    ).rows() == [
        ("5C3D-0E9F-8A21", "Tesla T4", "OnDemand", "us-central1", Decimal("0.000097222"),
         Decimal("0.3499992")),  # 97,222 nanos a second x 3600
        ("9B1E-77AA-3C40", "L4", "Preemptible", "europe-west1", Decimal("0.224"),
         Decimal("0.224")),
        ("F7A3-5C2B-9E1D", "H100 80GB", "OnDemand", "us-central1", Decimal("11.06"),
         Decimal("11.06")),
        ("F7A3-5C2B-9E1D", "H100 80GB", "OnDemand", "us-east4", Decimal("11.06"),
         Decimal("11.06")),
    ]
    first = prices.row(0, named=True)
    assert (first["currency"], first["service_id"], first["usage_unit"]) == ("USD", SERVICE, "s")
    assert first["effective_time"] == datetime(2026, 2, 1, 8, tzinfo=timezone.utc)
    assert first["start_usage_amount"] == Decimal(0)
