"""Exchange margin rules reproduced as presets (for comparing policies in backtests).

Each :class:`Preset` has ``margin_rate(notional, open_interest=None, price=None)``
returning :class:`MarginRates` (IM and MM as fractions of notional, vectorised
over notionals), ``margin(..., exact=True)`` / ``margin_exact(...)`` computing in
the venue's own arithmetic (integers or exact fractions, see
:mod:`margincal.margin.venues`), and ``to_parameter_set()`` /
``to_instrument_params()`` for the publishing and export machinery.

The tables are data, not code: ``margin/venue_tables/`` holds each venue's table
in the venue's own format with a ``MANIFEST.json`` giving, per file, its source
and date (``as_of``, ``retrieved``). Venues change these figures without notice;
to use a newer table, load the venue's current answer with :func:`from_file`
(or ``margincal params import --format ... FILE``), or list a manifest of your
own in ``$MARGINCAL_VENUE_TABLES`` (same layout; its presets replace the bundled
ones of the same name) -- no code change needed.

* ``deribit_btc_future`` / ``deribit_eth_future``: Deribit standard-margin
  futures, linear size rule in coin (IM 2% + 0.005%/BTC, MM 1% + 0.005%/BTC;
  ETH 2% / 1% + 0.0004%/ETH), in force from 2022-01-11. Sizes are in coins, so
  notionals are divided by ``price`` (default ``reference_price``: 100,000 USD
  for BTC as in Deribit's own worked example; 2,500 USD for ETH, assumed).
* ``binance_btcusdt``: Binance USD-M BTCUSDT leverage brackets (a
  ``GET /fapi/v1/leverageBracket`` snapshot without a timestamp; 10 brackets,
  125x to 1x, cum 0 to 103,046,300). Dated between 2023-06-30 and 2023-09-29
  by a second recording of the same brackets (freqtrade's, beside the
  quarterlies it lists; the manifest's ``notes`` give the reasoning). IM is
  Binance's step rule ``N / max_leverage`` of the bracket; MM is
  ``N * maintMarginRatio - cum``.
* ``binance_btcusdt_20210318``: the BTCUSDT table Binance announced for
  2021-03-18 09:00 UTC (10 brackets 125x to 1x, caps 50k to 500M; ``cum``
  computed by Binance's rule, as read from its web app on 2021-03-26). Dated
  but old: later announcements changed the caps.
* ``binance_btcusdt_2024q3``: the BTCUSDT brackets recorded by freqtrade
  between 2024-06-28 and 2024-09-27 (12 brackets 125x to 1x, caps 50k to
  1.8B; every ``cum`` checked against Binance's rule), dated by the quarterly
  contracts the same recording lists. The newest dated Binance table bundled.
* ``bybit_btcusdt`` / ``bybit_ethperp``: Bybit's lowest risk-limit tier only
  (BTCUSDT to 2,000,000 USDT: IM 1%, MM 0.5%; ETHPERP to 500,000 USDC: IM 1.5%,
  MM 1%), from Bybit's v3 documentation examples dated by their response time
  (2022-07-14, 2022-12-25). The higher tiers are not published there: the
  presets are valid up to the cap (``schedule.within_cap``) and price larger
  positions with the first tier.
* ``okx_eth_usdt_swap``: OKX ETH-USDT perpetual swap position tiers announced
  for 2021-06-11 (tiers 1-3 as printed, tier 4 on by the announced rule, 200
  tiers to IMR 100%), contracts priced at 2,500 USD with ctVal 0.1 ETH; the
  file can be re-read at another price with :func:`from_file`.
* ``okx_btc_usdt_swap``: OKX BTC-USDT perpetual swap position tiers (cross), a
  complete recorded ``GET /api/v5/public/position-tiers`` answer (99 tiers,
  100x to 2x, to 1,940,000 contracts), dated 2026-09 by two readings of the
  same tiers (the answer has no timestamp); contracts of ctVal 0.01 BTC priced
  at 100,000 USD (assumed).
* ``hyperliquid_btc`` / ``hyperliquid_eth``: Hyperliquid mainnet margin tables
  56 and 55 (BTC 40x to 150M USDC then 20x; ETH 25x to 100M then 15x), MM half
  the IM at max leverage with the maintenance deduction.
* ``dydx_large_cap`` / ``dydx_mid_cap`` / ``dydx_small_cap`` / ``dydx_long_tail``:
  dYdX v4 liquidity tiers 0, 5, 1 and 2 of the default genesis (IMF,
  maintenance fraction, OI caps in USDC); the OI rule raises the IMF linearly
  from the lower to the upper cap; the MMF stays ``IMF_base * maintenance_fraction``.

No Drift preset and no complete Bybit BTCUSDT table are bundled: no dated table
was found in the sources read (``MANIFEST.json`` ``missing``); import one with
``params import``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from margincal.errors import ConfigError
from margincal.margin.params import InstrumentParams, ParameterSet
from margincal.margin.size_rules import linear_size_rate, oi_scaled_imf, oi_scaled_mmf
from margincal.margin.tiers import TierSchedule


@dataclass(frozen=True)
class MarginRates:
    """IM and MM rates (fractions of notional); floats for scalar input, arrays otherwise."""

    im: Any
    mm: Any


@dataclass(frozen=True)
class Preset:
    """A venue's published margin rule."""

    name: str
    venue: str
    instrument: str
    rule: str
    source: str
    retrieved: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    schedule: TierSchedule | None = None
    reference_price: float | None = None
    _fn: Callable[..., MarginRates] | None = field(default=None, repr=False, compare=False)
    #: the venue's own arithmetic (a margincal.margin.venues ``*Arithmetic`` object), for ``exact=True``
    arithmetic: Any = field(default=None, repr=False, compare=False)
    as_of: str | None = None
    table_file: str | None = None
    #: what the source does not give (a partial table, an unknown date), from the manifest's ``notes``
    notes: str | None = None
    #: the venue's own record of the instrument (dYdX liquidity tier with its id, Drift market), kept for export
    venue_record: dict[str, Any] | None = field(default=None, compare=False)

    def margin_rate(self, notional: ArrayLike, open_interest: ArrayLike | None = None, *, price: float | None = None
                    ) -> MarginRates:
        """IM and MM rates for positions of ``notional`` (quote currency); see each rule."""
        if self._fn is None:  # pragma: no cover - every preset sets one
            raise ConfigError(f"preset {self.name} has no rule")
        return self._fn(self, np.abs(np.asarray(notional, dtype=float)), open_interest, price)

    def margin(self, notional: ArrayLike, open_interest: ArrayLike | None = None, *, price: float | None = None,
               exact: bool = False) -> MarginRates:
        """IM and MM amounts (quote currency); ``exact=True`` uses the venue's own arithmetic (scalars)."""
        if exact:
            im_x, mm_x = self.margin_exact(notional, open_interest, price=price)  # type: ignore[arg-type]
            return MarginRates(float(im_x), float(mm_x))
        n = np.abs(np.asarray(notional, dtype=float))
        r = self.margin_rate(n, open_interest, price=price)
        im, mm = np.asarray(r.im) * n, np.asarray(r.mm) * n
        return MarginRates(_o(im), _o(mm))

    def margin_exact(self, notional: float | str | Fraction, open_interest: float | str | Fraction | None = None,
                     *, price: float | str | Fraction | None = None) -> tuple[Fraction, Fraction]:
        """(IM, MM) in quote currency, computed as the venue does (see each venue module):

        dYdX: notional and OI rounded down to whole USDC quantums, IMF floored to a
        whole ppm, requirements rounded up to whole quantums, MM from the base IMF;
        Binance / Hyperliquid: exact fractions of the published decimals with the
        maintenance deduction; Deribit: the per-coin linear rule on ``notional /
        price`` coins.
        """
        from margincal.margin.venues import deribit, dydx

        a = self.arithmetic
        if a is None:
            raise ConfigError(f"preset {self.name} has no venue arithmetic")
        n = abs(Fraction(str(notional)))
        if isinstance(a, dydx.DydxArithmetic):
            return a.margin_usdc(n, 0 if open_interest is None else Fraction(str(open_interest)))
        if isinstance(a, deribit.DeribitArithmetic):
            px = price if price is not None else self.reference_price
            if px is None or not float(px) > 0:
                raise ConfigError(f"preset {self.name}: price is {px}; coin-sized rules need the mark price > 0")
            pxf = Fraction(str(px))
            size = n / pxf
            return a.initial_margin(size) * pxf, a.maintenance_margin(size) * pxf
        return a.initial_margin(n), a.maintenance_margin(n)

    def details(self) -> dict[str, Any]:
        d: dict[str, Any] = {"preset": self.name, "venue": self.venue, "rule": self.rule, "source": self.source,
                             "retrieved": self.retrieved, "description": self.description, **self.params}
        if self.reference_price is not None:
            d["reference_price"] = self.reference_price
        if self.as_of is not None:
            d["as_of"] = self.as_of
        if self.table_file is not None:
            d["table_file"] = self.table_file
        if self.notes is not None:
            d["notes"] = self.notes
        if self.venue_record:
            d.update(self.venue_record)
        if self.schedule is not None:
            d["tiers"] = self.schedule.to_details()
        return d

    def to_instrument_params(self) -> InstrumentParams:
        """Row with the rates of the smallest position (notional 0) and the rule in ``details``."""
        r = self.margin_rate(0.0, 0.0)
        return InstrumentParams(self.instrument, float(r.im), float(r.mm), self.details())


def _o(x: np.ndarray) -> Any:
    return float(x) if np.ndim(x) == 0 else x


def _linear(p: Preset, n: np.ndarray, _oi: ArrayLike | None, price: float | None) -> MarginRates:
    px = price if price is not None else p.reference_price
    if px is None or not px > 0:
        raise ConfigError(f"preset {p.name}: price is {px}; coin-sized rules need the mark price > 0")
    size = n / px
    im = linear_size_rate(size, p.params["im_base"], p.params["im_per_unit"])
    mm = linear_size_rate(size, p.params["mm_base"], p.params["mm_per_unit"])
    return MarginRates(_o(np.asarray(im)), _o(np.asarray(mm)))


def _brackets(p: Preset, n: np.ndarray, _oi: ArrayLike | None, _price: float | None) -> MarginRates:
    assert p.schedule is not None
    im = p.schedule.initial_rate(n, continuous=False)
    mm = p.schedule.maintenance_rate(n)
    return MarginRates(_o(np.asarray(im)), _o(np.asarray(mm)))


def _oi(p: Preset, n: np.ndarray, oi: ArrayLike | None, _price: float | None) -> MarginRates:
    oi_arr = np.asarray(0.0 if oi is None else oi, dtype=float)
    pr = p.params
    im = np.asarray(oi_scaled_imf(pr["base_imf"], oi_arr, pr["oi_lower_cap"], pr["oi_upper_cap"]))
    mm = np.asarray(oi_scaled_mmf(pr["base_imf"], pr["maintenance_fraction"], oi_arr))
    shape = np.broadcast_shapes(n.shape, im.shape)
    return MarginRates(_o(np.broadcast_to(im, shape).copy()), _o(np.broadcast_to(mm, shape).copy()))


# Binance BTCUSDT leverage brackets as in venue_tables/binance_usdm_BTCUSDT.json (kept for callers of the constant).
BINANCE_BTCUSDT_BRACKETS: tuple[tuple[float, float, int, float, float], ...] = (
    # notionalFloor, notionalCap, initialLeverage, maintMarginRatio, cum
    (0, 50_000, 125, 0.004, 0.0),
    (50_000, 250_000, 100, 0.005, 50.0),
    (250_000, 3_000_000, 50, 0.01, 1_300.0),
    (3_000_000, 20_000_000, 20, 0.025, 46_300.0),
    (20_000_000, 40_000_000, 10, 0.05, 546_300.0),
    (40_000_000, 100_000_000, 5, 0.1, 2_546_300.0),
    (100_000_000, 120_000_000, 4, 0.125, 5_046_300.0),
    (120_000_000, 200_000_000, 3, 0.15, 8_046_300.0),
    (200_000_000, 300_000_000, 2, 0.25, 28_046_300.0),
    (300_000_000, 500_000_000, 1, 0.5, 103_046_300.0),
)

TABLES_DIR = Path(__file__).resolve().parent / "venue_tables"


def _arithmetic(params: InstrumentParams) -> Any:
    from margincal.margin.venues import binance, deribit, drift, dydx, hyperliquid

    venue, rule = params.details.get("venue"), params.details.get("rule")
    if rule == "oi_scaled":
        return dydx.arithmetic(params)
    if rule == "linear_size":
        return deribit.arithmetic(params)
    if rule == "sqrt_size_premium":
        return drift.arithmetic(params)
    if rule == "brackets":
        if venue == "okx":
            from margincal.margin.venues import okx

            return okx.arithmetic(params)
        return hyperliquid.arithmetic(params) if venue == "hyperliquid" else binance.arithmetic(params)
    return None


def _drift_float(p: Preset, n: np.ndarray, _oi: ArrayLike | None, price: float | None) -> MarginRates:
    px = price if price is not None else p.reference_price
    if px is None or not px > 0:
        raise ConfigError(f"preset {p.name}: price is {px}; Drift's size premium is in base units, give the price")
    size = n / px
    out = []
    for key in ("margin_ratio_initial", "margin_ratio_maintenance"):
        r = p.params[key] / 1e4
        prem = 0.8 * r + p.params["imf_factor"] / 1e6 * np.sqrt(size)
        out.append(np.maximum(r, prem) if p.params["imf_factor"] else np.full_like(size, r))
    return MarginRates(_o(out[0]), _o(out[1]))


_RULES: dict[str, Callable[..., MarginRates]] = {"brackets": _brackets, "oi_scaled": _oi, "linear_size": _linear,
                                                 "sqrt_size_premium": _drift_float}
_PARAM_KEYS = ("base_imf", "maintenance_fraction", "oi_lower_cap", "oi_upper_cap", "im_base", "im_per_unit",
               "mm_base", "mm_per_unit", "size_unit", "margin_ratio_initial", "margin_ratio_maintenance",
               "imf_factor")


def _preset_from_params(name: str, params: InstrumentParams, *, instrument: str | None = None,
                        description: str | None = None, reference_price: float | None = None,
                        source: str | None = None, retrieved: str | None = None, as_of: str | None = None,
                        table_file: str | None = None, notes: str | None = None) -> Preset:
    d = params.details
    rule = d.get("rule")
    if rule not in _RULES:
        raise ConfigError(f"preset {name}: rule {rule!r} of the imported table is not one of {', '.join(_RULES)}")
    schedule = TierSchedule.from_details(d["tiers"]) if rule == "brackets" else None
    if schedule is not None:
        schedule = TierSchedule(schedule.tiers, max_notional=schedule.max_notional,
                                source={"venue": d.get("venue"), "symbol": d.get("symbol", params.instrument)},
                                cap_inclusive=bool(d.get("cap_inclusive", False)),
                                whole_position=bool(d.get("whole_position", False)))
    return Preset(
        name=name, venue=str(d.get("venue")), instrument=instrument or params.instrument, rule=str(rule),
        source=str(source or d.get("source") or ""), retrieved=str(retrieved or d.get("retrieved") or ""),
        description=description or f"{d.get('venue')} {params.instrument} ({rule})",
        params={k: d[k] for k in _PARAM_KEYS if k in d}, schedule=schedule,
        reference_price=reference_price if reference_price is not None else d.get("reference_price"),
        _fn=_RULES[str(rule)], arithmetic=_arithmetic(params), as_of=as_of, table_file=table_file, notes=notes,
        venue_record={k: d[k] for k in ("dydx", "drift") if k in d} or None)


def from_file(path: str | Path, fmt: str, *, prefix: str | None = None, as_of: str | None = None,
              source: str | None = None, reference_price: float | None = None, **options: Any) -> dict[str, Preset]:
    """Presets from a venue file in its own format (``fmt`` as in :data:`margincal.margin.venues.FORMATS`).

    One preset per instrument, named ``<prefix or venue>_<instrument>`` in lower
    case; ``as_of`` / ``source`` are recorded (default: the file's date). Use
    :func:`register` to make them available to :func:`get` (and to backtest
    policies ``preset:<name>``).
    """
    from margincal.margin import venues

    pset = venues.import_table(path, fmt, fetched=as_of, source_note=source, **options)
    pre = prefix or pset.provenance["venue"]
    out = {}
    for inst, p in pset.params.items():
        name = f"{pre}_{inst}".lower().replace("-", "_")
        out[name] = _preset_from_params(name, p, reference_price=reference_price,
                                        as_of=as_of or pset.provenance.get("fetched"),
                                        table_file=pset.provenance.get("source_file"))
    return out


def register(*new: Preset) -> None:
    """Add (or replace) presets in the registry used by :func:`get` and :func:`names`."""
    for p in new:
        PRESETS[p.name] = p


def load_manifest(path: str | Path) -> dict[str, Preset]:
    """Presets of a manifest (``venue_tables/MANIFEST.json`` layout; file paths relative to the manifest)."""
    from margincal.margin import venues

    mpath = Path(path)
    try:
        manifest = json.loads(mpath.read_text())
        entries = manifest["tables"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{mpath.name}: not a venue-table manifest ({e})") from None
    out: dict[str, Preset] = {}
    for i, t in enumerate(entries, start=1):
        try:
            file, fmt, presets_ = mpath.parent / t["file"], t["format"], t["presets"]
        except (KeyError, TypeError):
            raise ConfigError(f"{mpath.name}: tables[{i}] needs file, format and presets") from None
        pset = venues.import_table(file, fmt, fetched=t.get("retrieved"), source_note=t.get("source"),
                                   **t.get("options", {}))
        for name, spec in presets_.items():
            params = pset[spec.get("symbol", spec.get("instrument"))]
            out[name] = _preset_from_params(
                name, params, instrument=spec.get("instrument"), description=spec.get("description"),
                reference_price=spec.get("reference_price"), source=t.get("source"), retrieved=t.get("retrieved"),
                as_of=t.get("as_of"), table_file=t["file"], notes=t.get("notes"))
    return out


ENV_TABLES = "MARGINCAL_VENUE_TABLES"


def _build() -> dict[str, Preset]:
    """The bundled manifest, then each manifest named in ``$MARGINCAL_VENUE_TABLES`` (os.pathsep-separated).

    A user manifest's presets replace bundled ones of the same name, so a newer
    venue table is used by ``presets.get`` and by backtest policies
    ``preset:<name>`` without code changes. A manifest that cannot be read is
    skipped with a :class:`MargincalWarning` naming it and the reason.
    """
    import os
    import warnings

    from margincal.errors import MargincalWarning

    out = load_manifest(TABLES_DIR / "MANIFEST.json")
    for extra in filter(None, os.environ.get(ENV_TABLES, "").split(os.pathsep)):
        try:
            out.update(load_manifest(extra))
        except ConfigError as e:
            warnings.warn(f"${ENV_TABLES}: {extra} skipped: {e}", MargincalWarning, stacklevel=2)
    return out


PRESETS: dict[str, Preset] = _build()


#: the venue presets that quote each underlying's perpetual (the report and the validation set them beside
#: the engine's brackets; ``dydx_large_cap`` is dYdX v4's tier for BTC and ETH)
VENUE_PRESETS: dict[str, tuple[str, ...]] = {
    "BTC": ("binance_btcusdt", "hyperliquid_btc", "deribit_btc_future", "dydx_large_cap"),
    "ETH": ("hyperliquid_eth", "deribit_eth_future", "dydx_large_cap"),
}


def names() -> list[str]:
    """Names of the available presets."""
    return sorted(PRESETS)


def get(name: str) -> Preset:
    """The preset called ``name`` (ConfigError lists the names when unknown)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown margin preset {name!r}; choose one of {', '.join(names())}") from None


def parameter_set(preset_names: Sequence[str] | None = None) -> ParameterSet:
    """The presets as one :class:`ParameterSet` (instrument = each preset's instrument name)."""
    chosen = [get(n) for n in (preset_names or names())]
    params = {p.instrument: p.to_instrument_params() for p in chosen}
    return ParameterSet(params=params, provenance={"kind": "exchange_presets", "presets": [p.name for p in chosen]},
                        source="presets")
