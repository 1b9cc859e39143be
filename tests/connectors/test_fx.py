"""FX rates: the dbt seed, overridden by fx/*.csv in the landing store; bill rows whose
currency has no rate are quarantined with the fix, never converted at 1.0."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.prices import lake_fx_rates
from assets.resources import StorageResource
from connectors import fx
from connectors.landing import LocalStore
from connectors.result import SourceFormatError
from connectors.sources import billing_day

DAY = date(2026, 10, 2)


def _gcp_row(cost: str, currency: str, *, hour: int = 0) -> dict:
    """One Compute Engine row of the GCP detailed export, charged on DAY."""
    return {
        "billing_account_id": "01A2B3-C4D5E6-F7A8B9",
        "service": {"id": "6F81-5844-456A", "description": "Compute Engine"},
        "sku": {"id": "F7A3-5C2B-9E1D", "description": "Nvidia H100 80GB GPU running in APAC"},
        "usage_start_time": f"2026-10-02T{hour:02d}:00:00Z",
        "usage_end_time": f"2026-10-02T{hour + 1:02d}:00:00Z",
        "project": {"id": "acme-ml"},
        "location": {"region": "asia-south1"},
        "export_time": "2026-10-02T06:00:00Z",
        "cost": cost,
        "currency": currency,
        "invoice": {"month": "202610"},
        "cost_type": "regular",
    }


def _landing(tmp_path: Path, rows: list[dict]) -> Path:
    folder = tmp_path / "landing" / "gcp_billing" / "2026" / "10" / "02"
    folder.mkdir(parents=True)
    (folder / "export.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "landing"


def test_rate_is_the_days_own_else_the_latest_earlier_from_the_seed():
    rates = fx.load_fx_rates()
    assert set(rates["source"]) == {"seed"}
    assert fx.rate_for(rates, "EUR", date(2026, 9, 30)) == Decimal("1.17")  # from 2026-01-01
    assert fx.rate_for(rates, "EUR", date(2026, 10, 1)) == Decimal("1.16")  # its own day
    assert fx.rate_for(rates, "eur", date(2026, 12, 31)) == Decimal("1.16")
    assert fx.rate_for(rates, "GBP", date(2025, 6, 1)) == Decimal("1.25")
    assert fx.rate_for(rates, "EUR", date(2023, 12, 31)) is None  # before the first rate
    assert fx.rate_for(rates, "INR", date(2026, 10, 1)) is None  # never given
    assert fx.rate_for(rates, "USD", date(2020, 1, 1)) == Decimal(1)  # the reporting currency


def test_landing_rates_override_the_seed_and_add_currencies(tmp_path):
    (tmp_path / "fx").mkdir()
    (tmp_path / "fx" / "treasury.csv").write_text(
        "date,currency,usd_per_unit\n2026-10-01,EUR,1.1612\n2026-07-01, inr ,0.0117\n"
    )
    rates = fx.load_fx_rates(LocalStore(tmp_path))
    assert rates.height == 11 + 1  # the seed's 11 rates, EUR 2026-10-01 replaced, INR added
    assert fx.rate_for(rates, "EUR", date(2026, 10, 2)) == Decimal("1.1612")
    assert fx.rate_for(rates, "EUR", date(2026, 9, 30)) == Decimal("1.17")  # the seed's
    assert fx.rate_for(rates, "INR", date(2026, 10, 2)) == Decimal("0.0117")
    eur = rates.filter((pl.col("currency") == "EUR") & (pl.col("rate_date") == date(2026, 10, 1)))
    assert eur["source"].to_list() == ["fx/treasury.csv"]


def test_a_malformed_rate_file_fails_loudly_with_its_line(tmp_path):
    (tmp_path / "fx").mkdir()
    (tmp_path / "fx" / "bad.csv").write_text(
        "date,currency,usd_per_unit\n2026-10-01,EUR,1.16\n2026-13-01,EUR,1.2\n2026-10-01,GBP,-1\n"
    )
    with pytest.raises(SourceFormatError) as err:
        fx.load_fx_rates(LocalStore(tmp_path))
    assert str(err.value) == (
        "fx/bad.csv: bad FX rate rows (line 3: date '2026-13-01' is not YYYY-MM-DD; line 4:"
        " usd_per_unit '-1' is not a positive number); fix the file, no rate is read from it"
    )
    (tmp_path / "fx" / "bad.csv").write_text("day,currency,rate\n")
    with pytest.raises(SourceFormatError, match=r"fx/bad\.csv.*\['date', 'usd_per_unit'\]"):
        fx.load_fx_rates(LocalStore(tmp_path))


def test_two_landing_files_disagreeing_on_a_rate_fail_loudly(tmp_path):
    (tmp_path / "fx").mkdir()
    for name, rate in [("a.csv", "1.16"), ("b.csv", "1.15")]:
        (tmp_path / "fx" / name).write_text(f"date,currency,usd_per_unit\n2026-10-01,EUR,{rate}\n")
    with pytest.raises(SourceFormatError, match="fx/a.csv and fx/b.csv give different EUR rates"):
        fx.load_fx_rates(LocalStore(tmp_path))


def test_bill_row_without_a_rate_is_quarantined_until_the_rate_is_added(tmp_path):
    landing = _landing(
        tmp_path,
        [
            _gcp_row("88.00", "USD"),
            _gcp_row("75.50", "EUR", hour=1),
            _gcp_row("7300", "INR", hour=2),
        ],
    )
    batch = billing_day(LocalStore(landing), DAY)
    assert (batch.rows_read, batch.rows.height, batch.quarantine.height) == (3, 2, 1)
    assert sorted(batch.rows["billed_cost"].to_list()) == [Decimal("75.50"), Decimal("88.00")]
    bad = batch.quarantine.row(0, named=True)
    assert bad["reason"] == (
        "no FX rate for INR on or before 2026-10-02: add it to fx/*.csv in the landing store"
    )
    assert bad["source_file"] == "gcp_billing/2026/10/02/export.jsonl"
    assert json.loads(bad["raw"])["billed_cost"] == "7300.000000000000"

    (landing / "fx").mkdir()
    (landing / "fx" / "inr.csv").write_text("date,currency,usd_per_unit\n2026-10-01,INR,0.0113\n")
    batch = billing_day(LocalStore(landing), DAY)
    assert (batch.rows.height, batch.quarantine.height) == (3, 0)
    billed = dict(zip(batch.rows["billing_currency"], batch.rows["billed_cost"], strict=True))
    assert billed == {"USD": Decimal("88.00"), "EUR": Decimal("75.50"), "INR": Decimal(7300)}
    assert "fx/inr.csv" in [o.key for o in batch.objects]


def test_a_rate_dated_after_the_charge_day_does_not_cover_it(tmp_path):
    landing = _landing(tmp_path, [_gcp_row("7300", "INR")])
    (landing / "fx").mkdir()
    (landing / "fx" / "inr.csv").write_text("date,currency,usd_per_unit\n2026-10-03,INR,0.0113\n")
    batch = billing_day(LocalStore(landing), DAY)
    assert (batch.rows.height, batch.quarantine.height) == (0, 1)


def test_the_effective_table_is_written_to_the_lake_and_follows_the_landing(tmp_path):
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    (landing / "fx").mkdir(parents=True)
    (landing / "fx" / "treasury.csv").write_text(
        "date,currency,usd_per_unit\n2026-10-01,EUR,1.1612\n2026-07-01,INR,0.0117\n"
    )
    storage = StorageResource(landing=str(landing), lake=str(lake), warehouse=str(tmp_path / "w"))

    def lake_rates() -> list[tuple]:
        # The glob and options dbt's lake sources use: the hive `date` is the rate's date.
        glob = f"{lake}/fx_rates/*/*.parquet"
        with duckdb.connect() as con:
            return con.execute(
                f"select date, currency, usd_per_unit, source from read_parquet('{glob}',"
                " hive_partitioning = true, union_by_name = true)"
                " where date >= '2026-01-01' order by currency, date"
            ).fetchall()

    assert dg.materialize(
        [lake_fx_rates], partition_key="2026-10-02", resources={"storage": storage}
    ).success
    assert lake_rates() == [
        (date(2026, 1, 1), "EUR", Decimal("1.17"), "seed"),
        (date(2026, 10, 1), "EUR", Decimal("1.1612"), "fx/treasury.csv"),
        (date(2026, 1, 1), "GBP", Decimal("1.34"), "seed"),
        (date(2026, 7, 1), "INR", Decimal("0.0117"), "fx/treasury.csv"),
        (date(2026, 1, 1), "JPY", Decimal("0.0068"), "seed"),
    ]
    # The override withdrawn: the seed's rate is back and INR's partition is gone.
    (landing / "fx" / "treasury.csv").unlink()
    assert dg.materialize(
        [lake_fx_rates], partition_key="2026-10-02", resources={"storage": storage}
    ).success
    assert lake_rates()[1] == (date(2026, 10, 1), "EUR", Decimal("1.16"), "seed")
    assert not (lake / "fx_rates" / "date=2026-07-01").exists()
    assert len(lake_rates()) == 4
