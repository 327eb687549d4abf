"""Reference Black-76 prices and greeks from QuantLib (independent implementation).

Source: QuantLib 1.44 (``pip install QuantLib==1.44``), functions
``ql.blackFormula(type, strike, forward, stdDev, discount)`` for prices and
``ql.BlackCalculator(PlainVanillaPayoff(type, strike), forward, stdDev, discount)``
for greeks: ``deltaForward()`` (dV/dF), ``gammaForward()`` (d2V/dF2),
``vega(T)`` (dV/dsigma) and ``theta(F, T)`` (dV/dt per year; with spot = forward
QuantLib's spot-based theta is the Black-76 theta at fixed forward).

:func:`generate_iv_grid` gives QuantLib ``blackFormula`` prices on a wider grid
for the implied-volatility tests (log-moneyness -5..5, 1 hour..10 years,
vol 1%..500%, prices from ~1e-300 up to within a few ulps of the upper
bound) together with QuantLib's own inversion
``ql.blackFormulaImpliedStdDev(type, K, F, price, 1.0, 0.0, guess, accuracy, maxIter)``
at ``accuracy = 1e-14`` (NaN where QuantLib raises).

The tests import :func:`generate` and compute the values at test time
(QuantLib is a test dependency). Run ``python tests/reference/quantlib_black76.py``
to print a few rows.
"""

from __future__ import annotations

import itertools
import math

FORWARDS = (100.0, 65000.0)
MONEYNESS = (0.5, 0.7, 0.85, 0.95, 1.0, 1.05, 1.2, 1.5, 2.0)  # K / F
VOLS = (0.05, 0.2, 0.5, 0.8, 1.5)
EXPIRIES = (1.0 / 365.0, 7.0 / 365.0, 30.0 / 365.0, 0.5, 2.0)  # years
RATES = (0.0, 0.05)


def grid() -> list[tuple[float, float, float, float, float, bool]]:
    """(F, K, T, sigma, r, is_call) for every grid point."""
    return [
        (f, f * m, t, v, r, c)
        for f, m, t, v, r, c in itertools.product(FORWARDS, MONEYNESS, EXPIRIES, VOLS, RATES, (True, False))
    ]


def generate() -> list[dict[str, float]]:
    """QuantLib price and greeks on :func:`grid` (one dict per point)."""
    import QuantLib as ql

    rows = []
    for f, k, t, v, r, c in grid():
        typ = ql.Option.Call if c else ql.Option.Put
        sd = v * math.sqrt(t)
        disc = math.exp(-r * t)
        calc = ql.BlackCalculator(ql.PlainVanillaPayoff(typ, k), f, sd, disc)
        rows.append(
            {
                "forward": f, "strike": k, "expiry": t, "vol": v, "rate": r, "is_call": c,
                "price": ql.blackFormula(typ, k, f, sd, disc),
                "delta": calc.deltaForward(),
                "gamma": calc.gammaForward(),
                "vega": calc.vega(t),
                "theta": calc.theta(f, t),
            }
        )
    return rows


IV_LOG_MONEYNESS = tuple(-5.0 + 0.25 * i for i in range(41))  # ln(K/F)
IV_EXPIRIES = (1.0 / (365.0 * 24.0), 1.0 / 365.0, 7.0 / 365.0, 30.0 / 365.0, 0.5, 2.0, 10.0)
IV_VOLS = (0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


def generate_iv_grid(forward: float = 100.0) -> list[dict[str, float]]:
    """QuantLib prices (undiscounted) and QuantLib implied vols on the implied-vol grid."""
    import QuantLib as ql

    rows = []
    for m, t, v, c in itertools.product(IV_LOG_MONEYNESS, IV_EXPIRIES, IV_VOLS, (True, False)):
        typ = ql.Option.Call if c else ql.Option.Put
        k = forward * math.exp(m)
        price = ql.blackFormula(typ, k, forward, v * math.sqrt(t), 1.0)
        try:
            ql_vol = ql.blackFormulaImpliedStdDev(typ, k, forward, price, 1.0, 0.0, ql.nullDouble(), 1e-14, 1000)
            ql_vol /= math.sqrt(t)
        except RuntimeError:
            ql_vol = math.nan
        vega = ql.BlackCalculator(ql.PlainVanillaPayoff(typ, k), forward, v * math.sqrt(t), 1.0).vega(t)
        rows.append({"forward": forward, "strike": k, "expiry": t, "vol": v, "is_call": c, "price": price,
                     "vega": vega, "ql_vol": ql_vol})
    return rows


if __name__ == "__main__":
    out = generate()
    print(f"{len(out)} reference points; first three:")
    for row in out[:3]:
        print(row)
