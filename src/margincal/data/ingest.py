"""Validated ingest of CSV / Parquet files into the store.

Kinds of file (detected from the columns, or forced with ``kind=``):

* ``bars``: a time column (``timestamp``, ``ts``, ``date``, ``time``,
  ``open_time``) and ``open, high, low, close, volume``;
* ``funding``: ``funding_time`` (or ``ts``/``timestamp``) and ``funding_rate``
  (or ``rate``), a decimal rate per funding period;
* ``open_interest``: a time column and ``open_interest_usd`` (or
  ``oi_notional``), open interest in quote currency;
* ``options``: Deribit option snapshots (``strike``, ``option_type``, an
  expiry column, prices or implied vols);
* ``depth``: order-book levels (``ts, side, price, size``).

Rules (each broken rule raises :class:`DataError` naming file, line, field and
rule; up to ``MAX_REPORTED`` problems are listed, with the total count):
missing or misnamed columns, non-numeric values, non-positive prices,
high < low, open/close outside [low, high], negative volume, timestamps that
don't parse, duplicate timestamps with conflicting values, spacing that is not
a whole multiple of the timeframe (or timestamps off the timeframe grid).
Exact duplicate rows are dropped with a :class:`IngestWarning` saying how many.
Gaps are allowed and reported (count, largest).

Line numbers are those of the file as a text editor shows them: the header is
line 1, the first data row line 2. For Parquet, "row N" counts from 1.

An ingest is one transaction: the whole file lands or nothing does.
Re-ingesting rows already stored with the same values changes nothing; a row
whose stored values differ is an error unless ``replace=True``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from margincal.config import plausible_time_range
from margincal.data.store import scalar, transaction, upsert_instrument
from margincal.errors import DataError, MargincalWarning
from margincal.instruments import Instrument, format_name
from margincal.instruments import parse as parse_instrument_name

MAX_REPORTED = 5

TIME_COLUMNS = ("timestamp", "ts", "date", "time", "open_time", "datetime", "funding_time")
TIMEFRAME_RE = re.compile(r"^(\d+)([mhdw])$")
_UNIT_HOURS = {"m": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}


class IngestWarning(MargincalWarning):
    """A repair or notice during ingest (duplicates dropped, gaps found)."""


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """'1h' -> Timedelta(hours=1); raises DataError on an unknown timeframe."""
    m = TIMEFRAME_RE.match(timeframe or "")
    if not m or int(m.group(1)) <= 0:
        raise DataError(f"timeframe {timeframe!r} is not valid; use e.g. 1m, 5m, 1h, 4h, 8h, 1d")
    return pd.Timedelta(hours=int(m.group(1)) * _UNIT_HOURS[m.group(2)])


def timeframe_hours(timeframe: str) -> float:
    return timeframe_delta(timeframe).total_seconds() / 3600.0


@dataclass
class IngestReport:
    """What an ingest did (or would do)."""

    file: str
    kind: str
    instrument: str
    timeframe: str | None
    rows_in_file: int
    rows_inserted: int
    rows_already_present: int
    duplicates_dropped: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    gaps: int = 0
    largest_gap: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Problems:
    """Collects rule violations and raises one DataError listing them."""

    def __init__(self, name: str, parquet: bool) -> None:
        self.name = name
        self.parquet = parquet
        self.items: list[tuple[int, str]] = []
        self.count = 0

    def where(self, pos: int) -> str:
        return f"row {pos + 1}" if self.parquet else f"line {pos + 2}"

    def add(self, positions: np.ndarray | list[int], make_msg: Any) -> None:
        positions = list(np.asarray(positions).ravel())
        self.count += len(positions)
        for p in positions[: MAX_REPORTED]:
            self.items.append((int(p), f"{self.name} {self.where(int(p))}: {make_msg(int(p))}"))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        self.items.sort(key=lambda t: t[0])
        msgs = [m for _, m in self.items[:MAX_REPORTED]]
        more = self.count - len(msgs)
        tail = f"\n(and {more} more problem(s))" if more > 0 else ""
        raise DataError("\n".join(msgs) + tail)


def read_table(path: str | Path) -> tuple[pd.DataFrame, bool]:
    """Read CSV (optionally gzip) or Parquet as strings-preserving frame; returns (frame, is_parquet)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    name = p.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises several types
            raise DataError(f"{p.name}: not a readable Parquet file ({exc})") from None
        return df, True
    if not any(name.endswith(s) for s in (".csv", ".csv.gz", ".txt", ".tsv")):
        raise DataError(f"{p.name}: unsupported file type; use .csv, .csv.gz or .parquet")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, compression="infer",
                         sep="\t" if name.endswith(".tsv") else ",")
    except pd.errors.EmptyDataError:
        raise DataError(f"{p.name}: the file is empty (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{p.name}: cannot parse as CSV ({exc})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df, False


def detect_kind(columns: list[str]) -> str:
    cols = set(columns)
    if {"open", "high", "low", "close"} & cols:
        return "bars"
    if {"funding_rate", "rate"} & cols:
        return "funding"
    if {"open_interest_usd", "oi_notional", "open_interest"} & cols and "strike" not in cols:
        return "open_interest"
    if "strike" in cols:
        return "options"
    if {"side", "price", "size"} <= cols:
        return "depth"
    return "unknown"


def _time_column(df: pd.DataFrame, name: str, prefer: tuple[str, ...] = TIME_COLUMNS) -> str:
    for c in prefer:
        if c in df.columns:
            return c
    raise DataError(
        f"{name} line 1: no time column; expected one of {', '.join(prefer)}; found columns: "
        f"{', '.join(df.columns)}"
    )


def _require(df: pd.DataFrame, name: str, cols: list[str], kind: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        hints = []
        for m in missing:
            close = [c for c in df.columns if c.startswith(m[:3]) or m.startswith(c[:3])]
            if close:
                hints.append(f"'{m}' (did you mean '{close[0]}'?)")
            else:
                hints.append(f"'{m}'")
        raise DataError(
            f"{name} line 1: {kind} file is missing column(s) {', '.join(hints)}; "
            f"found: {', '.join(df.columns)}"
        )


def _numeric(df: pd.DataFrame, col: str, probs: _Problems) -> np.ndarray:
    raw = df[col]
    if pd.api.types.is_numeric_dtype(raw):
        vals = raw.to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(vals))
    else:
        s = raw.astype(str).str.strip()
        vals = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(vals))
    if bad.size:
        probs.add(bad, lambda p: f"{col} is {str(raw.iloc[p])!r}; {col} must be a finite number")
    return vals


def _timestamps(df: pd.DataFrame, col: str, probs: _Problems) -> pd.DatetimeIndex:
    raw = df[col]
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = pd.to_datetime(raw, utc=True)
    elif pd.api.types.is_numeric_dtype(raw) or raw.astype(str).str.strip().str.fullmatch(r"-?\d{9,19}").all():
        # epoch numbers: the unit is read from the magnitude (seconds ~1.7e9, ms ~1.7e12, us ~1.7e15,
        # ns ~1.7e18 today); a value in another unit than the rest lands outside the plausible range below
        v = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        med = float(np.nanmedian(np.abs(v))) if np.isfinite(v).any() else 0.0
        unit = "ns" if med > 1e17 else "us" if med > 1e14 else "ms" if med > 1e11 else "s"
        with np.errstate(invalid="ignore", over="ignore"):
            ok = np.isfinite(v) & (np.abs(v) < 9.2e18 / {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[unit])
        ts = pd.to_datetime(np.where(ok, v, np.nan), unit=unit, utc=True, errors="coerce")
    else:
        s = raw.astype(str).str.strip()
        ts = pd.to_datetime(s, utc=True, errors="coerce", format="mixed")
    ts = pd.DatetimeIndex(ts)
    bad = np.flatnonzero(ts.isna())
    if bad.size:
        probs.add(bad, lambda p: f"{col} {str(raw.iloc[p])!r} is not a timestamp (use ISO-8601, UTC)")
    lo, hi = plausible_time_range()
    out = np.flatnonzero(~ts.isna() & ((ts < lo) | (ts > hi)))
    if out.size:
        probs.add(out, lambda p: f"{col} {str(raw.iloc[p])!r} ({ts[p].isoformat()}) is outside the plausible range "
                  f"{lo.date()} .. {hi.strftime('%Y-%m-%d %H:%M')} UTC (wrong epoch unit or a typo? "
                  "MARGINCAL_TIME_RANGE widens it)")
    return ts


PRICE_FLOOR = 1e-12
PRICE_CEILING = 1e13


def _plausible_prices(arr: np.ndarray, col: str, probs: _Problems) -> None:
    """Prices must be > 0 and within [1e-12, 1e13] (no denormals, no overflowed or unit-shifted values)."""
    bad = np.flatnonzero(arr <= 0)
    if bad.size:
        probs.add(bad, lambda p: f"{col} is {arr[p]:g}; prices must be > 0")
    odd = np.flatnonzero((arr > 0) & ((arr < PRICE_FLOOR) | (arr > PRICE_CEILING)))
    if odd.size:
        probs.add(odd, lambda p: f"{col} is {arr[p]:g}; prices must lie in [{PRICE_FLOOR:g}, {PRICE_CEILING:g}]")


def _dedupe(frame: pd.DataFrame, key_cols: list[str], value_cols: list[str], probs: _Problems,
            pos: np.ndarray, what: str) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Drop exact duplicates (counted); report conflicting duplicates as problems."""
    dup_any = frame.duplicated(key_cols, keep=False)
    if not dup_any.any():
        return frame, pos, 0
    exact = frame.duplicated(key_cols + value_cols, keep="first")
    conflicted = frame[dup_any & ~frame.duplicated(key_cols + value_cols, keep=False)]
    if not conflicted.empty:
        groups = frame[dup_any].groupby(key_cols, sort=False)
        bad_positions = []
        for _, g in groups:
            if len(g.drop_duplicates(value_cols)) > 1:
                bad_positions.append(int(pos[g.index[1]]))
        if bad_positions:
            first = {int(pos[i]): i for i in frame.index}

            def msg(p: int) -> str:
                row = frame.loc[first[p]]
                key = ", ".join(f"{k}={row[k]}" for k in key_cols)
                return f"duplicate {what} ({key}) with conflicting values; each timestamp may appear once"

            probs.add(bad_positions, msg)
    n_exact = int(exact.sum())
    keep = ~exact
    return frame[keep.to_numpy()], pos[keep.to_numpy()], n_exact


def validate_bars(df: pd.DataFrame, name: str, parquet: bool, timeframe: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate OHLCV rows; returns a clean frame (ts UTC naive, open..volume) and stats."""
    probs = _Problems(name, parquet)
    tcol = _time_column(df, name)
    _require(df, name, ["open", "high", "low", "close", "volume"], "bars")
    if len(df) == 0:
        raise DataError(f"{name}: no data rows after the header")
    ts = _timestamps(df, tcol, probs)
    o, h, lo, c, v = (_numeric(df, k, probs) for k in ("open", "high", "low", "close", "volume"))
    probs.raise_if_any()
    for col, arr in (("open", o), ("high", h), ("low", lo), ("close", c)):
        _plausible_prices(arr, col, probs)
    bad = np.flatnonzero(h < lo)
    if bad.size:
        probs.add(bad, lambda p: f"high {h[p]:g} < low {lo[p]:g}; high must be >= low")
    tol = 1e-9
    for col, arr in (("close", c), ("open", o)):
        bad = np.flatnonzero(((arr < lo * (1 - tol)) | (arr > h * (1 + tol))) & (h >= lo) & (arr > 0) & (lo > 0))
        if bad.size:
            probs.add(bad, lambda p, col=col, arr=arr:
                      f"{col} {arr[p]:g} is outside [low {lo[p]:g}, high {h[p]:g}]; it must lie within")
    bad = np.flatnonzero(v < 0)
    if bad.size:
        probs.add(bad, lambda p: f"volume is {v[p]:g}; volume must be >= 0")
    probs.raise_if_any()
    frame = pd.DataFrame({"ts": ts.tz_convert("UTC").tz_localize(None), "open": o, "high": h, "low": lo,
                          "close": c, "volume": v})
    pos = np.arange(len(frame))
    frame, pos, n_dup = _dedupe(frame, ["ts"], ["open", "high", "low", "close", "volume"], probs, pos, "timestamp")
    probs.raise_if_any()
    order = np.argsort(frame["ts"].to_numpy(), kind="stable")
    frame, pos = frame.iloc[order].reset_index(drop=True), pos[order]
    stats = _spacing(frame["ts"], pos, timeframe, probs, tcol)
    probs.raise_if_any()
    stats["duplicates_dropped"] = n_dup
    return frame, stats


def _spacing(ts: pd.Series, pos: np.ndarray, timeframe: str, probs: _Problems, tcol: str) -> dict[str, Any]:
    step = timeframe_delta(timeframe)
    step_ns = step.value
    t = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    off = np.flatnonzero(t % step_ns != 0)
    if off.size:
        probs.add(pos[off], lambda p: f"{tcol} is not on the {timeframe} grid (bars must start at a multiple of "
                  f"{timeframe} from 1970-01-01 UTC)")
    d = np.diff(t)
    bad = np.flatnonzero(d % step_ns != 0)
    if bad.size:
        probs.add(pos[bad + 1], lambda p: f"{tcol} spacing is not a whole multiple of {timeframe} "
                  "after the previous bar")
    if d.size >= 2 and int(d.min()) > step_ns:
        raise DataError(f"{tcol}: every bar is at least {pd.Timedelta(int(d.min()))} after the previous one, but the "
                        f"timeframe is {timeframe}: these are not {timeframe} bars (pass the timeframe they have, "
                        f"e.g. --timeframe {_tf_label(int(d.min()))})")
    gaps_idx = np.flatnonzero(d > step_ns)
    largest = pd.Timedelta(int(d[gaps_idx].max()) - step_ns) if gaps_idx.size else None
    return {
        "gaps": int(gaps_idx.size),
        "missing_bars": int(((d[gaps_idx] // step_ns) - 1).sum()) if gaps_idx.size else 0,
        "largest_gap": str(largest) if largest is not None else None,
    }


def _tf_label(ns: int) -> str:
    for unit, size in (("d", 86_400e9), ("h", 3_600e9), ("m", 60e9)):
        if ns % int(size) == 0:
            return f"{ns // int(size)}{unit}"
    return f"{ns // 1_000_000_000}s"


def validate_funding(df: pd.DataFrame, name: str, parquet: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    probs = _Problems(name, parquet)
    tcol = _time_column(df, name, ("funding_time", "timestamp", "ts", "time", "date"))
    rcol = "funding_rate" if "funding_rate" in df.columns else "rate"
    _require(df, name, [rcol], "funding")
    ts = _timestamps(df, tcol, probs)
    r = _numeric(df, rcol, probs)
    probs.raise_if_any()
    bad = np.flatnonzero(np.abs(r) >= 0.5)
    if bad.size:
        probs.add(bad, lambda p: f"{rcol} is {r[p]:g}; a funding rate per period must be within (-0.5, 0.5) "
                  "(decimal, 0.0001 = 0.01%)")
    probs.raise_if_any()
    frame = pd.DataFrame({"ts": ts.tz_convert("UTC").tz_localize(None), "rate": r})
    pos = np.arange(len(frame))
    frame, pos, n_dup = _dedupe(frame, ["ts"], ["rate"], probs, pos, "funding time")
    probs.raise_if_any()
    return frame.sort_values("ts").reset_index(drop=True), {"duplicates_dropped": n_dup}


def validate_open_interest(df: pd.DataFrame, name: str, parquet: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    probs = _Problems(name, parquet)
    tcol = _time_column(df, name)
    ocol = next((c for c in ("open_interest_usd", "oi_notional", "open_interest") if c in df.columns), None)
    if ocol is None:
        _require(df, name, ["open_interest_usd"], "open-interest")
    ts = _timestamps(df, tcol, probs)
    oi = _numeric(df, ocol, probs)  # type: ignore[arg-type]
    probs.raise_if_any()
    bad = np.flatnonzero(oi < 0)
    if bad.size:
        probs.add(bad, lambda p: f"{ocol} is {oi[p]:g}; open interest must be >= 0")
    probs.raise_if_any()
    frame = pd.DataFrame({"ts": ts.tz_convert("UTC").tz_localize(None), "oi_notional": oi})
    pos = np.arange(len(frame))
    frame, pos, n_dup = _dedupe(frame, ["ts"], ["oi_notional"], probs, pos, "timestamp")
    probs.raise_if_any()
    return frame.sort_values("ts").reset_index(drop=True), {"duplicates_dropped": n_dup}


def deribit_option_name(underlying: str, expiry: pd.Timestamp, strike: float, cp: str) -> str:
    """Deribit naming, e.g. BTC-28JUN24-70000-C (written by :func:`margincal.instruments.format_name`)."""
    e = pd.Timestamp(expiry)
    return format_name(Instrument("option", str(underlying).upper(), expiry=e, strike=float(strike),
                                  option_type=str(cp).upper()))


def validate_options(df: pd.DataFrame, name: str, parquet: bool, underlying: str,
                     snapshot_ts: Any = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Deribit snapshot rows -> option_quotes rows. Implied vols stored as fractions (0.55 = 55%)."""
    probs = _Problems(name, parquet)
    ecol = next((c for c in ("expiry_utc", "expiry", "expiration") if c in df.columns), None)
    if ecol is None:
        _require(df, name, ["expiry"], "options")
    _require(df, name, ["strike", "option_type"], "options")
    notes: list[str] = []
    k = _numeric(df, "strike", probs)
    exp = _timestamps(df, ecol, probs)  # type: ignore[arg-type]
    cp_raw = df["option_type"].astype(str).str.strip().str.lower()
    cp = cp_raw.map({"call": "C", "c": "C", "put": "P", "p": "P"})
    bad = np.flatnonzero(cp.isna().to_numpy())
    if bad.size:
        probs.add(bad, lambda p: f"option_type {cp_raw.iloc[p]!r} must be call/put or C/P")
    probs.raise_if_any()
    bad = np.flatnonzero(k <= 0)
    if bad.size:
        probs.add(bad, lambda p: f"strike is {k[p]:g}; strikes must be > 0")
    exp = exp.tz_convert("UTC")
    if ecol == "expiry" and (exp.hour == 0).all():
        exp = exp + pd.Timedelta(hours=8)  # Deribit settles at 08:00 UTC
        notes.append("expiry dates given without time: set to 08:00 UTC (Deribit settlement)")

    def opt(col: str) -> np.ndarray:
        if col not in df.columns:
            return np.full(len(df), np.nan)
        s = df[col]
        return pd.to_numeric(s.astype(str).str.strip().replace("", np.nan), errors="coerce").to_numpy(dtype=float)

    mark_iv = opt("mark_iv") / 100.0
    placeholder = np.isclose(mark_iv, 1.0)
    if placeholder.any():
        notes.append(f"{int(placeholder.sum())} rows have mark_iv == 100.0 exactly (Deribit placeholders): "
                     "stored as NULL")
        mark_iv[placeholder] = np.nan
    if "quote_time_utc" in df.columns:
        snap = _timestamps(df, "quote_time_utc", probs)
    else:
        if snapshot_ts is None and "instrument_creation_utc" in df.columns:
            created = pd.to_datetime(df["instrument_creation_utc"], utc=True, errors="coerce")
            snapshot_ts = created.max()
            notes.append(f"no quote time in file: snapshot time taken as the newest instrument creation "
                         f"time {snapshot_ts}")
        if snapshot_ts is None:
            raise DataError(f"{name}: no quote time column; pass snapshot_ts (--snapshot-ts)")
        snap = pd.DatetimeIndex([pd.Timestamp(snapshot_ts)] * len(df))
        snap = snap.tz_localize("UTC") if snap.tz is None else snap.tz_convert("UTC")
    probs.raise_if_any()
    und_px = opt("underlying_price")
    idx_px = opt("index_price")
    names = [deribit_option_name(underlying, e, s, c) for e, s, c in zip(exp, k, cp, strict=True)]
    frame = pd.DataFrame({
        "instrument": names, "snapshot_ts": snap.tz_localize(None), "underlying": underlying,
        "expiry": exp.tz_localize(None), "strike": k, "option_type": cp.to_numpy(),
        "bid_iv": opt("bid_iv") / 100.0, "ask_iv": opt("ask_iv") / 100.0, "mark_iv": mark_iv,
        "mark_price": opt("mark_price"), "bid_price": opt("bid_price"), "ask_price": opt("ask_price"),
        "underlying_price": und_px, "index_price": idx_px,
    })
    pos = np.arange(len(frame))
    frame, pos, n_dup = _dedupe(frame, ["instrument", "snapshot_ts"], ["mark_price", "mark_iv"], probs, pos,
                                "option quote")
    probs.raise_if_any()
    return frame.reset_index(drop=True), {"duplicates_dropped": n_dup, "notes": notes}


def validate_depth(df: pd.DataFrame, name: str, parquet: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    probs = _Problems(name, parquet)
    tcol = _time_column(df, name)
    _require(df, name, ["side", "price", "size"], "depth")
    ts = _timestamps(df, tcol, probs)
    price, size = _numeric(df, "price", probs), _numeric(df, "size", probs)
    side = df["side"].astype(str).str.strip().str.lower()
    bad = np.flatnonzero(~side.isin(["bid", "ask"]).to_numpy())
    if bad.size:
        probs.add(bad, lambda p: f"side {side.iloc[p]!r} must be bid or ask")
    probs.raise_if_any()
    _plausible_prices(price, "price", probs)
    bad = np.flatnonzero(size < 0)
    if bad.size:
        probs.add(bad, lambda p: f"size is {size[p]:g}; sizes must be >= 0")
    probs.raise_if_any()
    frame = pd.DataFrame({"ts": ts.tz_convert("UTC").tz_localize(None), "side": side.to_numpy(),
                          "price": price, "size": size})
    pos = np.arange(len(frame))
    frame, pos, n_dup = _dedupe(frame, ["ts", "side", "price"], ["size"], probs, pos, "depth level")
    probs.raise_if_any()
    return frame, {"duplicates_dropped": n_dup}


_TABLES: dict[str, tuple[str, list[str], list[str]]] = {
    # kind: (table, key columns, value columns)
    "bars": ("bars", ["instrument", "timeframe", "ts"], ["open", "high", "low", "close", "volume"]),
    "funding": ("funding", ["instrument", "ts"], ["rate"]),
    "open_interest": ("open_interest", ["instrument", "ts"], ["oi_notional"]),
    "options": ("option_quotes", ["instrument", "snapshot_ts"], ["mark_price", "mark_iv"]),
    "depth": ("depth_snapshots", ["instrument", "ts", "side", "price"], ["size"]),
}


def infer_instrument_kind(instrument: str) -> tuple[str, str]:
    """(kind, underlying) of a name, read by :func:`margincal.instruments.parse`.

    A name that is no instrument form (``BTC`` for an options snapshot, a custom
    index name) is stored as ``spot`` with the text before the first ``-`` as
    its underlying, as before: ingest accepts any well-formed name.
    """
    try:
        inst = parse_instrument_name(instrument)
    except DataError:
        return "spot", instrument.upper().split("-")[0]
    return inst.kind, inst.base


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    *,
    instrument: str,
    timeframe: str | None = None,
    kind: str | None = None,
    replace: bool = False,
    instrument_kind: str | None = None,
    snapshot_ts: Any = None,
    dry_run: bool = False,
) -> IngestReport:
    """Validate ``path`` fully, then write it in one transaction. See the module doc for the rules."""
    p = Path(path)
    name = p.name
    if not instrument or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", instrument):
        raise DataError(f"instrument {instrument!r} is not a valid name (letters, digits, - _ . : /)")
    df, parquet = read_table(p)
    if parquet:
        df.columns = [str(c).strip().lower() for c in df.columns]
    kind = kind or detect_kind(list(df.columns))
    if kind == "unknown":
        raise DataError(
            f"{name} line 1: cannot tell what the file holds from its columns ({', '.join(df.columns)}); "
            "bars need timestamp,open,high,low,close,volume; funding needs funding_time,funding_rate; "
            "open interest needs date,open_interest_usd; or pass --kind"
        )
    if kind not in _TABLES:
        raise DataError(f"kind {kind!r} is not one of {', '.join(_TABLES)}")
    ikind, und = infer_instrument_kind(instrument)
    notes: list[str] = []
    if kind == "bars":
        if timeframe is None:
            raise DataError(f"{name}: bars need a timeframe (--timeframe 1h, 1d, ...)")
        timeframe_delta(timeframe)
        frame, stats = validate_bars(df, name, parquet, timeframe)
        frame.insert(0, "timeframe", timeframe)
    elif kind == "funding":
        frame, stats = validate_funding(df, name, parquet)
    elif kind == "open_interest":
        frame, stats = validate_open_interest(df, name, parquet)
    elif kind == "options":
        frame, stats = validate_options(df, name, parquet, und, snapshot_ts)
        notes += stats.pop("notes", [])
    else:
        frame, stats = validate_depth(df, name, parquet)
    if kind != "options":
        frame.insert(0, "instrument", instrument)
    n_dup = int(stats.get("duplicates_dropped", 0))
    if n_dup:
        warnings.warn(f"{name}: {n_dup} exact duplicate row(s) dropped", IngestWarning, stacklevel=2)
    if stats.get("gaps"):
        notes.append(f"{stats['gaps']} gap(s), {stats['missing_bars']} missing bar(s), largest {stats['largest_gap']}")
    tcol = "snapshot_ts" if kind == "options" else "ts"
    report = IngestReport(
        file=name, kind=kind, instrument=instrument, timeframe=timeframe if kind == "bars" else None,
        rows_in_file=len(df), rows_inserted=0, rows_already_present=0, duplicates_dropped=n_dup,
        first_ts=str(frame[tcol].min()) if len(frame) else None,
        last_ts=str(frame[tcol].max()) if len(frame) else None,
        gaps=int(stats.get("gaps", 0)), largest_gap=stats.get("largest_gap"), notes=notes,
    )
    inserted, present = store_frame(con, kind, frame, instrument=instrument, name=name, replace=replace,
                                    instrument_kind=instrument_kind or ikind, underlying=und, dry_run=dry_run)
    report.rows_inserted, report.rows_already_present = inserted, present
    return report


class _DryRun(Exception):
    """Raised inside the transaction to roll back a dry run."""


def store_frame(con: duckdb.DuckDBPyConnection, kind: str, frame: pd.DataFrame, *, instrument: str, name: str,
                replace: bool = False, instrument_kind: str | None = None, underlying: str | None = None,
                dry_run: bool = False) -> tuple[int, int]:
    """Write a validated frame in one transaction; returns (rows inserted, rows already present).

    Rows already stored with the same values are skipped (idempotent); rows whose
    stored values differ raise :class:`DataError` and nothing is written,
    unless ``replace``.
    """
    table, keys, values = _TABLES[kind]
    tcol = "snapshot_ts" if kind == "options" else "ts"
    ikind, und = infer_instrument_kind(instrument)
    # A cursor of its own: the caller's connection may hold a half-read result (duckdb refuses register then).
    outer, con = con, con.cursor()
    con.register("_incoming", frame)
    inserted = present = 0
    try:
        with transaction(con):
            on = " AND ".join(f"t.{k} = i.{k}" for k in keys)
            neq = " OR ".join(f"t.{v} IS DISTINCT FROM i.{v}" for v in values)
            present = int(scalar(con, f"SELECT count(*) FROM _incoming i JOIN {table} t ON {on}"))
            conflicts = con.execute(
                f"SELECT i.* FROM _incoming i JOIN {table} t ON {on} WHERE {neq} ORDER BY i.{tcol} LIMIT 3"
            ).df()
            if len(conflicts) and not replace:
                n_conf = scalar(con, f"SELECT count(*) FROM _incoming i JOIN {table} t ON {on} WHERE {neq}")
                first = conflicts.iloc[0]
                raise DataError(
                    f"{name}: {n_conf} row(s) conflict with data already stored for {instrument} "
                    f"(first at {first[tcol]}); nothing was written. Use --replace to overwrite stored rows"
                )
            if replace and len(conflicts):
                con.execute(f"DELETE FROM {table} t USING _incoming i WHERE {on} AND ({neq})")
                present = int(scalar(con, f"SELECT count(*) FROM _incoming i JOIN {table} t ON {on}"))
            cols = ", ".join(frame.columns)
            con.execute(
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming i "
                f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {on})"
            )
            inserted = len(frame) - present
            if kind in ("bars", "funding", "open_interest", "depth"):
                exists = con.execute("SELECT 1 FROM instruments WHERE instrument = ?", [instrument]).fetchone()
                if not exists:
                    upsert_instrument(con, instrument, kind=instrument_kind or ikind, underlying=underlying or und,
                                      listing_date=frame[tcol].min() if kind == "bars" and len(frame) else None)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    finally:
        con.unregister("_incoming")
        con.close()
        del outer
    return inserted, present
