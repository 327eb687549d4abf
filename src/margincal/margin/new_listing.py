"""Margin for newly listed instruments: proxy from a reference asset, blended with own history.

A new listing has little or no price history, so its own tail estimate is
either missing or unreliable. The rate is built from three parts (daily bars;
all rates fractions of notional):

1. **Proxy** from a reference asset R (BTC by default) through a one-factor model
   ``r_asset = beta * r_R + e``::

       beta       = (k * beta_ols + k_beta * beta_prior) / (k + k_beta)        (k = overlapping returns)
       e          = r_asset - beta * r_R                                   (residual with the SHRUNK beta,
                                                                            so variance the shrinkage takes
                                                                            from the factor stays in e)
       sigma_e^2  = (k * mean(e^2) + k_idio * (idio_prior_ratio * sigma_R)^2) / (k + k_idio)
       sigma_px   = sqrt(beta^2 * sigma_R^2 + sigma_e^2)
       ES_proxy   = m_R * sigma_px * sqrt(h)

   ``sigma_R`` is R's EWMA volatility forecast and ``m_R = ES_R / sigma_R`` the
   tail multiple of R's filtered-historical-simulation forecast (R's tail shape
   carried over to the new asset). With no history (k = 0) the priors give
   ``beta = 1``, ``sigma_e = sigma_R``: the asset is treated as 1.41 times as
   volatile as the reference.
2. **Own** estimate once ``n >= own_min_obs``: ``ES_own = m_R * sigma_own * sqrt(h)``
   with ``sigma_own`` an EWMA (lambda 0.94) of the asset's own returns seeded
   at the proxy variance (so it starts at the proxy and moves away as data
   arrives).
3. **Credibility blend and decaying add-on** (n = own returns available)::

       Z      = n / (n + k_cred)                     (k_cred = 60 days: Z = 0.5 after 60 days)
       a(n)   = addon0 * 0.5 ** (n / half_life)      (addon0 = 0.5, half-life 30 days)
       IM_raw = (Z * ES_own + (1 - Z) * ES_proxy) * (1 + a(n))
       MM_raw = mm_fraction * IM_raw

   The add-on is +50% on listing day, +25% after 30 days, +6% after 90 days:
   it pays for model risk while beta and volatility are still guesses. All
   constants are parameters of :class:`ProxyCalibrator`.

:func:`validate_new_listings` replays this on the bundled daily coins,
pretending each was listed on several dates, and counts next-day breaches;
``python -m margincal.margin.new_listing`` prints the table of
docs/new_listings.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal, stats

from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.margin.liquidity import index_bar_hours
from margincal.margin.rounding import ceil_to_increment
from margincal.risk.models import FilteredHistoricalSimulation
from margincal.units import Decay

VALIDATION_ASSETS = ("sol", "doge", "bnb", "ada", "trx", "bch", "xrp", "ltc", "eth")


@dataclass(frozen=True)
class ReferenceTail:
    """What the proxy needs from the reference asset at one date."""

    es_multiple: float
    sigma_next: float
    bar_hours: float
    window_end: str | None
    n_obs: int


def reference_tail(reference_returns: pd.Series, *, level: float = 0.99, horizon_hours: float = 24.0,
                   lam: float = 0.94) -> ReferenceTail:
    """FHS (EWMA lambda ``lam``) on the reference: tail multiple ``ES / sigma`` and one-bar sigma forecast."""
    bar_hours = None
    if isinstance(reference_returns.index, pd.DatetimeIndex) and len(reference_returns) > 1:
        bar_hours = index_bar_hours(reference_returns.index)
    model = FilteredHistoricalSimulation(lam=Decay(per_bar=lam)).fit(reference_returns, bar_hours=bar_hours)
    fc = model.forecast(horizon_hours, level)
    if not fc.sigma > 0:
        raise CalibrationError("reference volatility forecast is 0; cannot build a proxy")
    return ReferenceTail(es_multiple=fc.es / fc.sigma, sigma_next=model.sigma_next_, bar_hours=model.bar_hours_,
                         window_end=fc.window_end, n_obs=fc.n_obs)


@dataclass(frozen=True)
class NewListingMargin:
    """Margin of a new listing with the pieces that produced it (rates are fractions of notional)."""

    instrument: str | None
    im_rate: float
    mm_rate: float
    im_raw: float
    proxy_es: float
    own_es: float
    credibility: float
    addon_factor: float
    beta: float
    idio_sigma: float
    proxy_sigma: float
    own_sigma: float
    n_obs: int
    reference: str | None
    provenance: dict[str, Any] = field(default_factory=dict)


class ProxyCalibrator:
    """Estimator for new listings (see module doc). ``fit(asset_returns, reference_returns)`` -> ``result_``."""

    def __init__(self, *, level: float = 0.99, horizon_hours: float = 24.0, lam: float = 0.94,
                 credibility_k: float = 60.0, beta_prior: float = 1.0, beta_k: float = 20.0,
                 idio_prior_ratio: float = 1.0, idio_k: float = 20.0, own_min_obs: int = 10,
                 addon0: float = 0.5, addon_half_life: float = 30.0, mm_fraction: float = 0.5,
                 rounding: float = 0.0005, window: int = 250) -> None:
        self.level = level
        self.horizon_hours = horizon_hours
        self.lam = lam
        self.credibility_k = credibility_k
        self.beta_prior = beta_prior
        self.beta_k = beta_k
        self.idio_prior_ratio = idio_prior_ratio
        self.idio_k = idio_k
        self.own_min_obs = own_min_obs
        self.addon0 = addon0
        self.addon_half_life = addon_half_life
        self.mm_fraction = mm_fraction
        self.rounding = rounding
        self.window = window

    def _validate(self) -> None:
        if not 0.5 < self.level < 1:
            raise ConfigError(f"level is {self.level}; it must be in (0.5, 1)")
        for name in ("credibility_k", "beta_k", "idio_k", "addon_half_life"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} is {getattr(self, name)}; it must be > 0")
        if self.addon0 < 0 or self.idio_prior_ratio < 0:
            raise ConfigError("addon0 and idio_prior_ratio must be >= 0")
        if not 0 < self.mm_fraction <= 1:
            raise ConfigError(f"mm_fraction is {self.mm_fraction}; it must be in (0, 1]")
        if not 0 < self.lam < 1:
            raise ConfigError(f"lam is {self.lam}; it must be in (0, 1)")

    def fit(self, asset_returns: pd.Series | None, reference_returns: pd.Series, *,
            reference: ReferenceTail | None = None) -> ProxyCalibrator:
        """Calibrate from the asset's own log returns (may be empty) and the reference's."""
        self._validate()
        a = pd.Series(dtype=float) if asset_returns is None else asset_returns
        if not isinstance(a, pd.Series) or not isinstance(reference_returns, pd.Series):
            raise DataError("asset_returns and reference_returns must be pandas Series of log returns")
        if a.size and not np.all(np.isfinite(a.to_numpy(float))):
            raise DataError("asset_returns has a NaN or infinite value")
        ref = reference or reference_tail(reference_returns, level=self.level, horizon_hours=self.horizon_hours,
                                          lam=self.lam)
        h = self.horizon_hours / ref.bar_hours
        sig_r = ref.sigma_next
        a = a.iloc[-self.window:] if self.window else a
        n = int(a.size)
        rx = reference_returns.reindex(a.index).to_numpy(float) if n else np.empty(0)
        ok = np.isfinite(rx)
        k = int(ok.sum())
        if k >= 3:
            x, y = rx[ok], a.to_numpy(float)[ok]
            vx = float(np.mean(x * x))
            beta_ols = float(np.mean(x * y) / vx) if vx > 0 else self.beta_prior
        else:
            x = y = np.empty(0)
            beta_ols = self.beta_prior
        beta = (k * beta_ols + self.beta_k * self.beta_prior) / (k + self.beta_k)
        resid2 = float(np.mean((y - beta * x) ** 2)) if k >= 3 else 0.0
        idio_prior = (self.idio_prior_ratio * sig_r) ** 2
        idio_var = (k * resid2 + self.idio_k * idio_prior) / (k + self.idio_k)
        proxy_sigma = math.sqrt(beta * beta * sig_r * sig_r + idio_var)
        proxy_es = ref.es_multiple * proxy_sigma * math.sqrt(h)
        if n >= self.own_min_obs:
            r2 = a.to_numpy(float) ** 2
            s0 = proxy_sigma ** 2
            v, _ = signal.lfilter([1.0 - self.lam], [1.0, -self.lam], r2, zi=[self.lam * s0])
            own_sigma = float(math.sqrt(v[-1]))
            own_es = ref.es_multiple * own_sigma * math.sqrt(h)
            z = n / (n + self.credibility_k)
        else:
            own_sigma, own_es, z = float("nan"), float("nan"), 0.0
        blended = proxy_es if z == 0 else z * own_es + (1 - z) * proxy_es
        addon = self.addon0 * 0.5 ** (n / self.addon_half_life)
        im_raw = min(blended * (1.0 + addon), 1.0)
        im = min(float(ceil_to_increment(im_raw, self.rounding)), 1.0)
        mm = min(float(ceil_to_increment(self.mm_fraction * im_raw, self.rounding)), im)
        self.reference_ = ref
        self.result_ = NewListingMargin(
            instrument=a.name if isinstance(a.name, str) else None, im_rate=im, mm_rate=mm, im_raw=im_raw,
            proxy_es=proxy_es, own_es=own_es, credibility=z, addon_factor=addon, beta=beta,
            idio_sigma=math.sqrt(idio_var), proxy_sigma=proxy_sigma, own_sigma=own_sigma, n_obs=n,
            reference=reference_returns.name if isinstance(reference_returns.name, str) else None,
            provenance={"method": "proxy+credibility", "params": self.get_params(), "n_overlap": k,
                        "beta_ols": beta_ols, "reference_window_end": ref.window_end,
                        "reference_es_multiple": ref.es_multiple, "reference_sigma": sig_r,
                        "own_window": (str(a.index[0]), str(a.index[-1])) if n else None,
                        "created_at": pd.Timestamp.now(tz="UTC").isoformat()},
        )
        return self

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_")}


def new_listing_margin(asset_returns: pd.Series | None, reference_returns: pd.Series,
                       **params: Any) -> NewListingMargin:
    """One-call form of :class:`ProxyCalibrator`."""
    return ProxyCalibrator(**params).fit(asset_returns, reference_returns).result_


# ------------------------------------------------------------------ validation


def expected_breach_rate(level: float = 0.99) -> float:
    """Next-day breach probability of a both-sides ES(level) margin if returns were normal.

    ``ES = phi(z) / (1 - level)`` standard deviations (z = normal quantile);
    a rate breached on either side is exceeded with probability ``2 * (1 - Phi(ES))``.
    For 0.99: ES = 2.665 sd and the rate is 2 * 0.00385 = 0.77%.
    """
    z = stats.norm.ppf(level)
    es = stats.norm.pdf(z) / (1.0 - level)
    return float(2.0 * stats.norm.sf(es))


def listing_dates(asset_index: pd.DatetimeIndex, reference_index: pd.DatetimeIndex, *, every_days: int = 180,
                  min_reference_days: int = 365, window: int = 90) -> list[pd.Timestamp]:
    """Pretend listing dates: from max(asset start, reference start + min_reference_days), every ``every_days``."""
    start = max(asset_index[0], reference_index[0] + pd.Timedelta(days=min_reference_days))
    last = asset_index[-1] - pd.Timedelta(days=window)
    out = []
    d = start
    while d <= last:
        out.append(d.normalize())
        d = d + pd.Timedelta(days=every_days)
    return out


def validate_new_listings(assets: Sequence[str] = VALIDATION_ASSETS, reference: str = "btc", *,
                          every_days: int = 180, windows: Sequence[int] = (30, 90), min_reference_days: int = 365,
                          naive_min_obs: int = 5, progress: Callable[[str], None] | None = None,
                          **params: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay new listings on the bundled daily coins; return (summary, per-day detail).

    For each asset and pretend listing date L, on day i = 1..max(windows) the
    margin for the return dated L+i is computed from data dated before L+i
    only: the asset's returns dated L+1..L+i-1 (n = i-1 own observations) and
    the reference's returns before L+i. A breach is a next-day loss of either
    a long (``1 - exp(r)``) or a short (``exp(r) - 1``) above the IM rate.
    The "naive" column is the same tail multiple on the asset's own EWMA
    volatility only (no proxy, no add-on), from ``naive_min_obs`` returns on.
    """
    from margincal.margin._bundled import daily_log_returns

    cal = ProxyCalibrator(**params)
    cal._validate()
    ref = daily_log_returns(reference)
    ref_cache: dict[pd.Timestamp, ReferenceTail] = {}
    rows: list[dict[str, Any]] = []
    wmax = max(windows)
    for asset in assets:
        if progress:
            progress(asset)
        ret = daily_log_returns(asset)
        for L in listing_dates(ret.index, ref.index, every_days=every_days, min_reference_days=min_reference_days,
                               window=wmax):
            for i in range(1, wmax + 1):
                t = L + pd.Timedelta(days=i)
                if t not in ret.index:
                    continue
                own = ret[(ret.index > L) & (ret.index < t)]
                if t not in ref_cache:
                    ref_cache[t] = reference_tail(ref[ref.index < t], level=cal.level,
                                                  horizon_hours=cal.horizon_hours, lam=cal.lam)
                rt = ref_cache[t]
                res = cal.fit(own, ref, reference=rt).result_
                r = float(ret.loc[t])
                loss = max(-math.expm1(r), math.expm1(r))
                naive = float("nan")
                if own.size >= naive_min_obs:
                    x = own.to_numpy(float)
                    s0 = float(np.mean(x[:naive_min_obs] ** 2))
                    v, _ = signal.lfilter([1.0 - cal.lam], [1.0, -cal.lam], x ** 2, zi=[cal.lam * s0])
                    h = cal.horizon_hours / rt.bar_hours
                    naive = float(ceil_to_increment(rt.es_multiple * math.sqrt(v[-1] * h), cal.rounding))
                rows.append({"asset": asset.upper(), "listing_date": L.date().isoformat(), "day": i,
                             "n_obs": res.n_obs, "im_rate": res.im_rate, "credibility": res.credibility,
                             "beta": res.beta, "loss": loss, "breach": loss > res.im_rate,
                             "naive_im": naive, "naive_breach": bool(loss > naive) if naive == naive else None})
    detail = pd.DataFrame(rows)
    if detail.empty:
        raise DataError("no listing dates fit the data; lower min_reference_days or every_days")
    expected = expected_breach_rate(cal.level)
    out = []
    for w in windows:
        sub = detail[detail["day"] <= w]
        for name, g in [*sub.groupby("asset", sort=True), ("ALL", sub)]:
            nb = g["naive_breach"].dropna().astype(bool)
            n, b = len(g), int(g["breach"].sum())
            out.append({
                "window_days": w, "asset": name, "listings": g["listing_date"].nunique() if name != "ALL"
                else g.groupby("asset")["listing_date"].nunique().sum(),
                "margin_days": n, "breaches": b, "breach_rate": b / n if n else float("nan"),
                "expected_rate": expected, "p_value_vs_1pct": float(stats.binomtest(b, n, 0.01,
                                                                                   alternative="greater").pvalue),
                "mean_im": float(g["im_rate"].mean()), "naive_days": int(nb.size),
                "naive_breaches": int(nb.sum()), "naive_breach_rate": float(nb.mean()) if nb.size else float("nan"),
                "naive_mean_im": float(g["naive_im"].mean()),
            })
    return pd.DataFrame(out), detail


def markdown_summary(df: pd.DataFrame) -> str:
    cols = ["window_days", "asset", "listings", "margin_days", "breaches", "breach_rate", "expected_rate",
            "p_value_vs_1pct", "mean_im", "naive_days", "naive_breaches", "naive_breach_rate", "naive_mean_im"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c in ("breach_rate", "expected_rate", "naive_breach_rate", "mean_im", "naive_mean_im"):
                cells.append(f"{100 * v:.2f}%")
            elif c == "p_value_vs_1pct":
                cells.append(f"{v:.3f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
