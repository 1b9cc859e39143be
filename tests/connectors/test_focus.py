import gzip
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from connectors.focus import parse_utc, read_focus, read_focus_file
from connectors.landing import LocalStore
from connectors.result import SourceFormatError

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"
SAMPLE = CONFORMANCE / "focus" / "focus_sample_1.0.csv"
SPEC = CONFORMANCE / "focus_spec_examples"


def _sums(rows: pl.DataFrame, by: str) -> dict:
    out = rows.group_by(by).agg(
        pl.len().alias("rows"),
        pl.col("billed_cost").sum(),
        pl.col("effective_cost").sum(),
        pl.col("list_cost").sum(),
    )
    return {
        r[by]: (r["rows"], r["billed_cost"], r["effective_cost"], r["list_cost"])
        for r in out.to_dicts()
    }


def test_focus_sample_matches_the_conformance_figures_per_provider():
    result = read_focus_file(
        SAMPLE, source_file="focus/focus_sample_1.0.csv", export_version="sample@1"
    )
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (1000, 1000, 0)
    assert _sums(result.rows, "provider") == {
        "AWS": (942, Decimal("18.0066386184"), Decimal("13.0000000000"), Decimal("18.1493176406")),
        "Microsoft": (
            51,
            Decimal("1.97651418586"),
            Decimal("1.97651418586"),
            Decimal("1.97651418586"),
        ),
        "Oracle": (7, Decimal("0.53707392473"), Decimal("0.00000000000"), Decimal("0.26507392473")),
    }
    assert result.rows["billed_cost"].dtype == pl.Decimal(38, 12)


def test_focus_sample_quirks_are_normalized():
    rows = read_focus_file(SAMPLE, source_file="s.csv", export_version="v").rows
    oracle = rows.filter(pl.col("provider") == "Oracle")
    # Oracle writes `Usage-based` and empty strings for null.
    assert oracle["charge_frequency"].unique().to_list() == ["Usage-Based"]
    assert oracle["publisher"].to_list() == ["Oracle"] * 7
    assert oracle["commitment_discount_id"].null_count() == 7
    # The literal NULL is null, timestamps without Z are UTC.
    assert rows["charge_class"].null_count() == 1000
    first = rows.row(0, named=True)
    assert first["source_line_id"] == "11472"  # the non-standard Id column
    assert str(first["charge_period_start"]) == "2024-09-18 22:00:00+00:00"
    # The tag key with a leading space is kept verbatim beside `org`.
    tagged = rows.filter(pl.col("tags").str.contains('" org"'))["tags"][0]
    assert '"org":"trey"' in tagged and '" org":"trey"' in tagged
    assert rows["export_version"].unique().to_list() == ["v"]


def test_every_spec_example_parses_and_the_impossible_timestamp_is_quarantined():
    files = sorted(SPEC.glob("*.csv"))
    assert len(files) == 11
    for path in files:
        result = read_focus_file(
            path, source_file=path.name, export_version="spec", default_currency="USD"
        )
        assert result.rows_read == result.rows_written + result.rows_quarantined
        typo = path.name in {
            "commitment_discount_purchase_scenario_2.csv",
            "commitment_discount_purchase_scenario_3.csv",
        }
        assert result.rows_quarantined == (1 if typo else 0), path.name
        if typo:
            q = result.quarantine.row(0, named=True)
            assert q["reason"] == "unparseable timestamp '2023-02-01T30:00:00Z' in ChargePeriodEnd"
            assert q["source_file"] == path.name
            assert q["row_number"] == (3 if path.name.endswith("_2.csv") else 4)
            assert "2023-02-01T30:00:00Z" in q["raw"]


@pytest.mark.parametrize(
    ("name", "commitment_cost"),
    [
        (
            "one_hundred_percent_utilization_with_commitment_discount_flexibility_with_1_resource.csv",
            "0.50",
        ),
        (
            "one_hundred_percent_utilization_with_commitment_discount_flexibility_with_2_resources.csv",
            "2.00",
        ),
        ("one_hundred_percent_utilization_without_commitment_discount_flexibility.csv", "1.50"),
        ("zero_percent_utilization_without_commitment_discount_flexibility.csv", "1.50"),
    ],
)
def test_utilization_examples_balance(name, commitment_cost):
    rows = read_focus_file(
        SPEC / name, source_file=name, export_version="spec", default_currency="USD"
    ).rows
    commitment = "<my-commitment-discount-id>"
    purchase = rows.filter(
        (pl.col("charge_category") == "Purchase") & (pl.col("commitment_discount_id") == commitment)
    )
    used_unused = rows.filter(
        (pl.col("charge_category") == "Usage")
        & (pl.col("commitment_discount_id") == commitment)
        & pl.col("commitment_discount_status").is_in(["Used", "Unused"])
    )
    assert purchase["billed_cost"].sum() == Decimal(commitment_cost)
    assert used_unused["effective_cost"].sum() == Decimal(commitment_cost)
    assert rows["effective_cost"].sum() == rows["billed_cost"].sum()


def test_missing_required_column_names_file_and_column(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text(
        "ChargeCategory,ChargePeriodStart,ChargePeriodEnd,EffectiveCost,BillingCurrency\n"
        "Usage,2024-01-01,2024-01-02,1,USD\n"
    )
    with pytest.raises(SourceFormatError, match=r"broken\.csv.*BilledCost"):
        read_focus_file(path, source_file="broken.csv", export_version="v")
    # Without BillingCurrency the file fails unless the caller knows its currency.
    path.write_text(
        "ChargeCategory,ChargePeriodStart,ChargePeriodEnd,BilledCost,EffectiveCost\n"
        "Usage,2024-01-01,2024-01-02,1,1\n"
    )
    with pytest.raises(SourceFormatError, match="BillingCurrency"):
        read_focus_file(path, source_file="nocur.csv", export_version="v")


FOCUS_13 = (
    "ServiceProviderName,HostProviderName,ChargeCategory,ChargeFrequency,ChargePeriodStart,ChargePeriodEnd,"
    "BillingPeriodStart,BilledCost,EffectiveCost,ListCost,BillingCurrency,ConsumedQuantity,Tags,x_Custom\n"
    "Acme AI,AWS,usage,usage-based,2025-03-01T00:00:00Z,2025-03-01T01:00:00Z,2025-03-01T00:00:00Z,"
    '1.25,1.25,1.50,USD,2,"{""team"": ""ml""}",ignored\n'
    "\n"
    "Acme AI,AWS,Usage,Usage-Based,2025-03-01 01:00:00,2025-03-01 02:00:00,2025-03-01,"
    "2.5,2.5,3,XYZ,1,NULL,ignored\n"
    "Acme AI,AWS,Usage,Usage-Based,2025-03-01T02:00:00.0000000,2025-03-01T03:00:00+00:00,"
    "2025-03-01,"
    "abc,1,1,usd,1,null,ignored\n"
    "Acme AI,AWS,Usage,Usage-Based,2025-03-01T03:00:00Z,2025-03-01T04:00:00Z,2025-03-01,"
    "0.75,0.75,1,USD,1,not json,ignored\n"
)


def test_focus_13_renames_quirks_and_row_reasons(tmp_path):
    data = FOCUS_13.encode()
    result = read_focus_file(data, source_file="f13.csv", export_version="f13@e1")
    assert (result.rows_read, result.rows_written, result.rows_quarantined) == (4, 1, 3)
    row = result.rows.row(0, named=True)
    # 1.3: the host is the provider, the service provider the publisher.
    assert (row["provider"], row["publisher"]) == ("AWS", "Acme AI")
    assert (row["charge_category"], row["charge_frequency"]) == ("Usage", "Usage-Based")
    assert row["billed_cost"] == Decimal("1.25") and row["list_cost"] == Decimal("1.50")
    assert row["tags"] == '{"team":"ml"}'
    reasons = dict(
        zip(
            result.quarantine["row_number"].to_list(),
            result.quarantine["reason"].to_list(),
            strict=True,
        )
    )
    # Data row 2 is the blank line: not a row, but row numbers keep counting lines.
    assert reasons == {
        3: "unknown currency 'XYZ' in BillingCurrency: not an ISO 4217 code;"
        " fix the export or add the code to the FX table",
        4: "non-numeric cost 'abc' in BilledCost",
        5: "Tags is not a JSON object: 'not json'",
    }
    assert result.rows_read == result.rows_written + result.rows_quarantined
    # Without an Id column the line id is a stable hash of the row's content.
    again = read_focus_file(gzip.compress(data), source_file="f13.csv.gz", export_version="f13@e2")
    assert again.rows["source_line_id"].to_list() == result.rows["source_line_id"].to_list()
    assert len(row["source_line_id"]) == 32


def test_read_focus_reads_csv_gz_and_parquet_under_the_prefix(tmp_path):
    folder = tmp_path / "focus" / "acme" / "2025-03"
    folder.mkdir(parents=True)
    (folder / "part-1.csv.gz").write_bytes(gzip.compress(FOCUS_13.encode()))
    good = read_focus_file(FOCUS_13.encode(), source_file="x", export_version="x").rows
    pl.DataFrame(
        {
            "ProviderName": ["Acme AI"],
            "ChargeCategory": ["Usage"],
            "ChargePeriodStart": pl.Series([good["charge_period_start"][0]]),
            "ChargePeriodEnd": pl.Series([good["charge_period_end"][0]]),
            "BilledCost": [Decimal("4.00")],
            "EffectiveCost": [3.5],
            "BillingCurrency": ["USD"],
        }
    ).write_parquet(folder / "part-2.parquet")
    (folder / "notes.txt").write_text("not an export")
    result = read_focus(LocalStore(tmp_path))
    assert result.rows_read == 5 and result.rows_written == 2 and result.rows_quarantined == 3
    assert sorted(result.files) == [
        "focus/acme/2025-03/part-1.csv.gz",
        "focus/acme/2025-03/part-2.parquet",
    ]
    assert result.rows["effective_cost"].sum() == Decimal("4.75")  # 1.25 + 3.5
    assert result.rows["export_version"][1].startswith("focus/acme/2025-03/part-2.parquet@")


def test_parse_utc_accepts_real_spellings_and_rejects_impossible_times():
    texts = [
        "2024-09-01 00:00:00",
        "2024-09-01T00:00:00Z",
        "2024-09-01T00:00:00.000Z",
        "2024-09-01",
        "2024-09-01T02:00:00+02:00",
        "2024-09-01 00:00:00 UTC",
        "2023-02-01T30:00:00Z",
        "yesterday",
    ]
    parsed = pl.select(parse_utc(pl.lit(pl.Series(texts)))).to_series().to_list()
    assert [str(p) for p in parsed[:6]] == ["2024-09-01 00:00:00+00:00"] * 6
    assert parsed[6:] == [None, None]


def test_focus_13_provider_is_the_host_and_falls_back_to_the_service_provider():
    """Marketplace usage runs on the cloud's hardware; tax has no host ("Not Applicable")."""
    csv = (
        "ServiceProviderName,HostProviderName,InvoiceIssuerName,ChargeCategory,ChargePeriodStart,"
        "ChargePeriodEnd,BilledCost,EffectiveCost,BillingCurrency\n"
        "Acme AI,Google Cloud,Google Cloud,Usage,2025-03-01T00:00:00Z,2025-03-01T01:00:00Z,4.00,"
        "4.00,USD\n"
        "Google Cloud,Not Applicable,Google Cloud,Tax,2025-03-01T00:00:00Z,2025-04-01T00:00:00Z,"
        "0.40,0.40,USD\n"
        "Acme AI,,Acme AI,Usage,2025-03-01T00:00:00Z,2025-03-01T01:00:00Z,1.00,1.00,USD\n"
    )
    rows = read_focus_file(csv.encode(), source_file="m.csv", export_version="v").rows
    assert list(zip(rows["provider"], rows["publisher"], rows["invoice_issuer"], strict=True)) == [
        ("Google Cloud", "Acme AI", "Google Cloud"),
        ("Google Cloud", "Google Cloud", "Google Cloud"),
        ("Acme AI", "Acme AI", "Acme AI"),  # SaaS with no host named: the seller
    ]
