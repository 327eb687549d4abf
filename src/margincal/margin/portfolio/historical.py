"""Historical portfolio margin: filtered historical simulation (FHS) ES across underlyings.

Scenarios
---------
For underlyings ``u = 1..U`` with daily (or any bar) log returns ``r_{t,u}``
on the dates where *all* of them have a price:

1. EWMA variance per underlying (:func:`margincal.vol.ewma.ewma_variance`,
   ``sigma_{t,u}`` uses data strictly before ``t``);
2. standardised residuals ``z_{t,u} = r_{t,u} / sigma_{t,u}``, kept as whole
   rows, so each scenario carries the cross-asset dependence of one real day;
3. scenario log return over the liquidation horizon of ``h`` bars:
   ``R_{k,u} = sigma_next_u * sum_{i<h} z_{k+i,u}`` (overlapping h-bar sums of
   the joint residual rows; ``sqrt(h)`` scaling of one bar when ``h`` is not a
   whole number or ``scaling="sqrt"``);
4. every instrument is revalued at ``F' = F exp(R_{k,u})`` with its implied
   vol unchanged (sticky-strike: the vol is not shocked in this method).

Margin
------
Losses ``L = -(positions @ M)`` per account and scenario; ``ES_level`` is the
Acerbi-Tasche expected shortfall (:mod:`margincal.risk.measures`). With
offset groups ``g`` (default: the underlying; instruments in one group always
net fully)::

    charge = offset * max(0, ES(sum_g L_g)) + (1 - offset) * sum_g max(0, ES(L_g))

``offset = 0`` is the sum of the group margins, ``offset = 1`` the full joint
ES. ES is sub-additive on a common scenario set, so the charge never exceeds
the sum of stand-alone charges for any ``offset`` in [0, 1].

Cross-group credit (default ``offset="stressed"``), in the manner of SPAN's
inter-commodity spread credits: the credit is set from the *stressed*
correlation (:func:`margincal.dependence.stressed_correlation`, the COVID,
LUNA and FTX windows) of the groups' underlyings, with a floor and a cap::

    offset = offset_cap * clip((rho_min - offset_floor) / (1 - offset_floor), 0, 1)

where ``rho_min`` is the lowest stressed correlation between underlyings of
different groups in the scenario set. Defaults: floor 0.5 (no credit below a
stressed correlation of 0.5), cap 0.8 (at most 80% credit, as SPAN caps its
spread credit rates below 100%); both are our assumptions
(docs/portfolio_margin.md). A full 100% offset only with ``offset=1.0``.
``IM = charge`` (no contingencies in this method), ``MM = mm_fraction * IM``.

Settlement currencies (``settlement_mode``, default ``"segregated"``, as the risk-matrix method and
Deribit's segregated portfolio margin): instruments are split by settlement currency (the coin for
inverse, coin-settled contracts; USD for linear ones) and each currency is margined on its own, with
the charge above computed per currency and summed; nothing offsets across currencies. Inverse rows
hold their **coin** P&L times today's forward, ``F0 (c1 - c0) = USD P&L / m`` at ``F1 = m F0``
(:func:`margincal.margin.portfolio.scenarios.revalue` with ``coin_measure``): the requirement in the
coin, in today's USD (divide by ``F0`` for coins). A long inverse perp of face ``N`` loses
``N (1/m - 1)``, 25% of face at ``m = 0.8`` where a USD measure shows 20%. ``settlement_mode="cross"``
keeps the former single USD segment (cross-collateral: inverse P&L in USD at the scenario price,
netting across currencies). The stressed cross-group credit is the one of all the book's groups
(the lowest stressed correlation among them), applied inside each currency.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from margincal import datasets
from margincal.dependence.correlation import STRESS_WINDOWS, stressed_correlation
from margincal.errors import (
    CalibrationError,
    ConfigError,
    DataError,
    MargincalWarning,
    check_choice,
    check_fitted,
    check_int,
    check_number,
)
from margincal.margin.portfolio.engine import PortfolioMarginResult, portfolio_margin
from margincal.margin.portfolio.instruments import InstrumentSpec, MarketState
from margincal.margin.portfolio.scenarios import (
    SETTLEMENT_MODES,
    ScenarioPnL,
    _contingency_inputs,
    check_specs,
    instrument_arrays,
    offset_groups_of,
    revalue,
    settlement_of,
)
from margincal.vol.ewma import ewma_variance


class GapWarning(MargincalWarning):
    """Returns span a gap of more than one bar in the joint price history."""


def load_daily_closes(underlyings: Sequence[str], data_dir: str | Path | None = None) -> pd.DataFrame:
    """Daily closes of the bundled real data (:func:`margincal.datasets.load_daily`; ``data_dir``: another folder of ``<coin>_daily.csv`` files), one column per underlying.

    Index: UTC dates; only dates present for every underlying are kept.
    """
    cols = {}
    for u in underlyings:
        try:
            df = datasets.load_daily(u, data_dir)
        except DataError as exc:
            raise DataError(f"no daily data for {u}: {exc}") from None
        cols[u] = df["close"].astype(float)
    return pd.DataFrame(cols).dropna()


def _overlapping_sums_2d(x: np.ndarray, h: int) -> np.ndarray:
    if h <= 1:
        return x.copy()
    c = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    return c[h:] - c[:-h]


class HistoricalPortfolioMargin:
    """FHS expected-shortfall portfolio margin across underlyings (module doc).

    Parameters
    ----------
    level : ES confidence (0.99).
    horizon_hours : liquidation horizon in hours (24).
    lam : EWMA decay (0.94, RiskMetrics daily).
    offset : cross-group offset fraction in [0, 1] (1 = full joint ES), or "stressed" (module doc).
    offset_floor, offset_cap : stressed-correlation floor and credit cap of ``offset="stressed"``.
    mm_fraction : MM as a fraction of IM (0.5).
    window : keep only the last ``window`` residual rows (None = all).
    scaling : "direct" (overlapping h-bar sums) or "sqrt".
    seed : returns used to seed the EWMA (their residuals are dropped).
    settlement_mode : "segregated" (each settlement currency margined on its own, inverse rows in coin;
        default) or "cross" (one USD segment); module doc.

    Attributes after ``fit(prices)``: ``underlyings_``, ``bar_hours_``,
    ``residuals_`` (DataFrame of joint standardised residuals),
    ``sigma_next_`` (Series, one-bar vol forecast), ``scenario_returns_``
    (ndarray scenarios x underlyings, horizon log returns), ``scenario_dates_``,
    ``last_prices_``, ``window_``.
    """

    def __init__(self, *, level: float = 0.99, horizon_hours: float = 24.0, lam: float = 0.94,
                 offset: float | str = "stressed", mm_fraction: float = 0.5, window: int | None = None,
                 scaling: str = "direct", seed: int = 30, offset_floor: float = 0.5,
                 offset_cap: float = 0.8, settlement_mode: str = "segregated") -> None:
        self.level = level
        self.horizon_hours = horizon_hours
        self.lam = lam
        self.offset = offset
        self.mm_fraction = mm_fraction
        self.window = window
        self.scaling = scaling
        self.seed = seed
        self.offset_floor = offset_floor
        self.offset_cap = offset_cap
        self.settlement_mode = settlement_mode

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_")}

    def _validate(self) -> None:
        check_number("level", self.level, low=0.5, high=1.0)
        check_number("horizon_hours", self.horizon_hours, low=0.0)
        check_number("lam", self.lam, low=0.0, high=1.0)
        check_int("window", self.window, 1, allow_none=True)
        check_int("seed", self.seed, 0)
        check_number("offset_floor", self.offset_floor, low=0.0, high=1.0, low_open=False)
        check_number("offset_cap", self.offset_cap, low=0.0, high=1.0, low_open=False, high_open=False)
        if self.offset != "stressed" and not (isinstance(self.offset, (int, float)) and not isinstance(self.offset, bool)
                                              and 0.0 <= self.offset <= 1.0):
            raise ConfigError(f"offset is {self.offset!r}; it must be in [0, 1] (0 = sum of groups, 1 = joint) "
                              "or 'stressed'")
        check_number("mm_fraction", self.mm_fraction, low=0.0, high=1.0, high_open=False)
        check_choice("scaling", self.scaling, ("direct", "sqrt"))
        check_choice("settlement_mode", self.settlement_mode, SETTLEMENT_MODES)

    def fit(self, prices: pd.DataFrame, bar_hours: float | None = None) -> HistoricalPortfolioMargin:
        """Learn the joint scenarios from close prices (columns = underlyings, DatetimeIndex)."""
        self._validate()
        if not isinstance(prices, pd.DataFrame) or prices.shape[1] == 0:
            raise DataError("prices must be a DataFrame with one column of closes per underlying")
        if not isinstance(prices.index, pd.DatetimeIndex):
            raise DataError("prices must have a DatetimeIndex (UTC)")
        px = prices.sort_index().dropna()
        vals = px.to_numpy(dtype=float)
        if np.any(vals <= 0) or not np.all(np.isfinite(vals)):
            bad = np.argwhere(~(vals > 0) | ~np.isfinite(vals))[0]
            raise DataError(f"prices[{px.index[bad[0]]}, {px.columns[bad[1]]}] is {vals[tuple(bad)]}; "
                            "prices must be finite and > 0")
        if len(px) < self.seed + 30:
            raise CalibrationError(f"need at least {self.seed + 30} joint prices, got {len(px)}")
        steps = (px.index[1:] - px.index[:-1]).total_seconds().to_numpy() / 3600.0  # unit-safe (ns/us/s)
        if bar_hours is None:
            bar_hours = float(np.median(steps))
        gaps = int(np.sum(steps > 1.5 * bar_hours))
        if gaps:
            warnings.warn(f"{gaps} of {steps.size} returns span more than one bar (missing dates in the joint "
                          "history); they are kept as multi-bar returns", GapWarning, stacklevel=2)
        r = np.diff(np.log(vals), axis=0)
        sig = np.column_stack([np.sqrt(ewma_variance(r[:, u], self.lam, self.seed)) for u in range(r.shape[1])])
        z = r[self.seed:] / sig[:-1][self.seed:]
        dates = px.index[1:][self.seed:]
        if self.window:
            z, dates = z[-self.window:], dates[-self.window:]
        h = self.horizon_hours / bar_hours
        hi = round(h)
        if self.scaling == "direct" and abs(h - hi) < 1e-9 and hi >= 1:
            if hi > z.shape[0]:
                raise CalibrationError(f"horizon of {hi} bars exceeds the {z.shape[0]} residual rows")
            zsum = _overlapping_sums_2d(z, hi)
            sdates = dates[hi - 1:]
        else:
            zsum = z * math.sqrt(h)
            sdates = dates
        self.underlyings_ = tuple(str(c) for c in px.columns)
        self.bar_hours_ = float(bar_hours)
        self.residuals_ = pd.DataFrame(z, index=dates, columns=list(self.underlyings_))
        self.sigma_next_ = pd.Series(sig[-1], index=list(self.underlyings_), name="sigma_next")
        self.scenario_returns_ = zsum * sig[-1][None, :]
        self.scenario_dates_ = sdates
        self.last_prices_ = px.iloc[-1]
        self.window_ = (str(px.index[0]), str(px.index[-1]))
        self.stressed_corr_ = None
        if self.offset == "stressed" and px.shape[1] > 1:
            rets = pd.DataFrame(r, index=px.index[1:], columns=list(self.underlyings_))
            self.stressed_corr_ = stressed_correlation(rets).matrix
        return self

    def offset_for(self, specs: Sequence[InstrumentSpec]) -> tuple[float, dict[str, Any]]:
        """Cross-group offset fraction for these instruments and how it was set (module doc)."""
        if self.offset != "stressed":
            return float(self.offset), {"offset_rule": "fixed"}
        groups: dict[str, set[str]] = {}
        for s in specs:
            groups.setdefault(str(s.offset_group), set()).add(s.underlying)
        names = sorted(groups)
        pairs = [(a, b) for i, ga in enumerate(names) for gb in names[i + 1:] for a in groups[ga] for b in groups[gb]
                 if a != b]
        if not pairs:
            return 1.0, {"offset_rule": "stressed", "rho_min": None, "note": "one group: nothing to offset"}
        if self.stressed_corr_ is None:
            raise CalibrationError("offset='stressed' needs at least two underlyings in fit(prices)")
        c = self.stressed_corr_
        rho = min(float(c.loc[a, b]) for a, b in pairs)
        credit = self.offset_cap * min(1.0, max(0.0, (rho - self.offset_floor) / (1.0 - self.offset_floor)))
        return credit, {"offset_rule": "stressed", "rho_min": rho, "offset_floor": self.offset_floor,
                        "offset_cap": self.offset_cap, "stress_windows": list(STRESS_WINDOWS)}

    def _check_fitted(self) -> None:
        check_fitted(self, "scenario_returns_", "fit(prices)")

    def default_market(self, **kwargs: Any) -> MarketState:
        """Market at the last fitted date: spot = last closes (kwargs go to :class:`MarketState`)."""
        self._check_fitted()
        return MarketState(spot={u: float(v) for u, v in self.last_prices_.items()},
                           valuation_time=kwargs.pop("valuation_time", self.last_prices_.name), **kwargs)

    def scenario_pnl(self, specs: Sequence[InstrumentSpec], market: MarketState | None = None) -> ScenarioPnL:
        """Revalue every instrument in every historical scenario (instruments x scenarios)."""
        self._check_fitted()
        specs = check_specs(specs)
        held = [s.name for s in specs if s.is_base]
        if held:
            raise ConfigError(f"{held[0]} is base-asset collateral (a spot holding); the historical method margins "
                              "derivatives only (the derive risk-matrix preset revalues base collateral)")
        mkt = market if market is not None else self.default_market()
        col = {u: k for k, u in enumerate(self.underlyings_)}
        missing = sorted({s.underlying for s in specs} - set(col))
        if missing:
            raise DataError(f"no price history for {', '.join(missing)}; fit() on prices with those columns")
        arr = instrument_arrays(specs, mkt)
        R = self.scenario_returns_
        und_idx = np.array([col[s.underlying] for s in specs])
        spot_mult = np.exp(R[:, und_idx].T)  # instruments x scenarios
        segregated = self.settlement_mode == "segregated"
        pnl = revalue(arr, spot_mult, np.ones_like(spot_mult), rate=mkt.rate, coin_measure=segregated)
        dates = [
            f"{d:%Y-%m-%d} (" + ", ".join(f"{u} {math.expm1(x) * 100:+.1f}%" for u, x in zip(self.underlyings_, row,
                                                                                           strict=True)) + ")"
            for d, row in zip(self.scenario_dates_, R, strict=True)
        ]
        n_sc = R.shape[0]
        settle = [settlement_of(s) if segregated else "USD" for s in specs]
        currencies = sorted(set(settle), key=lambda c: (c != "USD", c))  # USD-settled first
        segments: tuple[tuple[str, int, int], ...]
        if currencies == ["USD"]:
            matrix, labels, segments = pnl, tuple(dates), (("joint", 0, n_sc),)
        else:  # one block of scenario columns per settlement currency; a row is zero outside its own block
            matrix = np.zeros((len(specs), n_sc * len(currencies)))
            lab: list[str] = []
            seg: list[tuple[str, int, int]] = []
            for k, c in enumerate(currencies):
                rows = np.array([x == c for x in settle])
                matrix[rows, k * n_sc:(k + 1) * n_sc] = pnl[rows]
                lab += [f"{c}-settled: {d}" for d in dates]
                seg.append((f"{c}-settled", k * n_sc, (k + 1) * n_sc))
            labels, segments = tuple(lab), tuple(seg)
        matrix.setflags(write=False)
        groups, gcharge, fcharge = _contingency_inputs(specs, mkt, 0.0, 0.0)
        og, og_names = offset_groups_of(specs)
        offset, offset_info = self.offset_for(specs)
        return ScenarioPnL(
            matrix=matrix,
            instruments=tuple(s.name for s in specs),
            labels=labels,
            weights=np.ones(matrix.shape[1]),
            segments=segments,
            specs=specs,
            method="historical",
            params={"model": "fhs_es", **self.get_params(), "window": self.window_, "bar_hours": self.bar_hours_,
                    "sigma_next": self.sigma_next_.to_dict(), "valuation_time": mkt.valuation_time.isoformat(),
                    "settlement_currencies": currencies,
                    "offset_used": offset, **offset_info},
            spot={u: mkt.spot_of(u) for u in sorted({s.underlying for s in specs})},
            option_groups=groups,
            option_group_charge=gcharge,
            futures_charge=fcharge,
            offset_groups=og,
            offset_group_names=og_names,
            im_multiplier=1.0,
            mm_fraction=self.mm_fraction,
            level=self.level,
            offset=offset,
        )

    def margin(self, positions: Any, pnl: ScenarioPnL, **kwargs: Any) -> PortfolioMarginResult:
        return portfolio_margin(positions, pnl, **kwargs)


__all__ = ["GapWarning", "HistoricalPortfolioMargin", "load_daily_closes"]
