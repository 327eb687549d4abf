"""Margin history of an instrument: the one function the CLI, the service and the report call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from margincal.config import CalibrationSettings
from margincal.data.store import load_bars
from margincal.errors import ConfigError
from margincal.margin import params as mparams

HISTORY_COLUMNS = ["close", "sigma_ann", "im_rate", "mm_rate"]


def settings_of(pset: mparams.ParameterSet | None) -> CalibrationSettings:
    """The calibration settings a parameter set was made with (defaults for what it does not say)."""
    prov = pset.provenance if pset else {}
    kw: dict[str, Any] = {}
    for key, name in (("level", "level"), ("horizon_hours", "horizon_hours"), ("ewma_lambda_per_day", "ewma_lambda"),
                      ("mm_fraction", "mm_fraction"), ("buffer", "buffer")):
        if isinstance(prov.get(key), (int, float)):
            kw[name] = float(prov[key])
    try:
        return CalibrationSettings(**kw)
    except ConfigError:
        return CalibrationSettings()


def margin_history_path(bars: pd.DataFrame, timeframe: str, settings: CalibrationSettings) -> pd.DataFrame:
    """Causal per-bar ``close, sigma_ann, im_rate, mm_rate`` of stored bars under ``settings``.

    The single place the history is computed: :func:`margincal.margin.published.published_history`,
    the causal history of the published rule (the same function that computes the published rates).
    """
    from margincal.margin.published import published_history

    return published_history(bars, timeframe, settings)


@dataclass(frozen=True)
class MarginHistory:
    """The history of one instrument on one timeframe, with the settings that produced it.

    ``path`` is empty (columns ``close, sigma_ann, im_rate, mm_rate``) when the store holds fewer
    bars than the calibration needs (``too_short``).
    """

    instrument: str
    timeframe: str
    settings: CalibrationSettings
    path: pd.DataFrame
    too_short: bool = False
    version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _timeframes(con: Any, instrument: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT DISTINCT timeframe FROM bars WHERE instrument = ? ORDER BY 1", [instrument]).fetchall()]


def resolve_timeframe(con: Any, instrument: str, timeframe: str | None = None,
                      pset: mparams.ParameterSet | None = None) -> str:
    """Requested timeframe, else the one the instrument was published from, else ``1d``, else the first stored.

    :class:`KeyError` when the store has no bars of the instrument; :class:`ConfigError` when the
    requested timeframe is not stored.
    """
    tfs = _timeframes(con, instrument)
    if not tfs:
        raise KeyError(instrument)
    p = pset.params.get(instrument) if pset else None
    published = p.details.get("timeframe") if p else None
    if timeframe is not None:
        if timeframe not in tfs:
            raise ConfigError(f"{instrument} has no {timeframe} bars; it has {', '.join(tfs)}")
        return timeframe
    if published in tfs:
        return str(published)
    return "1d" if "1d" in tfs else tfs[0]


def margin_history(con: Any, instrument: str, timeframe: str | None = None, *,
                   pset: mparams.ParameterSet | None = None, use_latest: bool = True) -> MarginHistory:
    """Price, forecast volatility and IM/MM rate over time of a stored instrument.

    ``pset`` (default: the latest published set when ``use_latest``) gives the settings and the
    default timeframe. Bars come from the store (``con``); the path is causal (each bar uses only
    data before it).
    """
    if pset is None and use_latest and mparams.latest_version(con) is not None:
        pset = mparams.load(con)
    tf = resolve_timeframe(con, instrument, timeframe, pset)
    settings = settings_of(pset)
    bars = load_bars(con, instrument, tf)
    if len(bars) < settings.min_history + 40:
        return MarginHistory(instrument, tf, settings, pd.DataFrame(columns=HISTORY_COLUMNS), True,
                             pset.version if pset else None)
    return MarginHistory(instrument, tf, settings, margin_history_path(bars, tf, settings), False,
                         pset.version if pset else None)


__all__ = ["HISTORY_COLUMNS", "MarginHistory", "margin_history", "margin_history_path", "resolve_timeframe",
           "settings_of"]
