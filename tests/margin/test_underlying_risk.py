"""Issue 15 item 3: one tail-risk rate per underlying; products differ only by their own contract terms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from margincal import datasets
from margincal.config import CalibrationSettings
from margincal.errors import ConfigError
from margincal.margin.published import (
    UnderlyingRisk,
    published_curve_path,
    reference_series,
    underlying_of,
    underlying_risk,
)


def test_reference_is_the_most_granular_then_longest_series_of_the_coin():
    series = [("BTC-USDT", "1d", 3000), ("BTC-PERP", "1h", 58000), ("BTC-USDT", "1h", 76000),
              ("ETH-USDT", "1h", 90000), ("DOGE-USDT", "1d", 2200)]
    assert reference_series("BTC-PERP", series) == ("BTC-USDT", "1h")
    assert reference_series("BTC-USDT", series) == ("BTC-USDT", "1h")
    assert reference_series("DOGE-USDT", series) == ("DOGE-USDT", "1d")
    assert reference_series("XRP-USDT", series) is None
    assert underlying_of("BTC-PERP") == underlying_of("BTC-USDT") == "BTC"
    with pytest.raises(ConfigError, match="risk_basis"):
        CalibrationSettings(risk_basis="coin")


def test_alignment_uses_the_last_reference_bar_closed_by_the_product_close():
    idx = pd.date_range("2024-01-01", periods=48, freq="h", tz="UTC")
    u = UnderlyingRisk("BTC", "BTC-USDT", "1h", 1.0, (idx + pd.Timedelta(hours=1)).as_unit("ns").asi8,
                       np.arange(48, dtype=float) / 1000 + 0.01, np.full(48, 0.4))
    day = pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC")
    loss, h = u.at(day, 24.0)
    # the daily bar of 2024-01-01 closes at 2024-01-02 00:00: the hourly bar opened 23:00 (row 23) is the last
    # closed by then; one day = 24 reference bars, scaled with H = 0.4
    assert loss[0] == pytest.approx((0.01 + 23 / 1000) * 24 ** 0.4) and h[0] == 0.4
    assert loss[1] == pytest.approx((0.01 + 47 / 1000) * 24 ** 0.4)
    early, _ = u.at(pd.DatetimeIndex(["2023-12-31 22:00"], tz="UTC"), 1.0)  # closes before any reference bar
    assert np.isnan(early[0])


def test_spot_and_perpetual_share_the_tail_loss_and_differ_by_contract_terms():
    s = CalibrationSettings()
    ref = datasets.load_hourly("BTC", "spot")
    u = underlying_risk(ref, "BTC-USDT", "1h", s)
    perp = datasets.load_hourly("BTC", "perpetual")
    daily = datasets.load_daily("BTC")
    pp = published_curve_path(perp, "1h", s, funding=datasets.load_funding("BTC"), underlying=u)
    pd_ = published_curve_path(daily, "1d", s, underlying=u)
    assert pp.risk_source == pd_.risk_source == "BTC-USDT 1h"
    # the same instant (2024-03-01 00:00 closes both the daily bar of Feb 29 and the hourly bar of 23:00):
    # the tail loss over any horizon h is the same for spot and perpetual
    tp = int(np.flatnonzero(perp.index == pd.Timestamp("2024-02-29 23:00", tz="UTC"))[0])
    td = int(np.flatnonzero(daily.index == pd.Timestamp("2024-02-29", tz="UTC"))[0])
    for h in (1 / 60, 1.0, 7.5, 24.0, 100.0):
        lp = pp.loss_1bar[tp] * (h / 1.0) ** pp.exponent[tp]
        ld = pd_.loss_1bar[td] * (h / 24.0) ** pd_.exponent[td]
        assert lp == pytest.approx(ld, rel=1e-12)
    # with the product's funding removed and the same liquidity, the rates come out equal: only contract
    # terms (here the funding provision) and the product's own market liquidity make them differ
    nofund = published_curve_path(perp, "1h", s, underlying=u)
    assert np.all(pp.mm[tp] >= nofund.mm[tp]) and np.any(pp.mm_raw[tp] > nofund.mm_raw[tp])
    np.testing.assert_allclose(pp.mm_raw[tp] - nofund.mm_raw[tp],
                               pp.funding_per_event[tp] * pp.h_mm[tp] / 8.0, rtol=1e-9, atol=1e-15)
    # the product basis is the pre-item-3 rule: the perpetual's own fit
    own = published_curve_path(perp, "1h", dataclasses.replace(s, risk_basis="product"),
                               funding=datasets.load_funding("BTC"))
    assert own.risk_source is None and not np.allclose(own.loss_1bar[tp], pp.loss_1bar[tp])
    np.testing.assert_allclose(own.loss_1bar, pp.loss_product, equal_nan=True)


def test_calibrate_store_before_sees_only_data_known_then(tmp_path):
    """`monitor --calibrate` calibrates with `calibrate_store(..., before=T)`: the same rule as `run`
    (coin reference series, funding), and the result equals a calibration on a store that holds only the
    data known before T (no look-ahead through the reference series or funding)."""
    from margincal.data.store import open_store
    from margincal.margin.published import calibrate_store

    s = CalibrationSettings()
    t = pd.Timestamp("2022-11-01", tz="UTC")
    spot = datasets.load_hourly("BTC", "spot")
    perp = datasets.load_hourly("BTC", "perpetual")
    spot, perp = spot[spot.index >= t - pd.Timedelta(days=200)], perp[perp.index >= t - pd.Timedelta(days=200)]
    funding = datasets.load_funding("BTC")

    def _store(path, cut):
        with open_store(path) as con:
            for inst, bars in (("BTC-USDT", spot), ("BTC-PERP", perp)):
                b = bars if cut is None else bars[bars.index <= cut - pd.Timedelta(hours=1)]  # closed by cut
                df = b.reset_index().rename(columns={b.index.name or "index": "ts"})
                df["ts"] = df["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
                con.register("b", df[["ts", "open", "high", "low", "close", "volume"]])
                con.execute("INSERT INTO bars (instrument, timeframe, ts, open, high, low, close, volume) "
                            "SELECT ?, '1h', ts, open, high, low, close, volume FROM b", [inst])
                con.unregister("b")
            f = funding if cut is None else funding[funding.index < cut]
            fd = pd.DataFrame({"ts": f.index.tz_convert("UTC").tz_localize(None), "rate": f.to_numpy()})
            con.register("f", fd)
            con.execute("INSERT INTO funding (instrument, ts, rate) SELECT 'BTC-PERP', ts, rate FROM f")
            con.unregister("f")
        return path

    full, cut = _store(tmp_path / "full.duckdb", None), _store(tmp_path / "cut.duckdb", t)
    with open_store(full, read_only=True) as con:
        a = calibrate_store(con, [("BTC-PERP", "1h")], s, before=t)[0]
        later = calibrate_store(con, [("BTC-PERP", "1h")], s)[0]
    with open_store(cut, read_only=True) as con:
        b = calibrate_store(con, [("BTC-PERP", "1h")], s)[0]
    assert a.window_end == b.window_end and pd.Timestamp(a.window_end) < t
    assert a.im_rate == b.im_rate and a.mm_rate == b.mm_rate
    assert a.extra["params"].details == b.extra["params"].details
    assert pd.Timestamp(later.window_end) > t  # the full store does hold later data


def test_tail_window_days_bounds_the_fhs_memory_of_the_published_rule():
    from margincal.data.returns import log_returns
    from margincal.risk import Decay, make_model

    with pytest.raises(ConfigError, match="tail_window_days"):
        CalibrationSettings(tail_window_days=5)
    bars = datasets.load_daily("DOGE")
    s = dataclasses.replace(CalibrationSettings(risk_basis="product"), tail_window_days=365.0)
    p = published_curve_path(bars, "1d", s)
    r = log_returns(bars).to_numpy()
    ref = make_model("fhs", lam=Decay(per_day=s.ewma_lambda), window=365).fit_path(
        r, horizon=24.0, level=s.level, refit=1, bar_hours=24.0)["es"].to_numpy()
    ok = np.isfinite(p.loss_raw)
    np.testing.assert_allclose(p.loss_raw[ok], ref[ok], rtol=1e-12)
    every = published_curve_path(bars, "1d", dataclasses.replace(s, tail_window_days=None))
    assert not np.allclose(every.loss_raw[ok], p.loss_raw[ok])  # the window changes the tail
