"""Shared pieces of the venue formats: exact number parsing, error messages, bracket building.

Venues publish their figures as decimal strings ("0.004", "150000000.0") or
integers in fixed precisions (ppm, 1e4). Everything here reads them into
:class:`fractions.Fraction` so that a venue's own arithmetic (``cum``,
maintenance deductions, ppm floors) can be reproduced to the unit; floats are
only produced at the boundary with the rest of margincal (rates in
:class:`~margincal.margin.params.InstrumentParams`).

Errors name the file, the record, the field and the rule, e.g.
``ConfigError("brackets.json: BTCUSDT bracket 3: maintMarginRatio is 'x'; it must be a decimal number")``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from margincal.errors import ConfigError
from margincal.margin.params import InstrumentParams, ParameterSet
from margincal.margin.tiers import Tier, TierSchedule


@dataclass(frozen=True)
class Ctx:
    """Where a value comes from (file name and record), for error messages."""

    file: str
    record: str = ""

    def at(self, record: str) -> Ctx:
        return Ctx(self.file, f"{self.record} {record}".strip())

    def error(self, fld: str, value: object, rule: str) -> ConfigError:
        where = f"{self.file}: {self.record}: " if self.record else f"{self.file}: "
        return ConfigError(f"{where}{fld} is {value!r}; {rule}")

    def missing(self, fld: str, have: Sequence[str]) -> ConfigError:
        where = f"{self.file}: {self.record}: " if self.record else f"{self.file}: "
        return ConfigError(f"{where}field {fld!r} is missing (record has {', '.join(sorted(have)) or 'no fields'})")


def get(rec: Mapping[str, Any], ctx: Ctx, *names: str, default: Any = ...) -> Any:
    """First present field of ``names`` (venue spellings differ); ConfigError when absent and no default."""
    if not isinstance(rec, Mapping):
        raise ConfigError(f"{ctx.file}: {ctx.record}: expected an object, got {type(rec).__name__}")
    for n in names:
        if n in rec and rec[n] is not None and rec[n] != "":
            return rec[n]
    if default is not ...:
        return default
    raise ctx.missing(names[0], list(rec))


def frac(value: object, ctx: Ctx, fld: str, *, low: Fraction | None = None, high: Fraction | None = None,
         low_open: bool = False) -> Fraction:
    """An exact decimal from a venue field (string, int or float); range-checked."""
    if isinstance(value, bool):
        raise ctx.error(fld, value, "it must be a decimal number")
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError
            out = Fraction(repr(value))
        elif isinstance(value, (int, Fraction)):
            out = Fraction(value)
        else:
            out = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError, TypeError):
        raise ctx.error(fld, value, "it must be a decimal number") from None
    if low is not None and (out <= low if low_open else out < low):
        raise ctx.error(fld, value, f"it must be {'>' if low_open else '>='} {fmt(low)}")
    if high is not None and out > high:
        raise ctx.error(fld, value, f"it must be <= {fmt(high)}")
    return out


def check_leverage(im: Fraction, lev: Fraction, ctx: Ctx, im_field: str, lev_field: str) -> None:
    """The IM rate must be 1 / max leverage (to 1%): catches files whose rates are in percent."""
    if abs(im * lev - 1) > Fraction(1, 100):
        raise ctx.error(im_field, fmt(im), f"it must be 1/{lev_field} = {float(1 / lev):.6g} (rates are fractions, "
                        "not percent)")


def integer(value: object, ctx: Ctx, fld: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer field (ppm, quantums, exponents); strings of digits accepted, decimals refused."""
    f = frac(value, ctx, fld)
    if f.denominator != 1:
        raise ctx.error(fld, value, "it must be a whole number")
    n = int(f)
    if low is not None and n < low:
        raise ctx.error(fld, value, f"it must be >= {low}")
    if high is not None and n > high:
        raise ctx.error(fld, value, f"it must be <= {high}")
    return n


def fmt(x: Fraction | int | float) -> str:
    """Exact decimal string of ``x`` when it has one (denominator 2^a 5^b), else 12 significant digits."""
    if isinstance(x, float):
        return repr(x)
    f = Fraction(x)
    d, a, b = f.denominator, 0, 0
    while d % 2 == 0:
        d, a = d // 2, a + 1
    while d % 5 == 0:
        d, b = d // 5, b + 1
    if d != 1:
        return f"{float(f):.12g}"
    k = max(a, b)
    if k == 0:
        return str(f.numerator)
    n = abs(f.numerator) * 10**k // f.denominator
    digits = str(n).rjust(k + 1, "0")
    s = (digits[:-k] + "." + digits[-k:]).rstrip("0").rstrip(".")
    return ("-" if f < 0 else "") + s


def exact_str(x: Fraction | int) -> str:
    """``fmt`` when ``x`` is a finite decimal, else ``"n/d"`` (read back exactly by ``Fraction``)."""
    f = Fraction(x)
    s = fmt(f)
    return s if Fraction(s) == f else f"{f.numerator}/{f.denominator}"


def rate(x: float) -> Fraction:
    """A float rate from our side as the decimal it was published on (12 significant decimals)."""
    return Fraction(f"{x:.12g}")


def ceil_frac(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def floor_frac(x: Fraction) -> int:
    return x.numerator // x.denominator


def read_document(source: str | Path | bytes | Any, name: str | None = None) -> tuple[Any, str, str | None]:
    """Parse a JSON venue file (path, text or already-parsed object): (document, display name, sha256)."""
    if isinstance(source, (dict, list)):
        return source, name or "<object>", None
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith(("{", "["))):
        p = Path(source)
        if not p.exists():
            raise ConfigError(f"{p}: file does not exist")
        raw = p.read_bytes()
        display = name or p.name
    else:
        raw = source.encode() if isinstance(source, str) else bytes(source)
        display = name or "<text>"
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{display}: not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{display} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    return doc, display, hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Bracket:
    """One venue bracket in exact numbers: notional floor/cap, IM rate, MM rate, max leverage (as published)."""

    floor: Fraction
    cap: Fraction | None
    im_rate: Fraction
    mm_rate: Fraction
    max_leverage: Fraction
    deduction: Fraction | None = None  # published cum / mmDeduction, when present
    extra: dict[str, Any] = field(default_factory=dict)


def deductions(brackets: Sequence[Bracket]) -> list[Fraction]:
    """Exact maintenance deductions ``d_k = d_(k-1) + floor_k * (mmr_k - mmr_(k-1))``, ``d_0 = 0``."""
    out = [Fraction(0)]
    for a, b in zip(brackets, brackets[1:], strict=False):
        out.append(out[-1] + b.floor * (b.mm_rate - a.mm_rate))
    return out[: len(brackets)]


def check_brackets(brackets: Sequence[Bracket], ctx: Ctx, *, check_deduction: bool = True) -> None:
    """Contiguous, increasing floors; published deductions equal the exact recomputation."""
    if not brackets:
        raise ConfigError(f"{ctx.file}: {ctx.record}: no brackets")
    if brackets[0].floor != 0:
        raise ctx.error("first floor", fmt(brackets[0].floor), "the first bracket must start at 0")
    for k, (a, b) in enumerate(zip(brackets, brackets[1:], strict=False), start=1):
        if a.cap is not None and a.cap != b.floor:
            raise ConfigError(f"{ctx.file}: {ctx.record}: bracket {k} cap {fmt(a.cap)} != bracket {k + 1} floor "
                              f"{fmt(b.floor)}; brackets must be contiguous")
        if not b.floor > a.floor:
            raise ConfigError(f"{ctx.file}: {ctx.record}: bracket {k + 1} floor {fmt(b.floor)} is not above "
                              f"bracket {k} floor {fmt(a.floor)}; floors must increase")
    if check_deduction:
        for k, (b, d) in enumerate(zip(brackets, deductions(brackets), strict=True), start=1):
            if b.deduction is not None and b.deduction != d:
                raise ConfigError(
                    f"{ctx.file}: {ctx.record}: bracket {k}: published maintenance deduction is {fmt(b.deduction)} "
                    f"but the brackets give {fmt(d)}; d_k = d_(k-1) + floor_k * (mmr_k - mmr_(k-1))")


def _leverage(b: Bracket) -> float:
    """1 / IM rate; the published whole leverage when the IM rate is its rounded decimal (0.3333 for 3x)."""
    inv = 1 / b.im_rate
    lev = b.max_leverage
    if lev.denominator == 1 and abs(inv - lev) <= lev * Fraction(1, 10**9):
        return float(lev)
    return float(inv)


def schedule_of(brackets: Sequence[Bracket], ctx: Ctx, source: dict[str, Any] | None = None, *,
                cap_inclusive: bool = False, whole_position: bool = False) -> TierSchedule:
    """The brackets as a :class:`TierSchedule` (max leverage = 1 / IM rate, so IM = N / leverage exactly)."""
    try:
        tiers = [Tier(float(b.floor), _leverage(b), float(b.mm_rate)) for b in brackets]
        last = brackets[-1].cap
        return TierSchedule(tiers, max_notional=None if last is None else float(last), source=source or {},
                            cap_inclusive=cap_inclusive, whole_position=whole_position)
    except ConfigError as e:
        raise ConfigError(f"{ctx.file}: {ctx.record}: {e}") from None


def bracket_params(instrument: str, brackets: Sequence[Bracket], ctx: Ctx, *, venue: str, rule: str,
                   extra: dict[str, Any] | None = None, cap_inclusive: bool = False,
                   whole_position: bool = False) -> InstrumentParams:
    """InstrumentParams with the brackets as tiers (rates of the first bracket) and the venue fields kept.

    ``cap_inclusive``: a notional exactly on a cap belongs to the lower bracket (the venue's rule; see
    :class:`~margincal.margin.tiers.TierSchedule`), recorded as ``details["cap_inclusive"]``;
    ``whole_position``: the bracket's rates apply to the whole position (no deduction), recorded as
    ``details["whole_position"]``."""
    sched = schedule_of(brackets, ctx, {"venue": venue, "symbol": instrument}, cap_inclusive=cap_inclusive,
                        whole_position=whole_position)
    details: dict[str, Any] = {"venue": venue, "rule": rule, "tiers": sched.to_details(),
                               "venue_brackets": [
                                   {"floor": exact_str(b.floor),
                                    "cap": None if b.cap is None else exact_str(b.cap),
                                    "im_rate": exact_str(b.im_rate), "mm_rate": exact_str(b.mm_rate),
                                    "max_leverage": exact_str(b.max_leverage),
                                    "deduction": exact_str(d), **b.extra}
                                   for b, d in zip(brackets, deductions(brackets), strict=True)]}
    if cap_inclusive:
        details["cap_inclusive"] = True
    if whole_position:
        details["whole_position"] = True
    details.update(extra or {})
    try:
        return InstrumentParams(instrument, float(brackets[0].im_rate), float(brackets[0].mm_rate), details)
    except ConfigError as e:
        raise ConfigError(f"{ctx.file}: {ctx.record}: {e}") from None


def brackets_from_params(p: InstrumentParams) -> list[Bracket]:
    """Our tiers (or the single IM/MM pair) as exact brackets; IM rate = 1 / whole max leverage when published so."""
    vb = p.details.get("venue_brackets")
    if vb:
        return [Bracket(Fraction(b["floor"]), None if b["cap"] is None else Fraction(b["cap"]),
                        Fraction(b["im_rate"]), Fraction(b["mm_rate"]), Fraction(b["max_leverage"]))
                for b in vb]
    rows = p.details.get("tiers") or [{"lower": 0.0, "upper": None, "max_leverage": 1.0 / p.im_rate,
                                       "im_rate": p.im_rate, "mm_rate": p.mm_rate}]
    out = []
    for r in rows:
        lev = rate(float(r["max_leverage"]))
        im = rate(float(r.get("im_rate") or 1.0 / float(r["max_leverage"])))
        if lev.denominator == 1 and abs(float(1 / lev) - float(im)) < 1e-9:
            im = 1 / lev
        up = r.get("upper")
        out.append(Bracket(rate(float(r["lower"])), None if up in (None, "") else rate(float(up)), im,
                           rate(float(r["mm_rate"])), lev))
    return out


def base_rates(p: InstrumentParams) -> tuple[Fraction, Fraction]:
    """IM and MM rates of the smallest position as our brackets publish them (first bracket), exactly."""
    b = brackets_from_params(p)[0]
    return b.im_rate, b.mm_rate


def provenance(*, venue: str, fmt_name: str, display: str, sha256: str | None, fetched: str | None,
               source: str | None, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "venue_import", "venue": venue, "format": fmt_name, "source_file": display,
            "sha256": sha256, "fetched": fetched, "source": source, "options": dict(options or {})}


def parameter_set(params: Mapping[str, InstrumentParams], prov: dict[str, Any]) -> ParameterSet:
    if not params:
        raise ConfigError(f"{prov.get('source_file')}: no instruments found in the {prov.get('format')} file")
    stamped = {}
    for k, p in params.items():
        d = dict(p.details)
        d.setdefault("source", prov.get("source") or prov.get("source_file"))
        d.setdefault("retrieved", prov.get("fetched"))
        d["source_file"] = prov.get("source_file")
        stamped[k] = InstrumentParams(p.instrument, p.im_rate, p.mm_rate, d)
    return ParameterSet(params=stamped, provenance=prov, source=f"import:{prov['venue']}")
