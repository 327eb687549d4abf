"""Margin-path models of the backtest: the tail-model family's causal ``fit_path``, and the published rule.

There is no second implementation of a model here. A path model adapts one
model of :mod:`margincal.risk` (its ``fit_path``, see :mod:`margincal.risk.base`)
to the backtest's question: for each bar ``t``, the per-side VaR at
``side_level`` over the horizon, from the returns strictly before ``t``.

Specs (``--model`` of ``margincal backtest``):

* ``fhs``, ``hs``, ``normal``, ``t``, ``cf``, ``evt``, ``mc``: the family's model with its
  defaults (EWMA decay ``Decay(per_day=0.94)``, converted to the bar spacing;
  ``sqrt`` horizon scaling). ``t``, ``evt`` and ``mc`` re-estimate their tail every
  2160 hours (90 days) by default, warm-started; the others every bar;
* ``name@k``: the tail re-estimated every ``k`` bars (the volatility still moves every bar);
* ``risk:name[@k]``: the same model through its reference refit loop (slow; the definition);
* ``published`` / ``published-mm``: the IM / MM that ``margincal run`` publishes
  (:func:`margincal.margin.published.published_path`: ES at the calibration level
  of the simple loss on the larger side, liquidity add-on, rounding up, cap, MM),
  judged as the margin itself whatever the backtest's level. They need the bars
  (volume for the add-on), which :func:`margincal.backtest.data.load_returns` provides.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from margincal.errors import ConfigError
from margincal.risk.models import MODELS, TailModel, make_model

#: hours between tail re-estimations of the likelihood-fitted models (the rest refit every bar)
DEFAULT_REFIT_HOURS: dict[str, float] = {"t": 2160.0, "evt": 2160.0, "mc": 2160.0}

#: models of the default comparison
DEFAULT_MODELS: tuple[str, ...] = ("fhs", "hs", "normal", "t", "cf", "evt")


class PathModel:
    """Base of the backtest's path models: :meth:`var_paths` returns per-side VaR arrays (length n)."""

    name = "base"
    needs_bars = False

    @property
    def label(self) -> str:
        return self.name

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_") and not k.startswith("_")}

    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float, bar_hours: float,
                  index: pd.DatetimeIndex | None = None,
                  bars: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class FamilyPath(PathModel):
    """A model of :mod:`margincal.risk` run through its ``fit_path`` (``fast=False``: the reference loop)."""

    def __init__(self, model: str | TailModel, *, refit: int | None = None, fast: bool = True,
                 **params: Any) -> None:
        self.model = model
        self.refit = refit
        self.fast = fast
        self.params = params

    @property
    def _model_name(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.name

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._model_name if self.fast else f"risk:{self._model_name}"

    @property
    def label(self) -> str:
        return self.name if self.refit is None else f"{self.name}@{self.refit}"

    def get_params(self) -> dict[str, Any]:
        m = self.model if isinstance(self.model, str) else self.model.get_params()
        return {"model": m, "refit": self.refit, "fast": self.fast, **self.params}

    def tail_model(self, **overrides: Any) -> TailModel:
        """The risk model with ``params`` (then ``overrides``) applied: a new model unless there are none."""
        params = {**self.params, **overrides}
        if isinstance(self.model, TailModel):
            return self.model.clone(**params) if params else self.model
        return make_model(self.model, **params)

    def refit_bars(self, bar_hours: float) -> int:
        if self.refit is not None:
            return int(self.refit)
        hours = DEFAULT_REFIT_HOURS.get(self._model_name)
        return 1 if hours is None else max(1, int(round(hours / bar_hours)))

    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float, bar_hours: float,
                  index: pd.DatetimeIndex | None = None,
                  bars: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        r = np.asarray(returns, dtype=float)
        p = self.tail_model(side="both").path_arrays(
            r, horizon=horizon_bars * bar_hours, level=side_level, refit=self.refit_bars(bar_hours),
            bar_hours=bar_hours, fast=self.fast, es=False)
        return p["var_long"][: r.size], p["var_short"][: r.size]


class PublishedPath(PathModel):
    """The IM (``rate="im"``) or MM (``rate="mm"``) history of the published rule (module doc).

    ``settings`` are :class:`margincal.config.CalibrationSettings` fields; the
    horizon is the backtest's. ``side_level`` is ignored: the published rule has
    its own level (``settings.level``), and the backtest judges it as it is.
    """

    needs_bars = True

    def __init__(self, *, rate: str = "im", underlyings: dict[str, Any] | None = None, **settings: Any) -> None:
        if rate not in ("im", "mm"):
            raise ConfigError(f"published rate is {rate!r}; use 'im' or 'mm'")
        self.rate = rate
        self.settings = settings
        #: instrument -> :class:`margincal.margin.published.UnderlyingRisk` (the coin's shared tail risk)
        self.underlyings = dict(underlyings or {})

    @property
    def name(self) -> str:  # type: ignore[override]
        return "published" if self.rate == "im" else "published-mm"

    def get_params(self) -> dict[str, Any]:
        return {"rate": self.rate, **self.settings}

    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float, bar_hours: float,
                  index: pd.DatetimeIndex | None = None, bars: pd.DataFrame | None = None,
                  instrument: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        from margincal.config import CalibrationSettings
        from margincal.margin.published import published_history

        if bars is None:
            raise ConfigError("the published rule needs the instrument's bars (volume for the liquidity add-on); "
                              "load the data with margincal.backtest.load_returns")
        tf = _timeframe(bar_hours)
        cfg = CalibrationSettings(**{"horizon_hours": horizon_bars * bar_hours, **self.settings})
        und = self.underlyings.get(instrument) if instrument is not None else None
        key = (id(bars), len(bars), tf, repr(cfg), id(und))
        cached = _HISTORY_CACHE.get("last")
        if cached is not None and cached[0] == key and cached[1] is bars:
            h = cached[2]  # IM and MM of the same instrument share one history
        else:
            h = published_history(bars, tf, cfg, underlying=und)
            _HISTORY_CACHE["last"] = (key, bars, h)
        out = h["im_rate" if self.rate == "im" else "mm_rate"].to_numpy(float)
        r = np.asarray(returns, dtype=float)
        if out.size != r.size:
            raise ConfigError(f"published: {out.size} bars of history for {r.size} returns")
        return out, out


_HISTORY_CACHE: dict[str, tuple[Any, pd.DataFrame, pd.DataFrame]] = {}


def _timeframe(bar_hours: float) -> str:
    if abs(bar_hours - 24.0) < 1e-9:
        return "1d"
    if abs(bar_hours - round(bar_hours)) < 1e-9:
        return f"{int(round(bar_hours))}h"
    if abs(bar_hours * 60 - round(bar_hours * 60)) < 1e-9:
        return f"{int(round(bar_hours * 60))}m"
    raise ConfigError(f"published: bars of {bar_hours} hours have no timeframe label")


def make_path_model(spec: str | PathModel, **params: Any) -> PathModel:
    """A path model from a name, ``name@k``, ``risk:<name>[@k]``, ``published[-mm]`` or an instance (module doc)."""
    if isinstance(spec, PathModel):
        return spec
    if isinstance(spec, TailModel):
        return FamilyPath(spec, **params)
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model {spec!r} is not a model name or a PathModel")
    s = spec.strip()
    if s in ("published", "published-mm"):
        return PublishedPath(rate="im" if s == "published" else "mm", **params)
    name, refit = s, None
    if "@" in s:
        name, _, k = s.partition("@")
        try:
            refit = int(k)
        except ValueError:
            raise ConfigError(f"model {spec!r}: the refit frequency after '@' must be a whole number") from None
        if refit < 1:
            raise ConfigError(f"model {spec!r}: the refit frequency after '@' must be >= 1")
    fast = True
    if name.startswith("risk:"):
        name, fast = name[5:], False
    if name not in MODELS:
        known = sorted({*MODELS, *(f"risk:{m}" for m in MODELS), "published", "published-mm"})
        raise ConfigError(f"unknown model {spec!r}; choose one of {', '.join(known)} (append @k to refit every "
                          "k bars)")
    return FamilyPath(name, refit=refit, fast=fast, **params)


def per_bar_lambda(lam_day: float, bar_hours: float) -> float:
    """Deprecated helper: ``Decay(per_day=lam_day).for_bars(bar_hours)``."""
    from margincal.units import Decay

    return Decay(per_day=lam_day).for_bars(bar_hours)


__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_REFIT_HOURS",
    "FamilyPath",
    "PathModel",
    "PublishedPath",
    "make_path_model",
    "per_bar_lambda",
]

