"""One number format for every human-facing output (CLI tables and lines, the HTML report, the dashboard).

Rules (JSON output is not formatted: it keeps fractions and full precision):

* **rates** (margin rates, breach rates, add-ons: fractions of notional) print as percent with 2 decimals:
  ``0.04771 -> "4.77%"``;
* **money / notional / prices** carry thousands separators: ``1224625.0 -> "1,224,625"``; amounts from 1 to
  1,000 keep 2 decimals, below 1 four significant digits (``0.09083`` for a DOGE price), zero is ``0``;
* **leverage** has 2 decimals and an ``x``: ``9.1324 -> "9.13x"``;
* **counts** are whole numbers with separators: ``495989 -> "495,989"``;
* a value already in **percent** (a column named ``*_pct``) gets 2 decimals and ``%``;
* anything else is a plain **number** without float noise: at most 6 significant digits, trailing zeros
  dropped (``200.00000000000017 -> "200"``, ``0.14414687499999998 -> "0.144147"``);
* a missing value (None, NaN) prints ``-``; headers name their unit: ``IM (%)``, ``notional (USD)``.

A table column's kind follows from its name (:func:`column_kind`, e.g. ``im_rate`` is a rate, ``lower`` a
notional), so the CLI's ``print_table`` and the report's ``table_html`` format the same column the same way.
This module imports nothing (no numpy/pandas), so ``margincal --help`` stays light.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "column_header",
    "column_kind",
    "format_count",
    "format_leverage",
    "format_money",
    "format_number",
    "format_percent",
    "format_rate",
    "format_value",
    "header",
]

MISSING = "-"


def _num(v: Any) -> float | None:
    """A finite float, or None for None/NaN/inf and anything that is not a number (bools are not numbers)."""
    if v is None or isinstance(v, (bool, str)):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def format_rate(v: Any, digits: int = 2) -> str:
    """A fraction as percent: ``0.0477 -> "4.77%"`` (``digits`` decimals); None/NaN -> ``-``."""
    x = _num(v)
    if x is None:
        return MISSING
    s = f"{100.0 * x:,.{digits}f}"
    if s.startswith("-") and float(s[1:].replace(",", "")) == 0:
        s = s[1:]  # no "-0.00%"
    return s + "%"


def format_leverage(v: Any) -> str:
    """``9.1324 -> "9.13x"``."""
    x = _num(v)
    return MISSING if x is None else f"{x:,.2f}x"


def format_count(v: Any) -> str:
    """A count with thousands separators: ``495989 -> "495,989"`` (a non-whole value falls back to a number)."""
    x = _num(v)
    if x is None:
        return MISSING
    if x != round(x):
        return format_number(x)
    return f"{round(x):,}"


def format_money(v: Any) -> str:
    """An amount, notional or price: separators; no decimals from 1,000 up, 2 below, 4 significant under 1."""
    x = _num(v)
    if x is None:
        return MISSING
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 1:
        return f"{x:,.2f}"
    return format_number(x, 4)


def format_number(v: Any, significant: int = 6) -> str:
    """A plain number without float noise: at most ``significant`` significant digits, trailing zeros dropped,
    thousands separators; very large or tiny magnitudes in scientific notation."""
    x = _num(v)
    if x is None:
        return MISSING
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e15 or a < 1e-6:
        return f"{x:.{max(significant - 1, 0)}e}"
    decimals = max(significant - 1 - math.floor(math.log10(a)), 0)
    s = f"{x:,.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s


def format_percent(v: Any) -> str:
    """A value already in percent (``im_change_pct``): ``-50.2143 -> "-50.21%"``."""
    x = _num(v)
    return MISSING if x is None else f"{x:,.2f}%"


_FORMATTERS = {
    "rate": format_rate,
    "percent": format_percent,
    "money": format_money,
    "leverage": format_leverage,
    "count": format_count,
    "number": format_number,
}

# column name -> kind; names not listed are classified by the patterns below
_KINDS: dict[str, str] = {
    # rates (fractions of notional or of observations)
    "im_rate": "rate", "mm_rate": "rate", "im_before": "rate", "im_after": "rate", "mm_before": "rate",
    "mm_after": "rate", "es": "rate", "var": "rate", "es_1bar": "rate", "liq_addon": "rate",
    "liquidity_addon": "rate", "sigma_horizon": "rate", "tier1_mm": "rate", "breach_rate": "rate",
    "avg_margin": "rate", "im": "rate", "mm": "rate", "pending_im": "rate", "vol_target": "rate",
    "initial_margin_rate": "rate", "maintenance_margin_rate": "rate", "im_target": "rate", "target": "rate",
    "crash_coverage": "rate", "loss_pct_of_equity": "rate",
    # leverage
    "max_leverage": "leverage", "tier1_leverage": "leverage", "last_tier_leverage": "leverage",
    "leverage": "leverage",
    # money, notional, prices (quote currency)
    "last_price": "money", "price": "money", "close": "money", "lower": "money", "upper": "money",
    "notional": "money", "notional_floor": "money", "notional_cap": "money", "maintenance_amount": "money",
    "im_amount": "money", "mm_amount": "money", "equity": "money", "bad_debt": "money", "pnl": "money",
    "loss": "money", "insurance_fund": "money", "reference_size": "money", "spot": "money",
    # counts
    "n_obs": "count", "rows": "count", "new rows": "count", "breaches": "count", "gaps": "count",
    "accounts": "count", "events": "count", "signals": "count", "proposals": "count", "version": "count",
    "parent_version": "count", "bracket": "count", "positions": "count", "liquidations": "count",
    "rows_in_file": "count", "rows_inserted": "count", "n": "count", "days": "count", "instruments": "count",
}
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(^|_)(im|mm)(_|$)|_rate$|rate_|_share$|_frac(tion)?$|coverage"), "rate"),
    (re.compile(r"leverage"), "leverage"),
    (re.compile(r"notional|amount|bad_debt|_usd$|_usdt$|price|equity|_fund$|pnl|loss$|_loss_|margin_total"),
     "money"),
    (re.compile(r"^n_|_count$|^count|^num_|breaches$|accounts$"), "count"),
]
# the unit a header names, per kind (a rate column shows percent)
_UNITS = {"rate": "%", "leverage": "x", "money": "USD"}
_HEADERS: dict[str, str] = {
    "im_rate": "IM", "mm_rate": "MM", "im_before": "IM before", "im_after": "IM after",
    "mm_before": "MM before", "mm_after": "MM after", "max_leverage": "max leverage", "last_price": "last price",
    "es_1bar": "ES 1 bar", "liq_addon": "liquidity add-on", "liquidity_addon": "liquidity add-on",
    "sigma_horizon": "sigma (horizon)", "tier1_mm": "tier 1 MM", "tier1_leverage": "tier 1 leverage",
    "last_tier_leverage": "last tier leverage", "breach_rate": "breach rate", "avg_margin": "avg margin",
    "n_obs": "obs", "data_to": "data to", "horizon_min": "horizon (min)", "maintenance_amount": "maint. amount",
    "im_change_pct": "IM change (%)", "es": "ES", "var": "VaR", "crash_coverage": "crash coverage",
    "kupiec_p": "Kupiec p", "christoffersen_p": "Christoffersen p", "window_end": "window end",
    "notional_floor": "notional floor", "notional_cap": "notional cap",
}


def column_kind(name: str) -> str | None:
    """The kind (``rate``, ``money``, ``leverage``, ``count``) a column's name implies, else None (a plain
    number when it holds one)."""
    key = str(name).strip().lower()
    if key in _KINDS:
        return _KINDS[key]
    if key.endswith("_pct") or key.endswith("(%)"):
        return "percent"  # already in percent
    if key.endswith("_p") or key.endswith(" p"):
        return None  # a p-value: a plain number
    for pat, kind in _PATTERNS:
        if pat.search(key):
            return kind
    return None


def header(name: str, unit: str | None) -> str:
    """``header("IM", "%") -> "IM (%)"``."""
    return f"{name} ({unit})" if unit else name


def column_header(name: str, kind: str | None = None, *, currency: str = "USD") -> str:
    """A table header with its unit: ``im_rate -> "IM (%)"``, ``lower -> "lower (USD)"``; a header that already
    names a unit is kept."""
    kind = column_kind(name) if kind is None else kind
    label = _HEADERS.get(name, str(name).replace("_", " "))
    if "(" in label:
        return label
    unit = _UNITS.get(kind or "")
    if unit == "USD":
        unit = currency
    return header(label, unit)


def format_value(v: Any, kind: str | None = None) -> str:
    """Format one cell: by ``kind`` when given, else a plain number for numbers and ``str`` for the rest."""
    if v is None:
        return MISSING
    if isinstance(v, (bool, str)):
        return str(v)
    x = _num(v)
    if x is None:
        try:
            if v != v:  # NaN-like
                return MISSING
        except (TypeError, ValueError):
            pass
        return MISSING if isinstance(v, float) else str(v)
    if kind in _FORMATTERS:
        return _FORMATTERS[kind](x)
    if isinstance(v, int):
        return f"{v:,}"
    return format_number(x)
