"""Generates vol_gatheral_jacquier_svi_example.json.

Gatheral, J. and Jacquier, A. (2014), "Arbitrage-free SVI volatility surfaces", Quantitative Finance 14(1),
59-71, Section 3 (the example credited to Axel Vogt): raw SVI with
    a = -0.0410, b = 0.1331, rho = 0.3060, m = 0.3586, sigma = 0.4153, T = 1
is NOT free of butterfly arbitrage: the density function
    g(k) = (1 - k w'/(2w))^2 - w'^2/4 (1/w + 1/4) + w''/2
is negative on part of the k-axis (their Figure 2 shows g dipping below zero for k just under 1).

This script recomputes g on a grid with central finite differences of w (no margincal code) and stores the
interval where g < 0 and the minimum, so the test can compare the closed-form g of margincal against it.
"""

import json
import math
from pathlib import Path

a, b, rho, m, sigma = -0.0410, 0.1331, 0.3060, 0.3586, 0.4153


def w(k):
    return a + b * (rho * (k - m) + math.sqrt((k - m) ** 2 + sigma**2))


def g(k, h=1e-4):
    w0, wp, wm = w(k), w(k + h), w(k - h)
    w1 = (wp - wm) / (2 * h)
    w2 = (wp - 2 * w0 + wm) / h**2
    return (1 - k * w1 / (2 * w0)) ** 2 - w1**2 / 4 * (1 / w0 + 0.25) + w2 / 2


ks = [i / 1000 for i in range(-1500, 1501)]
gs = [g(k) for k in ks]
neg = [k for k, v in zip(ks, gs, strict=True) if v < 0]
i_min = min(range(len(gs)), key=gs.__getitem__)
out = {
    "source": "Gatheral & Jacquier (2014), Quant. Finance 14(1), Section 3 (Vogt example); g recomputed by finite differences",
    "params": {"a": a, "b": b, "rho": rho, "m": m, "sigma": sigma, "T": 1.0},
    "negative_g_interval": [min(neg), max(neg)],
    "g_min": gs[i_min],
    "k_at_g_min": ks[i_min],
}
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
