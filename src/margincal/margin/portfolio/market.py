"""Build a :class:`MarketState` from the store, the bundled Deribit snapshots and explicit overrides.

Order of precedence
-------------------
* spot: explicit ``spot`` overrides; else the latest close in the store's
  ``bars`` (instruments ``<U>-PERP``, then ``<U>-USDT``, then ``<U>``; any
  timeframe; not after ``asof``); else ``default_spot`` (the historical
  method passes the last close of its price history);
* option vols: the store's ``option_quotes`` (latest ``mark_iv`` not after
  ``asof``); else the bundled Deribit snapshots (:mod:`margincal.datasets`); else
  ``flat_vol``. Options are matched on (underlying, expiry, strike, C/P), not
  on the spelling of their names;
* valuation time: ``asof``; else the latest store bar used for a spot; else now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from margincal.errors import DataError, StoreError
from margincal.instruments import perpetual_name, spot_name
from margincal.margin.portfolio.instruments import InstrumentSpec, MarketState


def _key(und: str, expiry: Any, strike: float, cp: str) -> tuple[str, pd.Timestamp, float, str]:
    e = pd.Timestamp(expiry)
    e = e.tz_localize("UTC") if e.tzinfo is None else e.tz_convert("UTC")
    return (und.upper(), e, round(float(strike), 8), cp.upper()[:1])


def store_spots(con: Any, underlyings: Sequence[str], asof: pd.Timestamp | None) -> dict[str, tuple[float, pd.Timestamp, str]]:
    """Latest close per underlying from the store's bars: ``{u: (price, ts_utc, instrument)}``."""
    out: dict[str, tuple[float, pd.Timestamp, str]] = {}
    for u in underlyings:
        cands = [perpetual_name(u), spot_name(u), u]
        sql = (f"SELECT instrument, ts, close FROM bars WHERE instrument IN ({', '.join('?' * len(cands))})")
        params: list[Any] = list(cands)
        if asof is not None:
            sql += " AND ts <= ?"
            params.append(asof.tz_convert("UTC").tz_localize(None))
        row = con.execute(sql + " ORDER BY ts DESC LIMIT 1", params).fetchone()
        if row is not None:
            out[u] = (float(row[2]), pd.Timestamp(row[1]).tz_localize("UTC"), str(row[0]))
    return out


def _quotes_frame_from_store(con: Any) -> pd.DataFrame:
    return con.execute(
        "SELECT underlying, expiry, strike, option_type, mark_iv, snapshot_ts FROM option_quotes "
        "WHERE mark_iv IS NOT NULL"
    ).df()


def _quotes_frame_from_samples() -> pd.DataFrame:
    from margincal import datasets
    from margincal.data.ingest import validate_options

    frames = []
    for s in datasets.files(kind="options"):
        frame, _ = validate_options(datasets.load(s.file), s.file, False, s.symbol)
        frame["source"] = s.file
        frames.append(frame[["underlying", "expiry", "strike", "option_type", "mark_iv", "snapshot_ts", "source"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _vol_lookup(frame: pd.DataFrame, asof: pd.Timestamp | None) -> dict[tuple, tuple[float, str]]:
    if frame.empty:
        return {}
    f = frame.dropna(subset=["mark_iv"]).copy()
    snap = pd.to_datetime(f["snapshot_ts"], utc=True)
    f["snap"] = snap
    if asof is not None:
        # prefer snapshots not after asof; keep later ones only as a last resort
        f["late"] = f["snap"] > asof
        f = f.sort_values(["late", "snap"], ascending=[False, True])
    else:
        f = f.sort_values("snap")
    out: dict[tuple, tuple[float, str]] = {}
    for row in f.itertuples(index=False):
        src = f"{getattr(row, 'source', 'store')} @ {row.snap:%Y-%m-%d %H:%M}"
        out[_key(row.underlying, row.expiry, row.strike, row.option_type)] = (float(row.mark_iv), src)
    return out


def build_market(
    specs: Sequence[InstrumentSpec],
    *,
    con: Any = None,
    spot: Mapping[str, float] | None = None,
    flat_vol: float | None = None,
    asof: Any = None,
    use_samples: bool = True,
    default_spot: Mapping[str, float] | None = None,
) -> tuple[MarketState, dict[str, Any]]:
    """MarketState for ``specs`` (module doc) and a provenance dict saying where each number came from."""
    asof_ts = None if asof is None else pd.Timestamp(asof)
    if asof_ts is not None and asof_ts.tzinfo is None:
        asof_ts = asof_ts.tz_localize("UTC")
    unds = sorted({s.underlying for s in specs})
    prov: dict[str, Any] = {"spot": {}, "vols": {}}
    spots: dict[str, float] = {}
    latest_bar: pd.Timestamp | None = None
    overrides = {k.upper(): float(v) for k, v in (spot or {}).items()}
    need_store = [u for u in unds if u not in overrides]
    if con is not None and need_store:
        for u, (px, ts, inst) in store_spots(con, need_store, asof_ts).items():
            spots[u] = px
            prov["spot"][u] = f"store bars {inst} close at {ts.isoformat()}"
            latest_bar = ts if latest_bar is None or ts > latest_bar else latest_bar
    for u, v in overrides.items():
        spots[u] = v
        prov["spot"][u] = "override"
    for u, v in (default_spot or {}).items():
        if u in unds and u not in spots:
            spots[u] = float(v)
            prov["spot"][u] = "last close of the price history"
    missing = [u for u in unds if u not in spots]
    if missing:
        raise DataError(
            f"no spot price for {', '.join(missing)}: pass --spot {missing[0]}=PRICE or load bars with "
            "`margincal run`"
        )
    when = asof_ts if asof_ts is not None else (latest_bar if latest_bar is not None
                                                else pd.Timestamp.now(tz="UTC").floor("s"))
    prov["valuation_time"] = when.isoformat()

    options = [s for s in specs if s.is_option]
    vols: dict[str, float] = {}
    if options:
        lookups: list[tuple[str, dict]] = []
        if con is not None:
            try:
                lookups.append(("store option_quotes", _vol_lookup(_quotes_frame_from_store(con), when)))
            except duckdb.Error as exc:  # a store without the option_quotes table is fine
                prov["vols"]["store_error"] = str(exc)
        if use_samples:
            try:
                lookups.append(("bundled Deribit snapshot", _vol_lookup(_quotes_frame_from_samples(), when)))
            except (DataError, StoreError, OSError) as exc:
                prov["vols"]["samples_error"] = str(exc)
        counts: dict[str, int] = {}
        for s in options:
            k = _key(s.underlying, s.expiry, float(s.strike), str(s.option_type))  # type: ignore[arg-type]
            for name, table in lookups:
                if k in table:
                    vols[s.name] = table[k][0]
                    counts[f"{name} ({table[k][1]})"] = counts.get(f"{name} ({table[k][1]})", 0) + 1
                    break
        n_flat = len(options) - len(vols)
        if n_flat:
            if flat_vol is None:
                first = next(s.name for s in options if s.name not in vols)
                raise DataError(f"no implied vol for {n_flat} option(s), e.g. {first}: pass --vol 0.6 (a flat vol)")
            counts[f"flat --vol {flat_vol}"] = n_flat
        prov["vols"]["sources"] = counts
    market = MarketState(spot=spots, valuation_time=when, vols=vols, flat_vol=flat_vol)
    return market, prov


def open_store_if_present(store: str | Path | None) -> Any:
    """Read-only connection to the store, or None when it does not exist."""
    from margincal.data.store import connect

    try:
        return connect(store, read_only=True, timeout=5.0)
    except StoreError:
        return None


__all__ = ["build_market", "open_store_if_present", "store_spots"]
