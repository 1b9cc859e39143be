from decimal import Decimal

import polars as pl

from connectors.currency import (
    ISO_4217_CODES,
    currency_reason,
    is_known_currency,
    money_reason,
    normalized_currency,
    to_money,
)


def test_iso_4217_list_holds_the_active_codes_and_not_the_placeholders():
    assert len(ISO_4217_CODES) >= 160
    assert {"USD", "EUR", "JPY", "GBP", "CHF", "INR", "BRL", "XOF", "ZWG", "SLE"} <= ISO_4217_CODES
    assert not {"XXX", "XTS", "XYZ", "usd"} & ISO_4217_CODES
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217_CODES)


def test_is_known_currency_ignores_case_and_blanks():
    assert is_known_currency("USD")
    assert is_known_currency(" eur ")
    assert not is_known_currency("XYZ")
    assert not is_known_currency("")
    assert not is_known_currency(None)


def test_currency_reason_names_the_code_and_the_column():
    df = pl.DataFrame({"c": ["usd", "XYZ", None, "  "]}).with_columns(
        code=normalized_currency(pl.col("c"))
    )
    reasons = df.select(currency_reason(pl.col("code"), "BillingCurrency")).to_series().to_list()
    assert reasons[0] is None
    assert reasons[1] == (
        "unknown currency 'XYZ' in BillingCurrency: not an ISO 4217 code; fix the export or add"
        " the code to the FX table"
    )
    assert reasons[2].startswith("missing currency in BillingCurrency")
    assert reasons[3].startswith("missing currency in BillingCurrency")
    assert df["code"].to_list() == ["USD", "XYZ", None, None]


def test_to_money_is_exact_from_text_and_from_parquet_doubles():
    text = pl.Series(["1.6023086974", " 0.08 ", "-0.000000000001", "1e-5"])
    assert pl.select(to_money(pl.lit(text))).to_series().to_list() == [
        Decimal("1.6023086974"),
        Decimal("0.08"),
        Decimal("-0.000000000001"),
        Decimal("0.00001"),
    ]
    # A double goes through its shortest text, so it does not pick up binary noise.
    doubles = pl.Series([1.6023086974, 68.824, 0.1])
    parsed = pl.select(to_money(pl.lit(doubles))).to_series()
    assert parsed.dtype == pl.Decimal(38, 12)
    assert parsed.sum() == Decimal("70.5263086974")


def test_money_reason_flags_text_that_is_not_a_number():
    df = pl.DataFrame({"v": ["12.5", "n/a", None, ""]})
    out = df.select(money_reason(pl.col("v"), to_money(pl.col("v")), "BilledCost")).to_series()
    assert out.to_list() == [None, "non-numeric cost 'n/a' in BilledCost", None, None]
