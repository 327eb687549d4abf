"""Signals: the edge trigger, and each kind firing (and not firing) on real or constructed data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from margincal.adjust.engine import MonitorEngine
from margincal.adjust.online import halflife_to_lambda
from margincal.adjust.policy import default_policy, load_policy
from margincal.adjust.signals import Signal, Trigger
from margincal.config import sample_data_dir
from margincal.data.feeds import BarEvent, DepthEvent, FundingEvent, OpenInterestEvent
from margincal.margin.params import InstrumentParams, ParameterSet

T0 = pd.Timestamp("2024-01-01", tz="UTC")
H = pd.Timedelta(hours=1)


def _signals(eng: MonitorEngine, events) -> list[Signal]:
    out = []
    for e in events:
        res = eng.process(e)
        if res:
            out += [x for x in res if isinstance(x, Signal)]
    return out


def _bars(inst: str, rets, vols=None, start=T0, spread=0.001) -> list[BarEvent]:
    p = 100.0
    out = []
    for i, r in enumerate(rets):
        o, c = p, p * math.exp(r)
        hi, lo = max(o, c) * (1 + spread), min(o, c) * (1 - spread)
        out.append(BarEvent(inst, start + i * H, o, hi, lo, c, 1000.0 if vols is None else float(vols[i]), "1h"))
        p = c
    return out


def test_trigger_fires_on_crossings_escalates_and_rearms():
    t = Trigger()
    seq = [1.0, 1.9, 2.0, 2.6, 2.7, 2.0, 1.5, 1.3, 1.9, 1.2]
    fired = [t.check(x, 1.8, 2.5, 1.4) for x in seq]
    #      below warn, cross warn, stay, escalate, stay, back to warn zone, still >= rearm, re-armed, fires again
    assert fired == [0, 1, 0, 2, 0, 0, 0, 0, 1, 0]
    assert t.check(math.nan, 1.8, 2.5, 1.4) == 0 and t.level == 0
    t2 = Trigger()
    assert [t2.observe(x, r) for x, r in [(1, False), (1, False), (0, False), (2, False), (0, True), (1, False)]] \
        == [1, 0, 0, 2, 0, 1]


def test_vol_regime_fires_when_the_ratio_crosses_on_the_ftx_week():
    df = pd.read_csv(sample_data_dir() / "btcusdt_perp_1h.csv.gz")
    df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
    df = df[(df["ts"] >= "2022-09-01") & (df["ts"] < "2022-11-15")].reset_index(drop=True)
    evs = [BarEvent("BTC-PERP", r.ts, r.open, r.high, r.low, r.close, r.volume, "1h") for r in df.itertuples()]
    eng = MonitorEngine(default_policy(), None, live_from="2022-11-01")
    sigs = [s for s in _signals(eng, evs) if s.kind == "vol_regime"]
    assert [s.severity for s in sigs[:2]] == ["warning", "critical"]
    first = sigs[0]
    # independent ratio: seeded EWMAs of squared returns with half-lives 24h and 720h
    r2 = np.diff(np.log(df["close"].to_numpy())) ** 2

    def ew(hl: float) -> np.ndarray:
        lam, k = halflife_to_lambda(hl), 24
        rest = pd.Series(np.r_[r2[:k].mean(), r2[k:]]).ewm(alpha=1 - lam, adjust=False).mean().to_numpy()
        return np.r_[pd.Series(r2[:k]).expanding().mean().to_numpy(), rest[1:]]

    ratio = np.sqrt(ew(24.0) / ew(720.0))
    i = int(np.flatnonzero((df["ts"] + H == first.ts).to_numpy())[0]) - 1  # index of the return that closed
    assert first.values["ratio"] == pytest.approx(ratio[i], rel=1e-12)
    assert ratio[i] >= 1.8 and ratio[i - 1] < 1.8  # fired on the crossing, not before
    live = (df["ts"] + H >= pd.Timestamp("2022-11-01", tz="UTC")).to_numpy()[1:]
    assert (ratio[:i][live[:i]] < 1.8).all()
    assert first.ts.strftime("%Y-%m-%d") == "2022-11-08"
    assert first.reason == (f"BTC-PERP 24h vol {100 * first.values['sigma_short_annual']:.0f}% annualised is "
                            f"{ratio[i]:.1f}x its 30-day level {100 * first.values['sigma_long_annual']:.0f}% "
                            "(threshold 1.8x)")
    assert first.threshold == 1.8 and sigs[1].threshold == 2.5


def test_volume_surge_z_score():
    rng = np.random.default_rng(3)
    n = 400
    vols = np.exp(rng.normal(np.log(1000), 0.2, n))
    vols[350] = 50_000.0
    evs = _bars("X-PERP", rng.normal(0, 0.002, n), vols)
    eng = MonitorEngine(default_policy(), None)
    sigs = [s for s in _signals(eng, evs) if s.kind == "volume_surge"]
    assert len(sigs) == 1 and sigs[0].ts == evs[350].available_at and sigs[0].severity == "critical"
    lv = np.log1p(vols)
    ew = pd.Series(lv[:350]).ewm(alpha=1 - halflife_to_lambda(168.0), adjust=False)
    z = (lv[350] - ew.mean().iloc[-1]) / math.sqrt(ew.var(bias=True).iloc[-1])
    assert sigs[0].values["z"] == pytest.approx(z, rel=1e-12) and z >= 6.0
    assert "50,000" in sigs[0].reason


def test_funding_extreme_absolute_and_z():
    t = pd.date_range("2024-01-01", periods=60, freq="8h", tz="UTC")
    rates = np.full(60, 1e-4)
    rates[::2] = 1.2e-4
    rates[40] = -0.0025  # below -0.2% per period: critical
    evs = [FundingEvent("X-PERP", ti, float(r)) for ti, r in zip(t, rates, strict=True)]
    sigs = [s for s in _signals(MonitorEngine(default_policy(), None), evs) if s.kind == "funding_extreme"]
    assert len(sigs) == 1 and sigs[0].severity == "critical" and sigs[0].ts == t[40]
    assert sigs[0].values["rate"] == -0.0025 and sigs[0].threshold == 0.002
    assert "-0.2500% per period" in sigs[0].reason


def test_oi_surge_on_log_change():
    t = pd.date_range("2024-01-01", periods=40, freq="1D", tz="UTC")
    ch = np.r_[0.0, np.tile([0.01, -0.01], 20)][:40]
    ch[30] = math.log(0.75)  # OI falls 25% in a day
    oi = 1e9 * np.exp(np.cumsum(ch))
    evs = [OpenInterestEvent("X-PERP", ti, float(v)) for ti, v in zip(t, oi, strict=True)]
    sigs = [s for s in _signals(MonitorEngine(default_policy(), None), evs) if s.kind == "oi_surge"]
    assert len(sigs) == 1 and sigs[0].ts == t[30]
    assert sigs[0].values["log_change"] == pytest.approx(math.log(0.75), rel=1e-12)
    assert sigs[0].values["z"] < -5 and sigs[0].severity == "critical"
    assert "-25.0%" in sigs[0].reason


def test_liquidity_drop_from_depth_and_spread():
    evs = []
    for i in range(60):
        size = 1.0 if i != 45 else 0.3  # depth falls 70% at i=45
        gap = 0.5 if i != 52 else 2.0  # spread 4x at i=52
        evs.append(DepthEvent("X-PERP", T0 + i * pd.Timedelta(minutes=1),
                              bids=((100.0 - gap / 2, size), (99.9 - gap / 2, size)),
                              asks=((100.0 + gap / 2, size), (100.1 + gap / 2, size))))
    sigs = [s for s in _signals(MonitorEngine(default_policy(), None), evs) if s.kind == "liquidity_drop"]
    depth_sig = [s for s in sigs if "depth" in s.values]
    spread_sig = [s for s in sigs if "spread_bps" in s.values]
    assert len(depth_sig) == 1 and depth_sig[0].ts == evs[45].ts and depth_sig[0].severity == "warning"
    assert depth_sig[0].values["drop"] == pytest.approx(0.7, rel=1e-9)  # 30% of the typical depth is left
    assert len(spread_sig) == 1 and spread_sig[0].ts == evs[52].ts
    assert spread_sig[0].values["ratio"] == pytest.approx(4.0, rel=1e-9) and spread_sig[0].severity == "critical"


def test_breach_cluster_counts_moves_beyond_the_margin():
    rets = np.full(24 * 20, 0.0)
    for day in (10, 13, 17):  # three 8% moves (> 5% IM) within 10 days
        rets[24 * day] = 0.08 if day != 13 else -0.08
    evs = _bars("X-PERP", rets)
    p = ParameterSet({"X-PERP": InstrumentParams("X-PERP", 0.05, 0.025, {})}, version=1)
    pol = load_policy(None, overrides={"approval": {"decrease": True}, "target": {"im_cap": 0.05,
                                                                                   "im_floor": 0.05}})
    sigs = [s for s in _signals(MonitorEngine(pol, p), evs) if s.kind == "breach_cluster"]
    assert [(s.severity, s.values["breaches"]) for s in sigs] == [("warning", 2.0), ("critical", 3.0)]
    assert sigs[0].ts == evs[24 * 13].available_at and sigs[1].ts == evs[24 * 17].available_at
    # the second breach is the -8% log move: a simple move of 1 - e^-0.08 = 7.69%
    assert sigs[0].values["last_move"] == pytest.approx(1.0 - math.exp(-0.08), rel=1e-12)
    assert sigs[0].values["last_im_rate"] == 0.05
    assert sigs[0].reason == ("X-PERP 2 moves beyond the IM rate in force in the last 10 days (latest: a 24h move "
                              "of 7.7% against IM 5.00%; threshold 2)")


def test_new_listing_fires_once_for_thin_history():
    evs = _bars("NEW-PERP", np.zeros(300))
    sigs = _signals(MonitorEngine(default_policy(), None, live_from=T0 + 100 * H), evs)
    nl = [s for s in sigs if s.kind == "new_listing"]
    assert len(nl) == 1 and nl[0].severity == "info" and nl[0].values["bars"] == 100.0
    assert nl[0].values["min_bars"] == 720.0 and "fewer than 720" in nl[0].reason
