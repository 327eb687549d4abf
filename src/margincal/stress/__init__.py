"""margincal.stress: scenario library, book-level, reverse and Monte Carlo stress, liquidation cascades.

See docs/stress_testing.md. Main entry points:

* scenarios: :mod:`margincal.stress.scenarios` (dataclasses), :mod:`margincal.stress.library`
  (historical windows from the bundled data + hypothetical shocks);
* books: :class:`Book`, :func:`synthetic_book`, :func:`load_book`, :func:`market_from_samples`;
* book stress: :func:`stress_book` -> :class:`BookStressResult` (Cover-1 / Cover-2);
* reverse stress: :func:`reverse_stress_spot`, :func:`reverse_stress_spot_vol`;
* cascades: :func:`simulate_cascade` and the policy comparison :func:`compare_policies`,
  :func:`bad_debt_exceedance`; cascade v2 (mark price, partial liquidation, endogenous liquidity,
  agents, many paths): :func:`simulate_paths` and :mod:`margincal.stress.cascade.committee`;
  figures: :func:`stress_figures`.
"""

from margincal.stress.book import (
    Book,
    StressInstrument,
    StressMarket,
    book_from_frame,
    load_book,
    market_from_samples,
    synthetic_book,
)
from margincal.stress.cascade import (
    Accounts,
    Agents,
    CascadeResult,
    DepthProfile,
    MarketConfig,
    MarkRule,
    Population,
    draw_population,
    index_price,
    population_for_policy,
    simulate_cascade,
    simulate_cascade_reference,
    simulate_paths,
)
from margincal.stress.engine import (
    BookStressResult,
    account_losses,
    account_margin,
    scenario_losses,
    scenario_losses_reference,
    stress_book,
)
from margincal.stress.figures import book_stress_figures, cascade_figures, stress_figures
from margincal.stress.library import get_scenarios, historical_scenarios, scenario_library
from margincal.stress.policies import (
    CascadeSetup,
    MonteCarloSetup,
    PolicyComparison,
    bad_debt_exceedance,
    compare_policies,
    monte_carlo,
    replay,
)
from margincal.stress.reverse import ReverseStressResult, reverse_stress_spot, reverse_stress_spot_vol
from margincal.stress.scenarios import (
    CompositeScenario,
    CorrelationShock,
    FundingSpike,
    HistoricalScenario,
    LiquidityCost,
    LiquidityShock,
    Scenario,
    ShockLeg,
    SpotShock,
    VolShock,
    hypothetical_scenarios,
)

__all__ = [
    "Accounts", "Agents", "MarkRule", "MarketConfig", "index_price", "simulate_paths",
    "Book", "BookStressResult", "CascadeResult", "CascadeSetup", "CompositeScenario", "CorrelationShock",
    "DepthProfile", "FundingSpike", "HistoricalScenario", "LiquidityCost", "LiquidityShock", "MonteCarloSetup",
    "PolicyComparison", "Population", "ReverseStressResult", "Scenario", "ShockLeg", "SpotShock",
    "StressInstrument", "StressMarket", "VolShock", "account_losses", "account_margin", "bad_debt_exceedance", "book_from_frame",
    "book_stress_figures", "cascade_figures", "compare_policies", "draw_population", "get_scenarios",
    "historical_scenarios", "hypothetical_scenarios", "load_book", "market_from_samples", "monte_carlo",
    "population_for_policy", "replay", "reverse_stress_spot", "reverse_stress_spot_vol", "scenario_library",
    "scenario_losses", "scenario_losses_reference", "simulate_cascade", "simulate_cascade_reference",
    "stress_book", "stress_figures", "synthetic_book",
]
