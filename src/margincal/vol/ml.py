"""Machine-learning forecaster of next-day realized variance.

A scikit-learn :class:`~sklearn.ensemble.HistGradientBoostingRegressor` on the
log of daily realized variance. Features of day ``t`` use data up to the END of
day ``t`` (UTC) only; the target of row ``t`` is ``RV_{t+1}``.

Pipeline::

    hourly bars (+ open interest, funding)  --daily_panel-->  one row per UTC day
    daily panel  --build_features-->  feature matrix X_t
    X_t, RV_{t+1}  --MLVarianceForecaster.fit-->  model
    model.predict_variance(X_t)  = forecast of RV_{t+1}

Features (NaN where the input is absent; the boosting model handles NaN
natively, so BTC rows before open interest starts, or ETH with no open
interest at all, are used as they are):

========================  ==========================================================
``log_rv_1/5/22``         log of the mean RV over the last 1, 5, 22 days (HAR terms)
``log_parkinson``         log Parkinson variance of day t's high/low
``log_garman_klass``      log Garman-Klass variance of day t
``ret_1``, ``ret_5``      log return of day t, of the last 5 days (leverage effect)
``dlog_volume``           log(volume_t / volume_{t-1})
``log_volume_rel``        log(volume_t / mean volume of the last 22 days)
``dlog_oi``, ``dlog_oi_5`` log change of open interest over 1 and 5 days
``funding``               mean funding rate of the settlements inside day t
``abs_funding``           its absolute value
========================  ==========================================================

Objectives: ``"log"`` (default) fits squared error on ``log RV`` and maps back
with Duan's smearing factor ``mean(exp(residual))`` estimated on a time-ordered
hold-out (the last ``holdout`` fraction of the training rows, model refitted on
all rows afterwards), because in-sample residuals of a boosted model are too
small; ``"gamma"`` fits the mean of RV directly with a log link (the gamma
deviance is the QLIKE loss up to a constant).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from margincal.errors import ConfigError, DataError, check_choice, check_fitted, check_int, check_number
from margincal.vol.realized import (
    garman_klass_variance,
    intraday_to_ohlc,
    parkinson_variance,
    realized_variance_from_intraday,
)

_EPS = 1e-12
MIN_TRAIN = 200


# --------------------------------------------------------------------------- data
def _utc_days(index: pd.Index, what: str) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return idx.floor("1D")


def daily_panel(
    hourly_bars: pd.DataFrame,
    *,
    open_interest: pd.Series | None = None,
    funding: pd.Series | None = None,
    min_returns: int = 20,
) -> pd.DataFrame:
    """One row per UTC day built from hourly bars (indexed by open time).

    Columns: ``rv`` (sum of squared hourly log returns), ``n_returns``,
    ``open, high, low, close, volume`` (daily aggregates), ``ret`` (daily log
    close-to-close return), ``parkinson``, ``garman_klass``; plus
    ``open_interest`` (value dated day ``t``, assumed known at the end of day
    ``t``) and ``funding`` (mean of the settlement rates stamped inside day ``t``)
    when given. Partial days at the two ends of the data (fewer than
    ``min_returns`` returns) are dropped; days inside the sample are all kept so
    the series stays consecutive (a day with an exchange outage keeps the
    returns it has, the gap return included).
    """
    rvc = realized_variance_from_intraday(hourly_bars, "1D", return_counts=True)
    ohlc = intraday_to_ohlc(hourly_bars, "1D")
    panel = ohlc.join(rvc, how="inner")
    full = np.flatnonzero(panel["n_returns"].to_numpy() >= min_returns)
    if full.size == 0:
        raise DataError(f"hourly_bars has no day with at least {min_returns} returns")
    panel = panel.iloc[full[0] : full[-1] + 1].copy()
    days = pd.date_range(panel.index[0], panel.index[-1], freq="1D")
    if len(days) != len(panel):
        missing = days.difference(panel.index)
        raise DataError(f"hourly_bars has no bar at all on {len(missing)} day(s), first {missing[0].date()}; days must be consecutive")
    panel["ret"] = np.log(panel["close"]).diff()
    panel["parkinson"] = parkinson_variance(panel).to_numpy()
    panel["garman_klass"] = garman_klass_variance(panel).to_numpy()
    if open_interest is not None:
        oi = pd.Series(np.asarray(open_interest, dtype=float), index=_utc_days(open_interest.index, "open_interest"))
        oi = oi[~oi.index.duplicated(keep="last")]
        panel["open_interest"] = oi.reindex(panel.index).to_numpy()
    if funding is not None:
        f = pd.Series(np.asarray(funding, dtype=float), index=_utc_days(funding.index, "funding"))
        panel["funding"] = f.groupby(level=0).mean().reindex(panel.index).to_numpy()
    panel.index.name = "day"
    return panel


def _rmean(x: pd.Series, n: int) -> pd.Series:
    return x.rolling(n, min_periods=n).mean()


def build_features(panel: pd.DataFrame) -> pd.DataFrame:
    """Feature matrix of a daily panel (see the module docstring); row ``t`` uses days ``<= t`` only."""
    for c in ("rv", "parkinson", "garman_klass", "ret"):
        if c not in panel.columns:
            raise DataError(f"panel has no '{c}' column; build it with daily_panel()")
    rv = panel["rv"].astype(float)
    X = pd.DataFrame(index=panel.index)
    for n in (1, 5, 22):
        X[f"log_rv_{n}"] = np.log(_rmean(rv, n) + _EPS)
    X["log_parkinson"] = np.log(panel["parkinson"].astype(float) + _EPS)
    X["log_garman_klass"] = np.log(panel["garman_klass"].astype(float).clip(lower=0.0) + _EPS)
    X["ret_1"] = panel["ret"]
    X["ret_5"] = panel["ret"].rolling(5, min_periods=5).sum()
    if "volume" in panel.columns:
        lv = np.log(panel["volume"].astype(float).where(panel["volume"] > 0))
        X["dlog_volume"] = lv.diff()
        X["log_volume_rel"] = lv - np.log(_rmean(panel["volume"].astype(float), 22))
    if "open_interest" in panel.columns:
        loi = np.log(panel["open_interest"].astype(float).where(panel["open_interest"] > 0))
        X["dlog_oi"] = loi.diff()
        X["dlog_oi_5"] = loi.diff(5)
    if "funding" in panel.columns:
        X["funding"] = panel["funding"].astype(float)
        X["abs_funding"] = panel["funding"].astype(float).abs()
    return X


def next_day_target(panel: pd.DataFrame) -> pd.Series:
    """Target of row ``t``: ``RV_{t+1}`` (NaN on the last day)."""
    return panel["rv"].shift(-1).rename("rv_next")


# --------------------------------------------------------------------------- model
class MLVarianceForecaster:
    """Gradient-boosted forecaster of next-day realized variance (sklearn style).

    Parameters
    ----------
    objective : ``"log"`` (squared error on log RV + smearing) or ``"gamma"`` (log-link gamma deviance on RV).
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization :
        passed to :class:`~sklearn.ensemble.HistGradientBoostingRegressor`.
    holdout : fraction of the latest training rows used to estimate the smearing factor (``"log"`` only).
    random_state : seed of the boosting model.
    n_threads : OpenMP threads for fit/predict (default 1: many small fits in a
        walk-forward run faster single-threaded than oversubscribed; ``None`` = all cores).

    Attributes after :meth:`fit`: ``model_``, ``feature_names_``, ``smearing_``,
    ``last_features_`` (the last feature row passed, used by ``forecast_variance``),
    ``n_obs_``.
    """

    def __init__(
        self,
        *,
        objective: Literal["log", "gamma"] = "log",
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        holdout: float = 0.2,
        random_state: int = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.objective = objective
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.holdout = holdout
        self.random_state = random_state
        self.n_threads = n_threads

    def _new_model(self) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            loss="gamma" if self.objective == "gamma" else "squared_error",
            max_iter=int(self.max_iter),
            learning_rate=float(self.learning_rate),
            max_leaf_nodes=int(self.max_leaf_nodes),
            min_samples_leaf=int(self.min_samples_leaf),
            l2_regularization=float(self.l2_regularization),
            early_stopping=False,
            random_state=self.random_state,
        )

    def fit(self, features: pd.DataFrame, target: ArrayLike) -> MLVarianceForecaster:
        """Fit on rows whose target (next-day RV) is finite and > 0; rows are in time order.

        ``target`` is aligned with ``features`` (use :func:`next_day_target`).
        The last feature row is kept for :meth:`forecast_variance`.
        """
        check_choice("objective", self.objective, ("log", "gamma"))
        check_number("holdout", self.holdout, low=0.0, high=0.5)
        check_int("max_iter", self.max_iter, 1)
        check_number("learning_rate", self.learning_rate, low=0.0)
        check_int("max_leaf_nodes", self.max_leaf_nodes, 2, allow_none=True)
        check_int("min_samples_leaf", self.min_samples_leaf, 1)
        check_number("l2_regularization", self.l2_regularization, low=0.0, low_open=False)
        check_int("n_threads", self.n_threads, 1, allow_none=True)
        if not isinstance(features, pd.DataFrame):
            raise DataError(f"features is a {type(features).__name__}; a DataFrame from build_features() is needed")
        y = np.asarray(target, dtype=float).ravel()
        if y.size != len(features):
            raise DataError(f"target has {y.size} rows but features has {len(features)}; they must be aligned")
        X = features.to_numpy(dtype=float)
        ok = np.isfinite(y) & (y > 0)
        if ok.sum() < MIN_TRAIN:
            raise DataError(f"only {int(ok.sum())} rows have a positive finite target; need at least {MIN_TRAIN}")
        Xt, yt = X[ok], y[ok]
        z = np.log(yt) if self.objective == "log" else yt
        self.smearing_ = 1.0
        with threadpool_limits(limits=self.n_threads):
            if self.objective == "log":
                n_hold = max(20, int(round(self.holdout * yt.size)))
                m = self._new_model().fit(Xt[:-n_hold], z[:-n_hold])
                resid = z[-n_hold:] - m.predict(Xt[-n_hold:])
                self.smearing_ = float(np.mean(np.exp(resid)))
            self.model_ = self._new_model().fit(Xt, z)
        self.feature_names_ = list(features.columns)
        self.last_features_ = features.iloc[[-1]].copy()
        self.n_obs_ = int(yt.size)
        return self

    def predict_variance(self, features: pd.DataFrame) -> np.ndarray:
        """Forecast of next-day RV for each feature row."""
        check_fitted(self, "model_", "fit(features, target)")
        if list(features.columns) != self.feature_names_:
            raise DataError(f"features columns {list(features.columns)} differ from the fitted ones {self.feature_names_}")
        with threadpool_limits(limits=self.n_threads):
            p = self.model_.predict(features.to_numpy(dtype=float))
        return np.exp(p) * self.smearing_ if self.objective == "log" else np.asarray(p, dtype=float)

    def forecast_variance(self, horizon_bars: int = 1) -> float:
        """Variance of the next ``horizon_bars`` days' return from the last feature row.

        The model predicts one day; longer horizons use a flat term structure
        (``h`` times the one-day forecast), as EWMA does.
        """
        h = int(horizon_bars)
        if h != horizon_bars or h < 1:
            raise ConfigError(f"horizon_bars is {horizon_bars}; it must be a whole number of days >= 1")
        check_fitted(self, "model_", "fit(features, target)")
        return float(h * self.predict_variance(self.last_features_)[0])


__all__ = ["MLVarianceForecaster", "build_features", "daily_panel", "next_day_target"]
