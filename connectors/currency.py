"""Money and currency rules shared by the billing connectors.

Every cost in the lake carries the ISO 4217 code of its currency; a row whose currency is
missing or is not a real code cannot be converted or summed with others, so it goes to
quarantine instead of being counted in the wrong unit. Money is parsed from text straight
to Decimal(38, 12), never through a binary float.
"""

from __future__ import annotations

import polars as pl

from connectors.schemas import MONEY

# ISO 4217 active alphabetic codes (list one, including the fund and precious-metal codes).
# Left out on purpose: XTS (reserved for testing) and XXX ("no currency"), which no bill is
# payable in. ANG is kept next to its successor XCG because bills from before its 2025
# withdrawal still name it; likewise BGN, replaced by EUR in 2026.
ISO_4217_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD
    IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
    MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN
    SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES
    VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW
    ZWG
    """.split()  # noqa: SIM905 - a block of codes reads better than 177 quoted items
)


def is_known_currency(code: str | None) -> bool:
    """True when `code` (surrounding blanks and letter case ignored) is an ISO 4217 code."""
    return code is not None and code.strip().upper() in ISO_4217_CODES


def normalized_currency(expr: pl.Expr) -> pl.Expr:
    """Trimmed, upper-cased currency code; an empty value becomes null."""
    code = expr.cast(pl.String).str.strip_chars().str.to_uppercase()
    return pl.when(code == "").then(None).otherwise(code)


def currency_reason(expr: pl.Expr, source_column: str) -> pl.Expr:
    """Quarantine reason for a row's currency, null when the code is a known ISO 4217 code.

    `expr` is the (already normalized) currency; `source_column` is the column's name in
    the source file, so the reason points the reader at the right place.
    """
    return (
        pl.when(expr.is_null())
        .then(
            pl.lit(
                f"missing currency in {source_column}: every cost needs its currency;"
                " fix the export"
            )
        )
        .when(~expr.is_in(sorted(ISO_4217_CODES)))
        .then(
            pl.format(
                "unknown currency '{}' in {}: not an ISO 4217 code; fix the export or add"
                " the code to the FX table",
                expr,
                pl.lit(source_column),
            )
        )
        .otherwise(None)
    )


def to_money(expr: pl.Expr) -> pl.Expr:
    """Parse money to Decimal(38, 12) from its text.

    Text in, text parsed: a Parquet double is first turned into its shortest round-trip
    text (1.6023086974 stays 1.6023086974), so sums come out exact to the last digit the
    source wrote. Unparseable text becomes null; callers quarantine it (`money_reason`).
    """
    return expr.cast(pl.String).str.strip_chars().str.to_decimal(scale=MONEY.scale)


def money_reason(raw: pl.Expr, parsed: pl.Expr, source_column: str) -> pl.Expr:
    """Reason for a value that was present in the source but did not parse as a number."""
    present = raw.cast(pl.String).str.strip_chars().fill_null("") != ""
    return (
        pl.when(present & parsed.is_null())
        .then(pl.format("non-numeric cost '{}' in {}", raw.cast(pl.String), pl.lit(source_column)))
        .otherwise(None)
    )
