"""Venue formats: read and write margin parameters in each venue's own shape, and each venue's own arithmetic.

One module per venue (``binance`` USD-M and COIN-M, ``bybit``, ``okx``,
``hyperliquid``, ``dydx`` v4, ``drift``, ``deribit``). Each has ``parse(document,
ctx, **options) -> {instrument: InstrumentParams}``, ``render(parameter_set,
**options) -> document`` and, where the venue computes in integers or exact
decimals, an arithmetic class (``DydxArithmetic``, ``DriftArithmetic``,
``BinanceArithmetic``, ``HyperliquidArithmetic``, ``DeribitArithmetic``).

* :func:`import_table` reads a venue file into a :class:`ParameterSet` whose
  provenance names the venue, format, file, its sha256 and the fetched date, so
  a venue's table can be published and backtested like ours.
* :func:`export_table` writes a ParameterSet (with its tiers) in a venue's
  format. Venues that cannot express something say so: dYdX has no size
  brackets (the base IM/MM rates only), Hyperliquid fixes MM at half the IM at max
  leverage, Drift and Deribit replace brackets with a fitted square-root /
  linear size rule (needs a reference price).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from margincal.errors import ConfigError
from margincal.margin.params import ParameterSet
from margincal.margin.venues import binance, bybit, deribit, drift, dydx, hyperliquid, okx
from margincal.margin.venues._common import Ctx, parameter_set, provenance, read_document


@dataclass(frozen=True)
class VenueFormat:
    name: str
    venue: str
    description: str
    parse: Callable[..., Any]
    render: Callable[..., Any]
    options: tuple[str, ...] = ()


def _binance_coinm_parse(doc: Any, ctx: Ctx, **kw: Any) -> Any:
    return binance.parse(doc, ctx, coin_margined=True, **kw)


def _binance_coinm_render(pset: ParameterSet, **kw: Any) -> Any:
    return binance.render(pset, coin_margined=True, **kw)


FORMATS: dict[str, VenueFormat] = {
    "binance": VenueFormat("binance", "binance", "Binance USD-M GET /fapi/v1/leverageBracket", binance.parse,
                           binance.render),
    "binance-coinm": VenueFormat("binance-coinm", "binance", "Binance COIN-M GET /dapi/v1/leverageBracket "
                                 "(coin quantities; --price)", _binance_coinm_parse, _binance_coinm_render,
                                 ("price",)),
    "bybit": VenueFormat("bybit", "bybit", "Bybit GET /v5/market/risk-limit", bybit.parse, bybit.render, ("price",)),
    "okx": VenueFormat("okx", "okx", "OKX GET /api/v5/public/position-tiers (contracts; --price, --ct-val)",
                       okx.parse, okx.render, ("price", "ct_val")),
    "hyperliquid": VenueFormat("hyperliquid", "hyperliquid", "Hyperliquid info 'meta' (universe + marginTables)",
                               hyperliquid.parse, hyperliquid.render),
    "dydx": VenueFormat("dydx", "dydx", "dYdX v4 liquidity_tiers + perpetuals (ppm, quote quantums)", dydx.parse,
                        dydx.render),
    "drift": VenueFormat("drift", "drift", "Drift perp markets: margin ratios (1e4) and imf_factor (1e6)",
                         drift.parse, drift.render, ("price",)),
    "deribit": VenueFormat("deribit", "deribit", "Deribit standard-margin futures (linear per-coin rule)",
                           deribit.parse, deribit.render, ("price",)),
}


def get_format(name: str) -> VenueFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown venue format {name!r}; choose one of {', '.join(FORMATS)}") from None


def import_table(source: str | Path | Any, fmt: str, *, fetched: str | None = None, source_note: str | None = None,
                 name: str | None = None, **options: Any) -> ParameterSet:
    """Read a venue file (path, JSON text or parsed object) into a ParameterSet with provenance.

    ``fetched``: the date the table was fetched (default: the file's modification
    date, UTC). ``options``: ``price`` / ``ct_val`` where the format needs them.
    """
    f = get_format(fmt)
    doc, display, sha = read_document(source, name)
    is_path = isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith(("{", "[")))
    if fetched is None and is_path and Path(str(source)).exists():
        import datetime as _dt

        fetched = _dt.datetime.fromtimestamp(Path(str(source)).stat().st_mtime, tz=_dt.UTC).date().isoformat()
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = set(opts) - set(f.options)
    if unknown:
        raise ConfigError(f"format {fmt} takes no option {', '.join(sorted(unknown))} "
                          f"(it takes {', '.join(f.options) or 'none'})")
    params = f.parse(doc, Ctx(display), **opts)
    prov = provenance(venue=f.venue, fmt_name=fmt, display=display, sha256=sha, fetched=fetched, source=source_note,
                      options=opts)
    return parameter_set(params, prov)


def export_table(pset: ParameterSet, fmt: str, *, instruments: list[str] | None = None, **options: Any) -> Any:
    """The parameter set as a venue document (a JSON-ready object)."""
    f = get_format(fmt)
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = set(opts) - set(f.options)
    if unknown:
        raise ConfigError(f"format {fmt} takes no option {', '.join(sorted(unknown))} "
                          f"(it takes {', '.join(f.options) or 'none'})")
    if instruments:
        for i in instruments:
            pset[i]  # ConfigError naming the instruments present
    return f.render(pset, instruments=instruments, **opts)


def export_text(pset: ParameterSet, fmt: str, **kw: Any) -> str:
    return json.dumps(export_table(pset, fmt, **kw), indent=2) + "\n"


__all__ = ["FORMATS", "VenueFormat", "binance", "bybit", "deribit", "drift", "dydx", "export_table", "export_text",
           "get_format", "hyperliquid", "import_table", "okx"]
