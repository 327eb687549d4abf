"""Portfolio margin: risk-matrix (Deribit / Derive style) and historical (FHS ES) methods.

Quick start::

    from margincal.margin.portfolio import (MarketState, parse_instrument, deribit_like,
                                            scenario_pnl_matrix, portfolio_margin)
    specs = [parse_instrument(n) for n in ("BTC-PERP", "BTC-28JUN24-70000-C")]
    market = MarketState(spot={"BTC": 68800.0}, valuation_time="2024-05-24T13:00Z", flat_vol=0.55)
    pnl = scenario_pnl_matrix(specs, market, deribit_like())      # instruments x scenarios, once
    res = portfolio_margin(positions_csr, pnl)                     # accounts x instruments -> IM, MM, driver

See docs/portfolio_margin.md for the formulas, the presets' sources and benchmarks.
"""

from margincal.margin.portfolio.book import Book, BookWarning, book_from_frame, read_book
from margincal.margin.portfolio.engine import (
    PortfolioMarginResult,
    RiskMatrixMargin,
    as_positions,
    expected_shortfall_rows,
    iter_blocks,
    portfolio_margin,
    portfolio_margin_blocks,
    portfolio_margin_reference,
)
from margincal.margin.portfolio.historical import GapWarning, HistoricalPortfolioMargin, load_daily_closes
from margincal.margin.portfolio.instruments import InstrumentSpec, MarketState, parse_instrument
from margincal.margin.portfolio.market import build_market
from margincal.margin.portfolio.scenarios import (
    PRESETS,
    RiskMatrixConfig,
    ScenarioPnL,
    dampened_weights,
    deribit_like,
    derive_like,
    revalue,
    scenario_pnl_matrix,
)
from margincal.margin.portfolio.standard import (
    DeribitStandard,
    DeriveSRM,
    StandardMarginResult,
    compare_margin_modes,
    standard_margin,
)
from margincal.margin.portfolio.whatif import Portfolio, WhatIfResult, account_view, what_if

__all__ = [
    "PRESETS",
    "Book",
    "DeribitStandard",
    "DeriveSRM",
    "StandardMarginResult",
    "compare_margin_modes",
    "standard_margin",
    "BookWarning",
    "GapWarning",
    "HistoricalPortfolioMargin",
    "InstrumentSpec",
    "MarketState",
    "Portfolio",
    "PortfolioMarginResult",
    "RiskMatrixConfig",
    "RiskMatrixMargin",
    "ScenarioPnL",
    "WhatIfResult",
    "account_view",
    "as_positions",
    "book_from_frame",
    "build_market",
    "dampened_weights",
    "deribit_like",
    "derive_like",
    "expected_shortfall_rows",
    "iter_blocks",
    "load_daily_closes",
    "parse_instrument",
    "portfolio_margin",
    "portfolio_margin_blocks",
    "portfolio_margin_reference",
    "read_book",
    "revalue",
    "scenario_pnl_matrix",
    "what_if",
]
