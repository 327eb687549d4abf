"""margincal.margin: per-instrument calibration, liquidity add-on, size tiers, OI scaling,
new listings, anti-procyclicality, exchange presets and published parameter sets."""

from margincal.margin import presets, venues
from margincal.margin.apc import (
    AntiProcyclicality,
    APCConfig,
    APCState,
    apply_apc,
    apply_apc_reference,
    lookback_floor,
    step,
    stressed_period_margin,
)
from margincal.margin.calibration import (
    Calibration,
    MarginCalibrator,
    MarginWarning,
    calibrate_instrument,
    calibrate_universe,
    calibration_from_forecast,
)
from margincal.margin.liquidity import (
    SQRT_IMPACT_Y,
    DepthBook,
    LiquidityModel,
    book_walk_cost,
    load_depth,
    sqrt_impact_cost,
)
from margincal.margin.new_listing import (
    NewListingMargin,
    ProxyCalibrator,
    new_listing_margin,
    validate_new_listings,
)
from margincal.margin.params import (
    InstrumentParams,
    ParameterSet,
    diff,
    history,
    latest_version,
    load,
    publish,
)
from margincal.margin.presets import MarginRates, Preset
from margincal.margin.rounding import ceil_to_increment
from margincal.margin.size_rules import (
    linear_size_rate,
    oi_caps_from_liquidity,
    oi_scaled_imf,
    oi_scaled_mmf,
    sqrt_size_imf,
)
from margincal.margin.tiers import Tier, TierSchedule, cumulative_amounts

# from margincal.margin.portfolio import ...   (portfolio / risk-matrix margin exports go here)

__all__ = [
    "SQRT_IMPACT_Y",
    "APCConfig",
    "APCState",
    "AntiProcyclicality",
    "Calibration",
    "DepthBook",
    "InstrumentParams",
    "LiquidityModel",
    "MarginCalibrator",
    "MarginRates",
    "MarginWarning",
    "NewListingMargin",
    "ParameterSet",
    "Preset",
    "ProxyCalibrator",
    "Tier",
    "TierSchedule",
    "apply_apc",
    "apply_apc_reference",
    "book_walk_cost",
    "calibrate_instrument",
    "calibrate_universe",
    "calibration_from_forecast",
    "ceil_to_increment",
    "cumulative_amounts",
    "diff",
    "history",
    "latest_version",
    "linear_size_rate",
    "load",
    "load_depth",
    "lookback_floor",
    "new_listing_margin",
    "oi_caps_from_liquidity",
    "oi_scaled_imf",
    "oi_scaled_mmf",
    "presets",
    "venues",
    "publish",
    "sqrt_impact_cost",
    "sqrt_size_imf",
    "step",
    "stressed_period_margin",
    "validate_new_listings",
]
