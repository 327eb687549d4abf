"""Backtests of margin: rolling out-of-sample coverage, statistical tests, procyclicality.

Public API::

    from margincal.backtest import kupiec_pof, christoffersen, traffic_light
    from margincal.backtest import load_returns, run_backtest, backtest_figures

    data = load_returns(["BTC-USDT", "ETH-USDT"])            # store if it has bars, else bundled CSVs
    res = run_backtest(data, models=["fhs", "normal"], policies=["raw", "static"], levels=[0.99])
    res.summary(); res.rows(); res.crash_rows(); figs = backtest_figures(res)

See :mod:`margincal.backtest.engine` for the timing, loss and overlap conventions.
"""

from margincal.backtest.crash import STRESS_EVENTS, StressEvent, crash_positions
from margincal.backtest.data import InstrumentData, instrument_key, load_returns, timeframe_for_horizon
from margincal.backtest.engine import (
    BacktestResult,
    BacktestWarning,
    PathResult,
    PathStats,
    evaluate_path,
    horizon_log_returns,
    run_backtest,
    side_level,
    side_losses,
)
from margincal.backtest.figures import backtest_figures
from margincal.backtest.models import (
    DEFAULT_MODELS,
    FamilyPath,
    PathModel,
    PublishedPath,
    make_path_model,
)
from margincal.backtest.policies import (
    APC_CONFIGS,
    APCPolicy,
    Policy,
    PolicyContext,
    PresetPolicy,
    RawPolicy,
    StaticTunedPolicy,
    default_policies,
    make_policy,
)
from margincal.backtest.procyclicality import ProcyclicalityMetrics, procyclicality
from margincal.backtest.stats import (
    ChristoffersenResult,
    KupiecResult,
    LikelihoodRatio,
    TrafficLightResult,
    christoffersen,
    christoffersen_from_counts,
    kupiec_pof,
    traffic_light,
    transition_counts,
)

__all__ = [
    "APC_CONFIGS",
    "DEFAULT_MODELS",
    "FamilyPath",
    "STRESS_EVENTS",
    "APCPolicy",
    "BacktestResult",
    "BacktestWarning",
    "ChristoffersenResult",
    "InstrumentData",
    "KupiecResult",
    "LikelihoodRatio",
    "PathModel",
    "PathResult",
    "PathStats",
    "Policy",
    "PolicyContext",
    "PresetPolicy",
    "ProcyclicalityMetrics",
    "PublishedPath",
    "RawPolicy",
    "StaticTunedPolicy",
    "StressEvent",
    "TrafficLightResult",
    "backtest_figures",
    "christoffersen",
    "christoffersen_from_counts",
    "crash_positions",
    "default_policies",
    "evaluate_path",
    "horizon_log_returns",
    "instrument_key",
    "kupiec_pof",
    "load_returns",
    "make_path_model",
    "make_policy",
    "procyclicality",
    "run_backtest",
    "side_level",
    "side_losses",
    "timeframe_for_horizon",
    "traffic_light",
    "transition_counts",
]
