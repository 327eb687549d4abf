"""Reference Black-76 prices and greeks from QuantLib (independent implementation).

Source: QuantLib 1.44 (``pip install QuantLib==1.44``), functions
``ql.blackFormula(type, strike, forward, stdDev, discount)`` for prices and
``ql.BlackCalculator(PlainVanillaPayoff(type, strike), forward, stdDev, discount)``
for greeks: ``deltaForward()`` (dV/dF), ``gammaForward()`` (d2V/dF2),
``vega(T)`` (dV/dsigma) and ``theta(F, T)`` (dV/dt per year; with spot = forward
QuantLib's spot-based theta is the Black-76 theta at fixed forward).

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


if __name__ == "__main__":
    out = generate()
    print(f"{len(out)} reference points; first three:")
    for row in out[:3]:
        print(row)
