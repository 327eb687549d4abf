"""margincal.vol: volatility estimators and forecasters.

Modules
-------
``realized``  realized variance on OHLC bars (close-to-close, Parkinson, Garman-Klass,
              Rogers-Satchell, Yang-Zhang; per bar and rolling) and daily RV from hourly bars
``ewma``      EWMA (RiskMetrics) volatility
``garch``     GARCH(1,1), GJR-GARCH, EGARCH with normal / t / skew-t innovations (through arch)
``har``       HAR-RV (Corsi 2009)
``ml``        gradient-boosted forecaster of next-day realized variance
``compare``   walk-forward comparison with QLIKE / MSE and Diebold-Mariano tests
``surface``   implied vol surfaces: raw SVI, SSVI, arbitrage checks, Deribit loaders
``horizon``   the horizon convention

Horizon convention
------------------
Every forecaster has ``forecast_variance(horizon_bars)``: the horizon counts
BARS OF THE DATA THE MODEL WAS FITTED ON, and the result is the variance of the
sum of the next ``horizon_bars`` log returns (sum of per-bar forecasts), in the
data's units. Convert a horizon in hours with
``horizon_to_bars(horizon_hours, bar_hours)``, e.g. 24 h on hourly data is 24
bars, on daily data 1 bar. See :mod:`margincal.vol.horizon`.
"""

from margincal.vol.horizon import horizon_to_bars, infer_bar_hours

__all__ = ["horizon_to_bars", "infer_bar_hours"]
