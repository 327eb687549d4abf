"""Portfolio margin of a book: the inputs every shell builds the same way.

``margincal portfolio FILE``, ``margincal portfolio --book DIR`` and the service's
``/portfolio`` all need the scenario P&L matrix of the book's instruments and the
market it was valued on; :func:`portfolio_scenarios` builds both for either
method. :func:`standalone_margin` is the published-rates alternative (no offsets).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from margincal.data.store import load_bars
from margincal.errors import ConfigError, MargincalWarning
from margincal.instruments import spot_name
from margincal.margin import params as mparams
from margincal.margin.portfolio import (
    PRESETS,
    HistoricalPortfolioMargin,
    InstrumentSpec,
    MarketState,
    RiskMatrixMargin,
    ScenarioPnL,
    build_market,
    load_daily_closes,
)

PORTFOLIO_METHODS = ("risk-matrix", "historical")


def history_closes(con: Any, underlyings: Sequence[str]) -> pd.DataFrame:
    """Daily closes per underlying: the store's ``<U>-USDT`` 1d bars when all are there, else the bundled data."""
    if con is not None:
        cols = {}
        for u in underlyings:
            bars = load_bars(con, spot_name(u), "1d")
            if bars.empty:
                break
            cols[u] = bars["close"]
        if len(cols) == len(underlyings):
            return pd.DataFrame(cols).dropna()
    return load_daily_closes(list(underlyings))


def portfolio_scenarios(
    specs: Sequence[InstrumentSpec],
    *,
    con: Any = None,
    method: str = "risk-matrix",
    preset: str = "deribit",
    level: float = 0.99,
    horizon_hours: float = 24.0,
    offset: float | str = 1.0,
    spot: Mapping[str, float] | None = None,
    flat_vol: float | None = None,
    asof: Any = None,
    market: MarketState | None = None,
    on_note: Callable[[str], None] | None = None,
) -> tuple[ScenarioPnL, MarketState, dict[str, Any]]:
    """(scenario P&L matrix, market, market provenance) of ``specs`` for a portfolio-margin method.

    ``risk-matrix``: the ``preset`` (deribit, derive) spot x vol grid with full revaluation.
    ``historical``: filtered-historical ES scenarios fitted on daily closes
    (:func:`history_closes`), valued at the end of that history unless ``asof`` says otherwise;
    gap warnings go to ``on_note``. ``market``: value on this state instead of building one.
    """
    if method not in PORTFOLIO_METHODS:
        raise ConfigError(f"method {method!r} is not one of {', '.join(PORTFOLIO_METHODS)}")
    if preset not in PRESETS:
        raise ConfigError(f"preset {preset!r} is not one of {', '.join(sorted(PRESETS))}")
    default_spot = None
    if method == "risk-matrix":
        engine: RiskMatrixMargin | HistoricalPortfolioMargin = RiskMatrixMargin(config=PRESETS[preset]())
    else:
        engine = HistoricalPortfolioMargin(level=level, horizon_hours=horizon_hours, offset=offset)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MargincalWarning)
            engine.fit(history_closes(con, sorted({s.underlying for s in specs})))
        for w in caught:
            if on_note is not None:
                on_note(str(w.message))
        if asof is None:  # value at the end of the history the scenarios come from
            asof = engine.last_prices_.name.isoformat()
        default_spot = dict(engine.last_prices_)
    prov: dict[str, Any] = {}
    if market is None:
        market, prov = build_market(specs, con=con, spot=dict(spot or {}), flat_vol=flat_vol, asof=asof,
                                    default_spot=default_spot)
    return engine.scenario_pnl(list(specs), market), market, prov


def store_prices(con: Any, names: Sequence[str]) -> dict[str, float]:
    """Latest stored close of each instrument that has bars (any timeframe)."""
    if not names:
        return {}
    rows = con.execute(
        "SELECT instrument, arg_max(close, ts) FROM bars WHERE instrument IN (SELECT unnest(?)) "
        "GROUP BY instrument", [list(names)]).fetchall()
    return {r[0]: float(r[1]) for r in rows}


def aggregate_positions(positions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``[{"instrument", "quantity"}, ...]`` -> net quantity per instrument."""
    out: dict[str, float] = {}
    for p in positions:
        out[p["instrument"]] = out.get(p["instrument"], 0.0) + float(p["quantity"])
    return out


def standalone_margin(pset: mparams.ParameterSet, positions: Sequence[Mapping[str, Any]],
                      prices: Mapping[str, float]) -> dict[str, Any]:
    """Sum of stand-alone margins (published IM/MM rate x |notional|, no offsets), per position too."""
    rows = []
    im = mm = 0.0
    worst: tuple[float, str] | None = None
    for pos in positions:
        inst = pos["instrument"]
        p = pset[inst]
        price = pos.get("price") or prices.get(inst) or p.details.get("last_price")
        if not price:
            raise ConfigError(f"no price for {inst}: pass 'price' in the position")
        notional = abs(float(pos["quantity"])) * float(price)
        pim, pmm = notional * p.im_rate, notional * p.mm_rate
        im += pim
        mm += pmm
        rows.append({"instrument": inst, "quantity": pos["quantity"], "price": price, "notional": notional,
                     "im": pim, "mm": pmm, "im_rate": p.im_rate, "mm_rate": p.mm_rate})
        if worst is None or pim > worst[0]:
            worst = (pim, inst)
    scenario = None
    if worst is not None:
        scenario = f"{worst[1]}: adverse move of its IM rate (largest stand-alone margin; no offsets)"
    return {"im": im, "mm": mm, "positions": rows, "driving_scenario": scenario,
            "method": "standalone_sum", "version": pset.version}


def standalone_what_if(pset: mparams.ParameterSet, positions: Sequence[Mapping[str, Any]],
                       order: Mapping[str, Any], prices: Mapping[str, float]) -> dict[str, Any]:
    """:func:`standalone_margin` before and after adding ``order`` (``instrument``, ``signed_quantity``,
    optional ``price``) to the positions (netted per instrument), and the marginal IM/MM."""
    before = standalone_margin(pset, positions, prices)
    merged: dict[str, dict[str, Any]] = {}
    for p in positions:
        cur = merged.setdefault(p["instrument"], {"instrument": p["instrument"], "quantity": 0.0,
                                                  "price": p.get("price")})
        cur["quantity"] += float(p["quantity"])
    cur = merged.setdefault(order["instrument"], {"instrument": order["instrument"], "quantity": 0.0,
                                                  "price": order.get("price")})
    cur["quantity"] += float(order["signed_quantity"])
    after = standalone_margin(pset, [p for p in merged.values() if p["quantity"] != 0.0], prices)
    return {
        "before": {"im": before["im"], "mm": before["mm"]}, "after": {"im": after["im"], "mm": after["mm"]},
        "marginal_im": after["im"] - before["im"], "marginal_mm": after["mm"] - before["mm"],
        "driving_scenario": after["driving_scenario"], "driving_scenario_before": before["driving_scenario"],
        "order": dict(order), "method": "standalone_sum", "version": pset.version,
    }


__all__ = ["PORTFOLIO_METHODS", "aggregate_positions", "history_closes", "portfolio_scenarios",
           "standalone_margin", "standalone_what_if", "store_prices"]
