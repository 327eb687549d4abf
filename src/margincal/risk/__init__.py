"""margincal.risk: VaR/ES measures, tail models, Monte Carlo, rare-event sampling; one model family with fit and causal fit_path.

See docs/risk_models.md. The model registry used by the CLI is
:data:`margincal.risk.models.MODELS` (``hs, fhs, normal, t, cf, evt, mc``).
"""

from margincal.risk.measures import expected_shortfall, value_at_risk, var_es
from margincal.risk.models import MODELS, TailForecast, TailModel, horizon_hours, make_model, tail_model
from margincal.units import RISKMETRICS, Decay

__all__ = [
    "MODELS",
    "RISKMETRICS",
    "Decay",
    "tail_model",
    "TailForecast",
    "TailModel",
    "expected_shortfall",
    "horizon_hours",
    "make_model",
    "value_at_risk",
    "var_es",
]
