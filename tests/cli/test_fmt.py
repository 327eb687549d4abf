"""One number format for human output (issue 16 item 8): margincal.fmt against hand-written expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from margincal import fmt

# (function, value, expected) - written by hand from the rules in the module docstring
CASES = [
    (fmt.format_rate, 0.0477, "4.77%"),
    (fmt.format_rate, 0.04771234, "4.77%"),
    (fmt.format_rate, 0.14414687499999998, "14.41%"),
    (fmt.format_rate, 1.0, "100.00%"),
    (fmt.format_rate, 0.00005, "0.01%"),  # half-up at the 2nd decimal of the percent (0.005% -> 0.01%)
    (fmt.format_rate, -0.000001, "0.00%"),  # no "-0.00%"
    (fmt.format_rate, -0.502, "-50.20%"),
    (fmt.format_rate, None, "-"),
    (fmt.format_rate, float("nan"), "-"),
    (fmt.format_rate, np.float64(0.1098901), "10.99%"),
    (fmt.format_leverage, 1 / 0.1098901, "9.10x"),
    (fmt.format_leverage, 9.1324, "9.13x"),
    (fmt.format_leverage, 125, "125.00x"),
    (fmt.format_leverage, float("inf"), "-"),
    (fmt.format_money, 1224625.0, "1,224,625"),
    (fmt.format_money, 495989, "495,989"),
    (fmt.format_money, 451134.4, "451,134"),
    (fmt.format_money, 200.00000000000017, "200.00"),
    (fmt.format_money, 849.271, "849.27"),
    (fmt.format_money, 0.09083, "0.09083"),
    (fmt.format_money, 0.0, "0"),
    (fmt.format_money, -15225.000000000002, "-15,225"),
    (fmt.format_count, 495989, "495,989"),
    (fmt.format_count, np.int64(1188), "1,188"),
    (fmt.format_count, 7.0, "7"),
    (fmt.format_count, 2.5, "2.5"),
    (fmt.format_number, 200.00000000000017, "200"),
    (fmt.format_number, 0.14414687499999998, "0.144147"),
    (fmt.format_number, 1063.19, "1,063.19"),
    (fmt.format_number, 7136798291.0, "7,136,798,291"),
    (fmt.format_number, 0.0, "0"),
    (fmt.format_number, 1e-9, "1.00000e-09"),
    (fmt.format_number, -2.5, "-2.5"),
    (fmt.format_percent, -50.2143, "-50.21%"),
]


@pytest.mark.parametrize(("func", "value", "expected"), CASES)
def test_formatters(func, value, expected) -> None:
    assert func(value) == expected


@pytest.mark.parametrize(("column", "kind", "header"), [
    ("im_rate", "rate", "IM (%)"),
    ("mm_after", "rate", "MM after (%)"),
    ("breach_rate", "rate", "breach rate (%)"),
    ("max_leverage", "leverage", "max leverage (x)"),
    ("tier1_leverage", "leverage", "tier 1 leverage (x)"),
    ("notional", "money", "notional (USD)"),
    ("lower", "money", "lower (USD)"),
    ("maintenance_amount", "money", "maint. amount (USD)"),
    ("bad_debt", "money", "bad debt (USD)"),
    ("liquidated_notional", "money", "liquidated notional (USD)"),
    ("n_obs", "count", "obs"),
    ("breaches", "count", "breaches"),
    ("im_change_pct", "percent", "IM change (%)"),
    ("kupiec_p", None, "Kupiec p"),
    ("instrument", None, "instrument"),
])
def test_column_kinds_and_headers(column, kind, header) -> None:
    assert fmt.column_kind(column) == kind
    assert fmt.column_header(column) == header


def test_format_value_by_kind_and_plain() -> None:
    assert fmt.format_value(0.0477, "rate") == "4.77%"
    assert fmt.format_value(0.0477) == "0.0477"
    assert fmt.format_value(1234567) == "1,234,567"
    assert fmt.format_value("BTC-USDT", "rate") == "BTC-USDT"
    assert fmt.format_value(True) == "True"
    assert fmt.format_value(None, "money") == "-"
    assert fmt.format_value(math.nan) == "-"


def test_fmt_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = "import sys, margincal.fmt; print([m for m in ('numpy', 'pandas', 'duckdb') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_report_tables_use_the_same_format() -> None:
    from margincal.reports.html import table_html

    out = table_html([{"instrument": "BTC-USDT", "im_rate": 0.0477123, "lower": 1224625.0, "max_leverage": 9.1324,
                       "n_obs": 495989, "x": 200.00000000000017}])
    for s in ("<th>IM (%)</th>", "<th>lower (USD)</th>", "<td>4.77%</td>", "<td>1,224,625</td>", "<td>9.13x</td>",
              "<td>495,989</td>", "<td>200</td>"):
        assert s in out, s
