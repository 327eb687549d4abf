"""One instrument vocabulary: parse and format every instrument name margincal meets.

Every package (ingest, the store, books, stress, portfolio margin, the service,
reports, the CLI) turns a name into an :class:`Instrument` with :func:`parse`
and back with :func:`format_name`, so one contract is the same contract
everywhere. Hand-written because no library parses venue names across venues:
ccxt normalises symbols only inside one exchange's loaded market list, and its
unified form is one of the forms read here.

Name forms (case-insensitive, surrounding blanks ignored):

============================  ==========  =====================================================
form                          kind        example
============================  ==========  =====================================================
spot pair                     spot        ``BTC-USDT``, ``BTC/USDT``, ``BTCUSDT``, ``BTC_USDT``
perpetual, bare               perpetual   ``BTC-PERP``, ``BTC-PERPETUAL`` (Deribit), ``BTC-SWAP``
perpetual, quoted             perpetual   ``BTC_USDC-PERPETUAL`` (Deribit linear), ``BTC-USDT-PERP``,
                                          ``BTC-USDT-SWAP`` / ``BTC-USD-SWAP`` (OKX),
                                          ``BTCUSDT perp``, ``BTCUSDT_PERP``, ``BTCUSDT.P``,
                                          ``BTCUSD_PERP`` (Binance COIN-M)
perpetual, ccxt unified       perpetual   ``BTC/USDT:USDT`` (linear), ``BTC/USD:BTC`` (inverse)
perpetual, dYdX               perpetual   ``ETH-USD`` with ``venue="dydx"``
dated future                  future      ``BTC-28JUN24`` (Deribit), ``BTC-240628``,
                                          ``BTC-USDT-240628`` (OKX), ``BTCUSDT_240628`` (Binance),
                                          ``BTC/USDT:USDT-240628`` (ccxt)
option                        option      ``BTC-28JUN24-60000-P`` (Deribit; ``d`` is the decimal
                                          point: ``XRP_USDC-27DEC24-0d6-C``),
                                          ``BTC/USD:BTC-240628-60000-P`` (ccxt)
============================  ==========  =====================================================

Conventions
-----------
* ``quote`` is the currency prices are quoted in; ``settle`` the currency the
  contract pays in. Linear: ``settle == quote`` (or a USD stablecoin for a USD
  quote); inverse: ``settle == base``.
* A name without a quote (``BTC-PERP``, ``BTC-PERPETUAL``, ``BTC-28JUN24``, a
  Deribit option) is quoted in ``USD`` and taken as **linear** unless the call
  says ``inverse=True``. The name alone cannot tell: Deribit's own
  ``BTC-PERPETUAL`` settles in BTC, margincal's bundled ``BTC-PERP`` (Binance
  USD-M) in USDT. USDT and USDC count as USD for the bare forms (the bundled
  data are USDT-quoted; see docs/methodology.md).
* Names that only say "inverse" (``BTC-USD-SWAP``, ``BTCUSD_PERP``,
  ``BTC/USD:BTC``) are inverse.
* Dated contracts expire at 08:00 UTC (Deribit, Binance and OKX delivery time).
* :func:`format_name` writes the margincal form (``BTC-USDT``, ``BTC-PERP``,
  ``BTC-28JUN24``, ``BTC-28JUN24-60000-P``; a non-USD quote as a
  ``BTC_USDC-`` prefix) or the ``ccxt`` unified form (lossless).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from margincal.errors import DataError

KINDS = ("spot", "perpetual", "future", "option")
SETTLEMENT_HOUR_UTC = 8
# Longest first, so BTCFDUSD is not read as BTCFD + USD.
QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDE", "USD", "DAI", "EUR", "TRY", "BTC", "ETH", "BNB")
USD_LIKE = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "USDE", "DAI"})
VENUES = ("dydx",)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DERIBIT_DATE = re.compile(r"^(\d{1,2})([A-Z]{3})(\d{2})$")
_YYMMDD = re.compile(r"^(\d{2})(\d{2})(\d{2})$")
_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")
_PERP_WORDS = ("PERP", "PERPETUAL", "SWAP")


@dataclass(frozen=True)
class Instrument:
    """One contract: what it is, in what it is quoted and settled, when it expires.

    Two spellings of the same contract compare equal (``raw``, the text it was
    parsed from, is not compared). ``name`` is the margincal form.
    """

    kind: str
    base: str
    quote: str = "USD"
    settle: str = "USD"
    expiry: pd.Timestamp | None = None
    strike: float | None = None
    option_type: str | None = None  # "C" or "P"
    raw: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        what = self.raw or f"{self.base} {self.kind}"
        if self.kind not in KINDS:
            raise DataError(f"instrument {what!r}: kind is {self.kind!r}; it must be one of {', '.join(KINDS)}")
        for label, v in (("base", self.base), ("quote", self.quote), ("settle", self.settle)):
            if not isinstance(v, str) or not _ASSET.match(v):
                raise DataError(f"instrument {what!r}: {label} {v!r} is not a currency code")
        if self.kind in ("future", "option"):
            if self.expiry is None:
                raise DataError(f"instrument {what!r}: a {self.kind} needs an expiry")
            t = pd.Timestamp(self.expiry)
            object.__setattr__(self, "expiry", t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC"))
        elif self.expiry is not None:
            raise DataError(f"instrument {what!r}: a {self.kind} has no expiry")
        if self.kind == "option":
            if self.strike is None or not (math.isfinite(self.strike) and self.strike > 0):
                raise DataError(f"instrument {what!r}: strike is {self.strike}; an option needs a strike > 0")
            if self.option_type not in ("C", "P"):
                raise DataError(f"instrument {what!r}: option type is {self.option_type!r}; use C or P")
        elif self.strike is not None or self.option_type is not None:
            raise DataError(f"instrument {what!r}: only options have a strike and an option type")
        if self.kind == "spot" and self.settle != self.quote:
            raise DataError(f"instrument {what!r}: a spot pair settles in its quote currency")

    @property
    def underlying(self) -> str:
        return self.base

    @property
    def inverse(self) -> bool:
        """True when the contract settles in its base coin (coin-margined)."""
        return self.kind != "spot" and self.settle == self.base

    @property
    def linear(self) -> bool:
        return not self.inverse

    @property
    def is_derivative(self) -> bool:
        return self.kind != "spot"

    @property
    def name(self) -> str:
        """The margincal form (see :func:`format_name`)."""
        return format_name(self)

    def years_to_expiry(self, at: Any) -> float:
        """ACT/365 years from ``at`` to expiry (0 for spot and perpetuals)."""
        if self.expiry is None:
            return 0.0
        t = pd.Timestamp(at)
        t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
        return (self.expiry - t).total_seconds() / (365.0 * 86400.0)


def _fail(name: str, why: str = "") -> DataError:
    return DataError(
        f"instrument {name!r}: {why + '; ' if why else ''}expected a spot pair (BTC-USDT, BTC/USDT, BTCUSDT), "
        "a perpetual (BTC-PERP, BTC-PERPETUAL, BTC-USDT-SWAP, BTC/USDT:USDT, BTCUSDT perp), a dated future "
        "(BTC-28JUN24) or an option (BTC-28JUN24-60000-P)"
    )


def _expiry(token: str, name: str) -> pd.Timestamp | None:
    m = _DERIBIT_DATE.match(token)
    if m:
        if m.group(2) not in _MONTHS:
            raise _fail(name, f"{token!r} has no month {m.group(2)!r}")
        y, mo, d = 2000 + int(m.group(3)), _MONTHS.index(m.group(2)) + 1, int(m.group(1))
    else:
        m = _YYMMDD.match(token)
        if not m:
            return None
        y, mo, d = 2000 + int(m.group(1)), int(m.group(2)), int(m.group(3))
    try:
        return pd.Timestamp(year=y, month=mo, day=d, hour=SETTLEMENT_HOUR_UTC, tz="UTC")
    except ValueError:
        raise _fail(name, f"{token!r} is not a valid date") from None


def _strike(token: str, name: str) -> float:
    try:
        k = float(token.replace("D", "."))
    except ValueError:
        raise _fail(name, f"strike {token!r} is not a number") from None
    if not (math.isfinite(k) and k > 0):
        raise _fail(name, f"strike {token!r} must be > 0")
    return k


def _split_pair(token: str) -> tuple[str, str] | None:
    """``BTCUSDT`` -> (BTC, USDT); ``BTC_USDC`` -> (BTC, USDC); None when no known quote ends it."""
    if "_" in token:
        b, _, q = token.partition("_")
        return (b, q) if b and q in QUOTES else None
    for q in QUOTES:
        if token.endswith(q) and len(token) > len(q):
            return token[: -len(q)], q
    return None


def _base_quote(token: str, name: str) -> tuple[str, str, bool]:
    """A leading ``BTC`` or ``BTC_USDC`` token -> (base, quote, quote given?)."""
    if "_" in token:
        pair = _split_pair(token)
        if pair is None:
            raise _fail(name, f"{token!r} is not BASE_QUOTE with a known quote ({', '.join(QUOTES)})")
        return pair[0], pair[1], True
    return token, "USD", False


def _derivative(kind: str, base: str, quote: str, settle: str, expiry: Any, strike: Any, ot: Any,
                raw: str) -> Instrument:
    return Instrument(kind, base, quote, settle, expiry, strike, ot, raw)


def parse(name: str | Instrument, *, venue: str | None = None, inverse: bool | None = None) -> Instrument:
    """Parse an instrument name (any form in the module doc) into an :class:`Instrument`.

    ``inverse`` overrides what the name says about settlement (the bare forms
    are linear by default). ``venue="dydx"`` reads ``ETH-USD`` as dYdX's
    USDC-settled perpetual instead of a spot pair. Raises :class:`DataError`
    naming the text and the accepted forms.
    """
    if venue is not None and venue.lower() not in VENUES:
        raise DataError(f"venue {venue!r} has no naming rule here; known: {', '.join(VENUES)}")
    if isinstance(name, Instrument):
        inst, raw = name, name.raw
    else:
        raw = str(name).strip()
        if not raw:
            raise _fail(raw, "the name is empty")
        inst = _parse(raw.upper(), raw, venue.lower() if venue else None)
    if inverse is not None and inst.kind != "spot" and inst.inverse != inverse:
        inst = Instrument(inst.kind, inst.base, inst.quote, inst.base if inverse else inst.quote,
                          inst.expiry, inst.strike, inst.option_type, raw)
    return inst


def _parse(s: str, raw: str, venue: str | None) -> Instrument:
    # "BTCUSDT perp", "BTCUSDT.P", "BTCUSDT_PERP", "BTCUSD_PERP"
    m = re.match(r"^([A-Z0-9]+?)(?:\s+(?:PERP|PERPETUAL|SWAP)|\.P|_PERP)$", s)
    if m:
        pair = _split_pair(m.group(1))
        if pair is None:
            raise _fail(raw, f"{m.group(1)!r} does not end in a known quote ({', '.join(QUOTES)})")
        b, q = pair
        return _derivative("perpetual", b, q, b if q == "USD" else q, None, None, None, raw)
    # ccxt unified: BASE/QUOTE[:SETTLE[-YYMMDD[-STRIKE-C|P]]]
    if "/" in s:
        m = re.match(r"^([A-Z0-9]+)/([A-Z0-9]+)(?::([A-Z0-9]+)(?:-(\d{6})(?:-([0-9.D]+)-([CP]))?)?)?$", s)
        if not m:
            raise _fail(raw)
        b, q, st, exp, k, ot = m.groups()
        if st is None:
            return Instrument("spot", b, q, q, raw=raw)
        e = _expiry(exp, raw) if exp else None
        if k is not None:
            return _derivative("option", b, q, st, e, _strike(k, raw), ot, raw)
        return _derivative("future" if e is not None else "perpetual", b, q, st, e, None, None, raw)
    parts = s.split("-")
    if any(not p for p in parts):
        raise _fail(raw)
    if len(parts) == 1:
        tok = parts[0]
        m = re.match(r"^([A-Z0-9]+)_(\d{6})$", tok)  # Binance delivery: BTCUSDT_240628, BTCUSD_240628
        if m:
            pair = _split_pair(m.group(1))
            e = _expiry(m.group(2), raw)
            if pair is None or e is None:
                raise _fail(raw)
            b, q = pair
            return _derivative("future", b, q, b if q == "USD" else q, e, None, None, raw)
        pair = _split_pair(tok)
        if pair is None:
            raise _fail(raw, "a bare currency is not an instrument")
        return Instrument("spot", pair[0], pair[1], pair[1], raw=raw)
    head, rest = parts[0], parts[1:]
    if len(rest) == 1:
        t = rest[0]
        if t in _PERP_WORDS:
            b, q, _ = _base_quote(head, raw)
            return _derivative("perpetual", b, q, q, None, None, None, raw)
        e = _expiry(t, raw)
        if e is not None:
            b, q, _ = _base_quote(head, raw)
            return _derivative("future", b, q, q, e, None, None, raw)
        if "_" in head:
            raise _fail(raw)
        if venue == "dydx" and t in USD_LIKE:
            return _derivative("perpetual", head, t, "USDC", None, None, None, raw)
        if t in QUOTES:
            return Instrument("spot", head, t, t, raw=raw)
        raise _fail(raw)
    if len(rest) == 2 and "_" not in head and rest[0] in QUOTES:
        # OKX: BTC-USDT-SWAP / BTC-USD-SWAP (inverse), BTC-USDT-PERP, BTC-USDT-240628
        q, t = rest
        st = head if q == "USD" else q
        if t in _PERP_WORDS:
            return _derivative("perpetual", head, q, st, None, None, None, raw)
        e = _expiry(t, raw)
        if e is not None:
            return _derivative("future", head, q, st, e, None, None, raw)
        raise _fail(raw)
    if len(rest) == 3:
        e = _expiry(rest[0], raw)
        if e is None:
            raise _fail(raw, f"{rest[0]!r} is not an expiry like 28JUN24")
        if rest[2] not in ("C", "P"):
            raise _fail(raw, f"option type {rest[2]!r} must be C or P")
        b, q, _ = _base_quote(head, raw)
        return _derivative("option", b, q, q, e, _strike(rest[1], raw), rest[2], raw)
    raise _fail(raw)


def _date_token(t: pd.Timestamp) -> str:
    return f"{t.day}{_MONTHS[t.month - 1]}{t.year % 100:02d}"


def _strike_token(k: float, decimal: str = "d") -> str:
    return f"{k:.0f}" if float(k).is_integer() else f"{k:g}".replace(".", decimal)


def format_name(inst: Instrument | str, style: str = "margincal") -> str:
    """Write an instrument in the margincal form or the ccxt unified form.

    margincal: ``BTC-USDT`` (spot), ``BTC-PERP``, ``BTC-28JUN24``,
    ``BTC-28JUN24-60000-P``; a derivative quoted in a non-USD currency keeps
    Deribit's ``BTC_USDC-`` prefix; USDT and USD both write as the bare form
    (module doc). ccxt: ``BTC/USDT``, ``BTC/USDT:USDT``,
    ``BTC/USD:BTC-240628-60000-P`` (keeps quote and settlement).
    """
    i = parse(inst) if isinstance(inst, str) else inst
    if style == "ccxt":
        if i.kind == "spot":
            return f"{i.base}/{i.quote}"
        out = f"{i.base}/{i.quote}:{i.settle}"
        if i.expiry is not None:
            out += f"-{i.expiry:%y%m%d}"
        if i.kind == "option":
            assert i.strike is not None  # Instrument.__post_init__: every option has a strike
            out += f"-{_strike_token(float(i.strike), '.')}-{i.option_type}"
        return out
    if style != "margincal":
        raise DataError(f"style {style!r}: use 'margincal' or 'ccxt'")
    if i.kind == "spot":
        return f"{i.base}-{i.quote}"
    head = i.base if i.quote in ("USD", "USDT") else f"{i.base}_{i.quote}"
    if i.kind == "perpetual":
        return f"{head}-PERP"
    date = _date_token(i.expiry)
    if i.kind == "future":
        return f"{head}-{date}"
    assert i.strike is not None  # Instrument.__post_init__: every option has a strike
    return f"{head}-{date}-{_strike_token(float(i.strike))}-{i.option_type}"


def perpetual_name(underlying: str) -> str:
    """The margincal perpetual of an underlying (``BTC`` -> ``BTC-PERP``)."""
    return format_name(Instrument("perpetual", underlying.upper()))


def spot_name(underlying: str, quote: str = "USDT") -> str:
    """The margincal spot pair of an underlying (``BTC`` -> ``BTC-USDT``)."""
    return format_name(Instrument("spot", underlying.upper(), quote, quote))


def underlying_of(name: str | Instrument, default: str | None = None) -> str:
    """Base currency of an instrument name (``BTC_USDC-28JUN24-60000-C`` -> ``BTC``).

    ``default`` (when given) is returned for text that is no instrument name instead of an error.
    """
    try:
        return parse(name).base
    except DataError:
        if default is None:
            raise
        return default


def kind_of(name: str | Instrument, default: str | None = None) -> str:
    """Kind of an instrument name; ``default`` (when given) instead of an error for unparseable text."""
    try:
        return parse(name).kind
    except DataError:
        if default is None:
            raise
        return default


__all__ = ["KINDS", "QUOTES", "SETTLEMENT_HOUR_UTC", "Instrument", "format_name", "kind_of", "parse",
           "perpetual_name", "spot_name", "underlying_of"]
