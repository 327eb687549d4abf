"""Return series for the backtest: from the store when it has bars, else the bundled CSVs.

Instrument names follow :data:`margincal.data.samples.SAMPLES` (``BTC-USDT``
spot, ``BTC-PERP`` perpetual). Any spelling is accepted and mapped:
``btc``, ``BTCUSDT``, ``btc/usdt``, ``btc_daily`` -> ``BTC-USDT``;
``btcusdt_perp_1h``, ``BTC-USDT-PERP`` -> ``BTC-PERP``.

Returns are close-to-close log returns labelled by the **start** of the bar
they are realised over (the file's ``date`` / candle open time): the return
labelled 2020-03-12 is the move of that UTC day, from the 2020-03-11 close to
the 2020-03-12 close. Gaps in the data (six missing days in 2026 in the daily
files, Binance outages in the hourly ones) are kept as they are: the return
across a gap is the move a margin in force over it had to cover.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from margincal.errors import DataError


@dataclass(frozen=True, eq=False)
class InstrumentData:
    """One-bar log returns of an instrument with where they came from (and its bars, when known).

    ``bars`` (OHLCV indexed by time, ``returns`` are their close-to-close log
    returns) lets the published rule compute its liquidity add-on.
    """

    instrument: str
    returns: pd.Series
    bar_hours: float
    source: str
    bars: pd.DataFrame | None = None

    @property
    def window(self) -> tuple[str, str]:
        idx = self.returns.index
        return (str(idx[0]), str(idx[-1])) if len(idx) else ("", "")


def instrument_key(name: str) -> str:
    """Spelling-insensitive key: ``btc_daily``, ``BTC-USDT``, ``btcusdt`` -> ``btc``; perps (any spelling of
    :mod:`margincal.instruments`: ``BTC-PERP``, ``BTC-PERPETUAL``, ``BTC/USDT:USDT``) -> ``btcperp``."""
    from margincal.errors import DataError as _NameError
    from margincal.instruments import format_name, parse

    try:
        inst = parse(name)
    except _NameError:
        inst = None
    if inst is not None:
        if inst.kind == "spot":
            return inst.base.lower() if inst.quote in ("USDT", "USD") else f"{inst.base}{inst.quote}".lower()
        return re.sub(r"[^a-z0-9]", "", format_name(inst).lower())
    s = str(name).strip().lower()
    s = re.sub(r"\.(csv|gz|parquet)$", "", s)
    s = re.sub(r"\.(csv|gz|parquet)$", "", s)
    s = re.sub(r"_(daily|1h|1d)$", "", s)
    s = re.sub(r"[^a-z0-9]", "", s)
    s = s.replace("usdtperp", "perp")
    if s.endswith("usdt") and len(s) > 4:
        s = s[:-4]
    return s


def timeframe_for_horizon(horizon_hours: float) -> str:
    """``1d`` bars when the horizon is a whole number of days, else ``1h``."""
    return "1d" if abs(horizon_hours / 24.0 - round(horizon_hours / 24.0)) < 1e-9 and horizon_hours >= 24 else "1h"


def _bar_hours(timeframe: str) -> float:
    from margincal.data.ingest import timeframe_hours

    return float(timeframe_hours(timeframe))


def _log_returns(close: pd.Series, label: str) -> pd.Series:
    c = close.astype(float)
    bad = ~(np.isfinite(c.to_numpy()) & (c.to_numpy() > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{label}: close at {c.index[i]} is {c.iloc[i]}; prices must be finite and > 0")
    r = np.log(c).diff().iloc[1:]
    return r


def read_bundled(file: str | Path, instrument: str) -> pd.Series:
    """Log returns from a bundled OHLCV file (``date`` or ``timestamp`` column, ``close``)."""
    return _log_returns_of(read_bundled_bars(file), instrument)


def _log_returns_of(bars: pd.DataFrame, instrument: str) -> pd.Series:
    r = _log_returns(bars["close"], str(bars.attrs.get("file", instrument)))
    r.name = instrument
    return r


def read_bundled_bars(file: str | Path) -> pd.DataFrame:
    """The bars of a bundled OHLCV file, indexed by UTC time (sorted, no duplicates)."""
    from margincal import datasets

    path = Path(file)
    if path.is_absolute():
        if not path.exists():
            raise DataError(f"bundled file {path.name} not found")
        df = datasets.load(path.name, path.parent)
    else:
        df = datasets.load(str(path))
    tcol = "date" if "date" in df.columns else ("timestamp" if "timestamp" in df.columns else None)
    if tcol is None or "close" not in df.columns:
        raise DataError(f"{path.name}: needs a 'date' or 'timestamp' column and 'close'")
    idx = pd.DatetimeIndex(pd.to_datetime(df[tcol], utc=True)).as_unit("ns")
    bars = df.drop(columns=[tcol]).set_axis(idx, axis=0).sort_index()
    if bars.index.has_duplicates:
        raise DataError(f"{path.name}: duplicate timestamps (first {bars.index[bars.index.duplicated()][0]})")
    bars.attrs["file"] = path.name
    return bars


def bundled_catalog(timeframe: str) -> dict[str, tuple[str, str]]:
    """``{key: (instrument, file)}`` of the bundled bar files of a timeframe."""
    from margincal.data.samples import SAMPLES

    return {instrument_key(s.instrument): (s.instrument, s.file) for s in SAMPLES
            if s.kind == "bars" and s.timeframe == timeframe}


def _from_store(store: str | Path | None, instruments: Sequence[str] | None, timeframe: str
                ) -> dict[str, InstrumentData]:
    from margincal.config import resolve_store_path
    from margincal.data.store import bar_instruments, load_bars, open_store

    path = resolve_store_path(store)
    if str(path) != ":memory:" and not Path(path).exists():
        return {}
    out: dict[str, InstrumentData] = {}
    bh = _bar_hours(timeframe)
    with open_store(path, read_only=True) as con:
        have = bar_instruments(con, timeframe)
        by_key = {instrument_key(i): i for i in have}
        wanted = list(have) if not instruments else [by_key.get(instrument_key(n)) for n in instruments]
        for inst in wanted:
            if inst is None:
                continue
            bars = load_bars(con, inst, timeframe)
            if len(bars) < 3:
                continue
            r = _log_returns(bars["close"], f"store {Path(path).name} {inst} {timeframe}")
            r.index = pd.DatetimeIndex(r.index).as_unit("ns")
            r.name = inst
            out[instrument_key(inst)] = InstrumentData(inst, r, bh, f"store:{Path(path).name}:{timeframe}",
                                                       bars=bars)
    return out


def load_returns(instruments: Sequence[str] | None = None, *, timeframe: str = "1d",
                 store: str | Path | None = None, use_store: bool = True) -> list[InstrumentData]:
    """Returns of the requested instruments (all available when None) at ``timeframe``.

    Bars come from the store (``store`` path, else ``$MARGINCAL_STORE`` /
    ``./margincal.duckdb``) when it exists and holds them; any instrument it
    lacks is read from the bundled data. Unknown names raise :class:`DataError`
    listing the available ones.
    """
    stored = _from_store(store, instruments, timeframe) if use_store else {}
    catalog = bundled_catalog(timeframe)
    keys = [instrument_key(n) for n in instruments] if instruments else list(dict.fromkeys(
        [*stored.keys(), *catalog.keys()]))
    out: list[InstrumentData] = []
    for name, key in zip(instruments or keys, keys, strict=True):
        if key in stored:
            out.append(stored[key])
        elif key in catalog:
            inst, file = catalog[key]
            bars = read_bundled_bars(file)
            out.append(InstrumentData(inst, _log_returns_of(bars, inst), _bar_hours(timeframe), f"bundled:{file}",
                                      bars=bars))
        else:
            avail = sorted({d.instrument for d in stored.values()} | {v[0] for v in catalog.values()})
            raise DataError(f"instrument {name!r}: no {timeframe} bars in the store or the bundled data; "
                            f"available: {', '.join(avail)}")
    seen: set[str] = set()
    uniq = []
    for d in out:
        if d.instrument not in seen:
            seen.add(d.instrument)
            uniq.append(d)
    return uniq


__all__ = ["InstrumentData", "bundled_catalog", "instrument_key", "load_returns", "read_bundled",
           "read_bundled_bars",
           "timeframe_for_horizon"]
