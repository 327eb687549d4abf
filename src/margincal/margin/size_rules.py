"""Closed-form size and open-interest margin rules published by venues.

All functions are vectorised (numpy broadcasting) and return fractions of
notional.

* :func:`sqrt_size_imf` -- FTX / Drift: ``IMF = max(base_imf, imf_factor * sqrt(size))``
  (size in base-asset units). Source: S. Bankman-Fried, 2021-10-06,
  https://twitter.com/SBF_FTX/status/1445905595933073410 ("Position initial
  margin fraction: max(Base IMF, IMF factor * sqrt(position open size))").
* :func:`linear_size_rate` -- Deribit standard-margin futures:
  ``rate = base_rate + rate_per_unit * size``. BTC: IM 2% + 0.005% per BTC
  (= 0.5% per 100 BTC), MM 1% + 0.005% per BTC; ETH: IM 2% + 0.0004% per ETH,
  MM 1% + 0.0004% per ETH, as documented at
  https://support.deribit.com/hc/en-us/articles/25944826427293-11-January-2022
  (in force from 2022-01-11; stored copy read 2026). Worked example on
  https://support.deribit.com/hc/en-us/articles/25944738177565-Linear-Perpetual :
  350 BTC -> 2% + 350 * 0.005% = 3.75%.
* :func:`oi_scaled_imf` -- dYdX v4 open-interest IMF ("OIMF"), documented at
  https://help.dydx.trade/en/articles/228341-open-interest-initial-margin-fraction ::

      scaling = (OI - lower_cap) / (upper_cap - lower_cap)
      IMF     = min(base_imf + max(scaling * (1 - base_imf), 0), 1)

  i.e. base IMF up to the lower cap, 100% from the upper cap, linear between.
  dYdX keeps the MMF fixed (``base_imf * maintenance_fraction``, "the MMF does
  not change"); :func:`oi_scaled_mmf` does that by default and scales with the
  effective IMF only when ``scale_with_oi=True``. A tier whose caps are both 0
  (dYdX's Large-Cap in the default genesis) is not OI-scaled.
* :func:`oi_caps_from_liquidity` -- this project's rule for setting the caps from
  liquidity (documented there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from margincal.errors import ConfigError


def _out(x: np.ndarray) -> Any:
    return float(x) if np.ndim(x) == 0 else x


def sqrt_size_imf(base_imf: float, imf_factor: float, size: ArrayLike) -> np.ndarray | float:
    """``max(base_imf, imf_factor * sqrt(|size|))`` capped at 1 (FTX / Drift)."""
    if not 0 < base_imf <= 1:
        raise ConfigError(f"base_imf is {base_imf}; it must be in (0, 1]")
    if imf_factor < 0:
        raise ConfigError(f"imf_factor is {imf_factor}; it must be >= 0")
    s = np.abs(np.asarray(size, dtype=float))
    return _out(np.minimum(np.maximum(base_imf, imf_factor * np.sqrt(s)), 1.0))


def linear_size_rate(size: ArrayLike, base_rate: float, rate_per_unit: float,
                     cap: float = 1.0) -> np.ndarray | float:
    """``base_rate + rate_per_unit * |size|`` capped at ``cap`` (Deribit futures).

    Deribit BTC: ``linear_size_rate(300, 0.02, 0.005 / 100)`` = 2% + 300 * 0.005% = 3.5%.
    """
    if not 0 < base_rate <= 1:
        raise ConfigError(f"base_rate is {base_rate}; it must be in (0, 1]")
    if rate_per_unit < 0:
        raise ConfigError(f"rate_per_unit is {rate_per_unit}; it must be >= 0")
    s = np.abs(np.asarray(size, dtype=float))
    return _out(np.minimum(base_rate + rate_per_unit * s, cap))


def oi_scaled_imf(base_imf: float, open_interest_notional: ArrayLike, lower_cap: float,
                  upper_cap: float) -> np.ndarray | float:
    """dYdX v4 open-interest IMF: base below ``lower_cap``, 1.0 from ``upper_cap``, linear between."""
    if not 0 < base_imf <= 1:
        raise ConfigError(f"base_imf is {base_imf}; it must be in (0, 1]")
    if lower_cap < 0 or upper_cap < 0:
        raise ConfigError(f"OI caps must be >= 0 (lower {lower_cap}, upper {upper_cap})")
    oi = np.abs(np.asarray(open_interest_notional, dtype=float))
    if upper_cap == 0 and lower_cap == 0:  # dYdX: OIMF does not apply to this tier
        return _out(np.full_like(oi, base_imf))
    if not upper_cap > lower_cap:
        raise ConfigError(f"upper_cap {upper_cap:g} must be above lower_cap {lower_cap:g}")
    scaling = (oi - lower_cap) / (upper_cap - lower_cap)
    return _out(np.minimum(base_imf + np.maximum(scaling * (1.0 - base_imf), 0.0), 1.0))


def oi_scaled_mmf(base_imf: float, maintenance_fraction: float, open_interest_notional: ArrayLike = 0.0,
                  lower_cap: float = 0.0, upper_cap: float = 0.0, *,
                  scale_with_oi: bool = False) -> np.ndarray | float:
    """Maintenance margin fraction: ``base_imf * maintenance_fraction`` (dYdX: fixed).

    With ``scale_with_oi=True`` it is ``oi_scaled_imf(...) * maintenance_fraction``
    instead (MM keeps its ratio to the effective IM as OI grows).
    """
    if not 0 < maintenance_fraction <= 1:
        raise ConfigError(f"maintenance_fraction is {maintenance_fraction}; it must be in (0, 1]")
    if scale_with_oi:
        return _out(np.asarray(oi_scaled_imf(base_imf, open_interest_notional, lower_cap, upper_cap))
                    * maintenance_fraction)
    oi = np.asarray(open_interest_notional, dtype=float)
    return _out(np.full_like(oi, base_imf * maintenance_fraction))


OI_LOWER_ADV_MULTIPLE = 1.0
OI_UPPER_ADV_MULTIPLE = 2.5


def oi_caps_from_liquidity(adv: float, *, k_lower: float = OI_LOWER_ADV_MULTIPLE,
                           k_upper: float = OI_UPPER_ADV_MULTIPLE) -> tuple[float, float]:
    """OI caps from average daily traded notional: ``(k_lower * ADV, k_upper * ADV)``.

    Rule (this project's, documented in docs/margin_calibration.md): open
    interest up to one day of traded notional (``k_lower = 1``) can be unwound
    within a one-day margin period of risk at a participation rate the square-root
    impact model prices in the liquidity add-on, so the base IMF applies; past
    ``k_upper = 2.5`` days of volume new positions must be fully collateralised.
    The ratio 2.5 is dYdX's own upper/lower cap ratio (Small-Cap 20M/50M, Mid-Cap
    40M/100M USDC in the default genesis of dydxprotocol/v4-chain,
    protocol/testing/genesis.sh). Both multiples are assumptions to be backtested,
    not published figures.
    """
    if not adv > 0:
        raise ConfigError(f"adv is {adv}; it must be > 0")
    if not 0 < k_lower < k_upper:
        raise ConfigError(f"need 0 < k_lower < k_upper, got {k_lower}, {k_upper}")
    return k_lower * adv, k_upper * adv
