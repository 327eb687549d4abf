"""Liquidation cascades.

* :mod:`.core` (v1): one path, one linear perp per account, exact ranked ADL, a level-by-level
  reference implementation (:func:`simulate_cascade`, :func:`simulate_cascade_reference`).
* :mod:`.mark`: index from venue prices and mark = index + smoothed basis (venue conventions).
* :mod:`.market` (v2): many paths at once (numpy over paths x accounts), mark-price triggers,
  partial / laddered liquidation, liquidator capacity, endogenous depth and spread, market makers,
  arbitrageurs, stop-loss clusters, cross / isolated accounts with haircut collateral, inverse perp
  and funding (:func:`simulate_paths`).
* :mod:`.committee`: risk-committee outputs (bad debt, fund drawdown, ADL, liquidations-at-risk,
  insolvency VaR), replays with uncertainty bands and the margin / fund optimiser.
"""

from margincal.stress.cascade.core import (
    DEFAULT_LEVERAGE_MIX,
    CascadeResult,
    DepthProfile,
    Population,
    PopulationDraw,
    draw_population,
    population_for_policy,
    simulate_cascade,
    simulate_cascade_reference,
    walk_reference,
)
from margincal.stress.cascade.mark import MarkRule, bundled_index_and_perp, index_price
from margincal.stress.cascade.market import (
    Accounts,
    Agents,
    MarketConfig,
    OptionLeg,
    PathResults,
    accounts_from_model,
    build_accounts,
    simulate_paths,
)

__all__ = [
    "DEFAULT_LEVERAGE_MIX", "Accounts", "Agents", "CascadeResult", "DepthProfile", "MarkRule", "MarketConfig",
    "OptionLeg", "PathResults", "Population", "PopulationDraw", "accounts_from_model", "build_accounts",
    "bundled_index_and_perp", "draw_population",
    "index_price", "population_for_policy", "simulate_cascade", "simulate_cascade_reference", "simulate_paths",
    "walk_reference",
]
