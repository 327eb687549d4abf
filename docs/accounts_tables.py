"""Figures for docs/accounts.md and docs/portfolio_margin.md (accounts, settlement currencies, offsets).

Usage::

    python docs/accounts_tables.py

Prints markdown tables: (1) coin-measured vs USD-measured risk-matrix IM of
inverse contracts (Deribit S:PM per settlement currency); (2) the effect of
Deribit's published pme/simulate parameters against the earlier assumed ones
on long-dated short options; (3) historical PM of 1 BTC vs -33 ETH with the
stressed-correlation credit against full and no offset; (4) standard vs
portfolio margin of a few accounts; (5) liquidation prices of a sample account.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from margincal.margin.account import Account, AccountPosition
from margincal.margin.portfolio import (
    HistoricalPortfolioMargin,
    InstrumentSpec,
    MarketState,
    compare_margin_modes,
    deribit_like,
    load_daily_closes,
    parse_instrument,
    portfolio_margin,
    scenario_pnl_matrix,
)

MKT = MarketState(spot={"BTC": 68800.0, "ETH": 3725.0}, valuation_time="2024-05-24T13:00Z", flat_vol=0.6)


def _im(names_qty: dict, specs: list, cfg) -> float:
    pnl = scenario_pnl_matrix(specs, MKT, cfg)
    return float(portfolio_margin(names_qty, pnl, include_contingency=False).im[0])


def settlement_table() -> str:
    cfg = deribit_like()
    cross = dataclasses.replace(cfg, settlement_mode="cross")
    rows = ["| position (contingencies off) | USD measure (cross) | coin measure x F0 (segregated) | ratio |",
            "|---|---|---|---|"]
    cases = [
        ("short 1 inverse BTC-28JUN24-60000-P", {"BTC-28JUN24-60000-P": -1.0},
         [parse_instrument("BTC-28JUN24-60000-P", inverse=True)]),
        ("long 10,000 USD inverse perp", {"BTC-PERPETUAL": 1000.0},
         [InstrumentSpec("BTC-PERPETUAL", "perpetual", "BTC", inverse=True, contract_size=10.0)]),
        ("short 10,000 USD inverse perp", {"BTC-PERPETUAL": -1000.0},
         [InstrumentSpec("BTC-PERPETUAL", "perpetual", "BTC", inverse=True, contract_size=10.0)]),
    ]
    for label, pos, specs in cases:
        a, b = _im(pos, specs, cross), _im(pos, specs, cfg)
        rows.append(f"| {label} | {a:,.0f} | {b:,.0f} | {b / a:.3f} |")
    return "\n".join(rows)


def parameters_table() -> str:
    new = dataclasses.replace(deribit_like(), delta_shock_max=0.0)
    old = dataclasses.replace(new, vol_up=0.45, vol_down=0.30, vol_power_long=0.30, min_vol_shock_up=0.0)
    rows = ["| position (linear, flat vol 60%) | IM, earlier assumed | IM, Deribit pme/simulate | change |",
            "|---|---|---|---|"]
    for name in ("BTC-27DEC24-60000-P", "BTC-27DEC24-90000-C"):
        specs = [parse_instrument(name)]
        a = _im({name: -5.0}, specs, old)
        b = _im({name: -5.0}, specs, new)
        rows.append(f"| short 5 {name} | {a:,.0f} | {b:,.0f} | {b / a - 1:+.1%} |")
    return "\n".join(rows)


def offsets_table() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        closes = load_daily_closes(["BTC", "ETH"])
        rows = ["| offset rule | credit | IM 1 BTC / -33 ETH | sum of legs | saving |", "|---|---|---|---|---|"]
        for off in ("stressed", 1.0, 0.0):
            m = HistoricalPortfolioMargin(offset=off).fit(closes)
            pnl = m.scenario_pnl([parse_instrument("BTC-PERP"), parse_instrument("ETH-PERP")])
            r = portfolio_margin(np.array([[1.0, -33.0], [1.0, 0.0], [0.0, -33.0]]), pnl)
            legs = r.im[1] + r.im[2]
            extra = f" (stressed rho {pnl.params['rho_min']:.3f})" if off == "stressed" else ""
            rows.append(f"| {off}{extra} | {pnl.offset:.3f} | {r.im[0]:,.0f} | {legs:,.0f} | "
                        f"{1 - r.im[0] / legs:.1%} |")
    return "\n".join(rows)


def standard_table() -> str:
    rows = ["| account | venue | standard IM | portfolio IM | driving scenario |", "|---|---|---|---|---|"]
    accounts = {
        "short 1 BTC-28JUN24-70000-C": {"BTC-28JUN24-70000-C": -1.0},
        "short call + 0.5 perp hedge": {"BTC-28JUN24-70000-C": -1.0, "BTC-PERP": 0.5},
        "short 60k put + long 55k put": {"BTC-28JUN24-60000-P": -1.0, "BTC-28JUN24-55000-P": 1.0},
    }
    for label, pos in accounts.items():
        for venue in ("deribit", "derive"):
            c = compare_margin_modes(pos, MKT, venue=venue)
            rows.append(f"| {label} | {venue} | {c['standard_im']:,.0f} | {c['portfolio_im']:,.0f} | "
                        f"{c['driving_scenario']} |")
    return "\n".join(rows)


def liquidation_table() -> str:
    acc = Account((
        AccountPosition("BTCUSDT", "BTC", 1.0, 60_000.0, mmr=0.004),
        AccountPosition("ETHUSDT", "ETH", -10.0, 3_000.0, mmr=0.005),
        AccountPosition("BTCUSD_PERP", "BTC", -300.0, 60_000.0, inverse=True, contract_size=100.0, settlement="BTC",
                        mode="isolated", isolated_margin=0.1, mmr=0.004),
    ), {"USDT": 8_000.0, "BTC": 0.05, "USDE": 2_000.0}, haircuts={"BTC": 0.1, "USDE": 0.35})
    v = acc.view({"BTC": 60_000.0, "ETH": 3_000.0, "USDE": 1.0})
    rows = ["| quantity | value |", "|---|---|"]
    for k in ("equity", "collateral_value", "collateral_after_haircuts", "maintenance_margin", "margin_ratio"):
        rows.append(f"| {k} | {getattr(v, k):,.4f} |" if k == "margin_ratio" else f"| {k} | {getattr(v, k):,.2f} |")
    for k, x in v.liquidation_prices.items():
        rows.append(f"| liquidation price {k} | {x:,.2f} |")
    return "\n".join(rows)


def main() -> None:
    for title, fn in (("Settlement currency", settlement_table), ("Deribit parameters", parameters_table),
                      ("Cross-underlying offsets", offsets_table), ("Standard vs portfolio", standard_table),
                      ("Account view", liquidation_table)):
        print(f"### {title}\n\n{fn()}\n")


if __name__ == "__main__":
    main()
