"""Vectorised Black-76 pricing: prices, greeks and implied volatility (linear and inverse options)."""

from margincal.pricing.black76 import (
    Greeks,
    as_is_call,
    black76_greeks,
    black76_price,
    black76_price_reference,
)
from margincal.pricing.implied_vol import ImpliedVolResult, IVStatus, implied_vol

__all__ = [
    "Greeks",
    "IVStatus",
    "ImpliedVolResult",
    "as_is_call",
    "black76_greeks",
    "black76_price",
    "black76_price_reference",
    "implied_vol",
]
