"""Margin v2 (issue 15): the published rule against a computation written out independently here.

References: Corwin and Schultz (2012), J. Finance 67(2), eqs. (14), (18)-(20) for the spread; the
cumulative-deduction bracket rule of Binance's published BTCUSDT table (tests/reference/
binance_btcusdt_brackets.md); FHS as in tests/test_pipeline.py (pandas EWM, sorted residual tail).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from margincal import datasets
from margincal.config import CalibrationSettings
from margincal.margin.apc import apc_config, apply_apc_reference
from margincal.margin.published import calibrate_bars, published_curve_path


def _fhs_es(r: np.ndarray, lam: float, level: float, seed: int = 30) -> float:
    s0 = np.mean(r[:seed] ** 2)
    var = pd.Series(np.concatenate([[s0], r**2])).ewm(alpha=1 - lam, adjust=False).mean().to_numpy()
    sig = np.sqrt(var)
    scen = sig[-1] * (r[seed:] / sig[seed:-1])
    out = []
    for loss in (-np.expm1(scen), np.expm1(scen)):
        srt = np.sort(loss)[::-1]
        n_tail = len(srt) * (1 - level)
        k = int(math.floor(n_tail + 1e-12))
        out.append((srt[:k].sum() + (n_tail - k) * srt[k]) / n_tail)
    return max(out)


def _cs_spread(h: np.ndarray, lo: np.ndarray) -> np.ndarray:
    out = []
    k = 3 - 2 * math.sqrt(2)
    for t in range(1, len(h)):
        beta = math.log(h[t - 1] / lo[t - 1]) ** 2 + math.log(h[t] / lo[t]) ** 2
        gamma = math.log(max(h[t - 1], h[t]) / min(lo[t - 1], lo[t])) ** 2
        alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / k - math.sqrt(gamma / k)
        out.append(max(2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha)), 0.0))
    return np.array(out)


def _ceil(x: float, inc: float = 0.0005) -> float:
    return math.ceil(x / inc - 1e-9) * inc


@pytest.fixture(scope="module")
def eth():
    return datasets.load_daily("ETH")


def test_v2_published_rates_match_an_independent_computation(eth):
    s = CalibrationSettings()
    cal = calibrate_bars(eth, "ETH-USDT", "1d", s)
    d = cal.extra["params"].details
    r = np.diff(np.log(eth["close"].to_numpy()))
    # the raw one-day ES is textbook FHS on all the data
    assert d["es_raw"] == pytest.approx(_fhs_es(r, 0.94, 0.99), rel=1e-10)
    # emir_a on the causal ES path (the APC loop is checked against its own reference elsewhere)
    p = published_curve_path(eth, "1d", s)
    raw = p.loss_raw[np.isfinite(p.loss_raw)]
    es = float(apply_apc_reference(raw, apc_config("emir_a"))[-1])
    assert cal.es == pytest.approx(es, rel=1e-12)
    # liquidity over the last 30 days, written out
    last = eth.iloc[-30:]
    adv = float(last["volume_quote"].mean())
    sigma = float(np.std(r[-30:], ddof=1))
    hs = 0.5 * float(np.mean(_cs_spread(eth["high"].to_numpy()[-31:], eth["low"].to_numpy()[-31:])))
    n = s.reference_size
    h_mm = 1 / 60 + n / (0.10 * adv / 24)
    h_im = 1 / 60 + h_mm
    depth = (89e6 / 10.6e9) * adv * (2 / 89)
    stressed = 0.01 * n / (2 * depth) if n <= depth else 0.01 * (1 - depth / (2 * n))
    cost = hs + 0.0005 + max(sigma * math.sqrt(n / adv), stressed)
    e = d["scaling_exponent"]
    mm_raw = es * (h_mm / 24) ** e + cost
    im_raw = max(es * (h_im / 24) ** e + cost, 1.5 * mm_raw)
    assert d["horizon_hours"] == pytest.approx(h_mm, rel=1e-9)
    assert cal.mm_rate == pytest.approx(_ceil(mm_raw))
    assert cal.im_rate == pytest.approx(_ceil(im_raw))
    assert 0.3 < e < 0.7


def test_v2_brackets_are_in_cumulative_deduction_form_and_tighten_with_size(eth):
    cal = calibrate_bars(eth, "ETH-USDT", "1d", CalibrationSettings())
    tiers = cal.extra["params"].details["tiers"]
    assert len(tiers) == len(CalibrationSettings().curve_caps)
    amount = 0.0
    for k, t in enumerate(tiers):
        assert t["max_leverage"] == int(t["max_leverage"]) >= 1
        assert t["mm_rate"] <= 1 / t["max_leverage"] + 1e-12
        if k:
            prev = tiers[k - 1]
            amount += t["lower"] * (t["mm_rate"] - prev["mm_rate"])
            assert t["max_leverage"] <= prev["max_leverage"] and t["mm_rate"] >= prev["mm_rate"]
            # MM continuous at the boundary
            assert t["lower"] * prev["mm_rate"] - prev["maintenance_amount"] == pytest.approx(
                t["lower"] * t["mm_rate"] - t["maintenance_amount"])
        assert t["maintenance_amount"] == pytest.approx(amount)
    assert tiers[0]["max_leverage"] > tiers[-1]["max_leverage"]


def test_v2_close_out_horizon_grows_with_size_and_has_the_floor(eth):
    p = published_curve_path(eth, "1d", CalibrationSettings())
    assert np.all(np.diff(p.h_mm[-1]) > 0)
    assert p.h_mm[-1, 0] > 1 / 60 and p.h_im[-1, 0] - p.h_mm[-1, 0] == pytest.approx(1 / 60)
    assert np.all(p.im[-1] >= p.mm[-1]) and np.all(np.diff(p.mm[-1]) >= 0)
