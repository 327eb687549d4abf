"""Use cases the CLI, the HTTP service and the HTML report share.

One function per question a user asks of a store, so the three shells give the
same answer: :func:`margin_history` (price, volatility and IM/MM over time of an
instrument, with the settings of the published set), :func:`portfolio_scenarios`
(the scenario P&L matrix and market of a book, for either portfolio method),
:func:`standalone_margin` (published rates x notional, no offsets) and its what-if
:func:`standalone_what_if`. The store's catalogue, proposals, signal feed and stored results
(:mod:`~margincal.usecases.catalog`, :mod:`~margincal.usecases.proposals`,
:mod:`~margincal.usecases.events`, :mod:`~margincal.usecases.results`) are the queries behind the
service's routes; the service adds only its caches and the JSON shaping.
:mod:`margincal.usecases.calibration` (imported on use: it loads the model stack) calibrates and submits
the result through the proposal/decision path (:func:`~margincal.usecases.calibration.calibrate_and_submit`).

This layer sits above the model packages (margin, stress, backtest, adjust) and
below the shells (cli, service) and the report; see docs/architecture.md.
"""

from margincal.usecases import catalog, events, proposals, results
from margincal.usecases.history import MarginHistory, margin_history, margin_history_path, settings_of
from margincal.usecases.portfolio import (
    PORTFOLIO_METHODS,
    aggregate_positions,
    history_closes,
    portfolio_scenarios,
    standalone_margin,
    standalone_what_if,
    store_prices,
)

__all__ = ["PORTFOLIO_METHODS", "MarginHistory", "aggregate_positions", "catalog", "events", "history_closes",
           "margin_history", "margin_history_path", "portfolio_scenarios", "proposals", "results", "settings_of",
           "standalone_margin", "standalone_what_if", "store_prices"]
