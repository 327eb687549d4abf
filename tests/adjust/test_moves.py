"""Which signal moves which parameter (policy ``[moves.*]``), checked against independent formulas.

References: the dYdX v4 open-interest IMF rule (``imf = base + max(0, (OI - lower) / (upper - lower)) x
(1 - base)``, capped at 1; dydxprotocol/v4-chain, see tests/reference/ and margin.presets) recomputed by hand
here; square-root-of-time horizon scaling; the funding cost over a horizon = |rate| x number of funding periods.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from margincal.adjust.engine import Adjustment, MonitorEngine, compose_target
from margincal.adjust.policy import default_policy, load_policy
from margincal.adjust.signals import Signal
from margincal.config import sample_data_dir
from margincal.data.feeds import BarEvent, DepthEvent, FundingEvent, OpenInterestEvent, event_key
from margincal.errors import ConfigError
from margincal.margin.params import InstrumentParams, ParameterSet

LIVE = pd.Timestamp("2022-10-01", tz="UTC")


@pytest.fixture(scope="module")
def bars() -> list[BarEvent]:
    df = pd.read_csv(sample_data_dir() / "btcusdt_perp_1h.csv.gz")
    df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
    df = df[(df["ts"] >= "2022-08-01") & (df["ts"] < "2022-10-15")]
    return [BarEvent("BTC-PERP", r.ts, r.open, r.high, r.low, r.close, r.volume, "1h") for r in df.itertuples()]


NO_APC = load_policy(None, overrides={"apc": {"enabled": False}})


def _pset(**details) -> ParameterSet:
    return ParameterSet({"BTC-PERP": InstrumentParams("BTC-PERP", 0.08, 0.04, {"sigma": 0.025, "horizon_hours": 24,
                                                                             **details})}, version=1)


def _run(events, policy=None, pset=None) -> tuple[MonitorEngine, list]:
    eng = MonitorEngine(policy or default_policy(), pset or _pset(), live_from=LIVE)
    out = []
    for e in sorted(events, key=event_key):
        r = eng.process(e)
        if r:
            out += r
    return eng, out


def _dydx(base: float, oi: float, lo: float, hi: float) -> float:
    return min(base + max(0.0, (oi - lo) / (hi - lo)) * (1.0 - base), 1.0)


def test_compose_target_reference_values():
    im, mm, c = compose_target(0.10, 0.05, vol_factor=1.0)
    assert (im, c["moved_by"]) == (0.10, []) and mm == pytest.approx(0.05, rel=1e-15)
    # volatility x horizon: 1.2 x sqrt(4) = 2.4x; OI halfway between the caps (dYdX rule); then both add-ons
    im, mm, c = compose_target(0.10, 0.05, vol_factor=1.2, open_interest=3e9, oi_caps=(2e9, 4e9),
                               horizon_factor=4.0, horizon_exponent=0.5, liquidity_addon=0.002,
                               funding_provision=0.009)
    core = 0.10 * 1.2 * 2.0
    imf = core + 0.5 * (1 - core)
    assert im == pytest.approx(imf + 0.011, rel=1e-12)
    assert mm == pytest.approx(imf * 0.5 + 0.011, rel=1e-12)
    assert c["tier_scale"] == pytest.approx(min(2e9 / 3e9, 1 / 4.0))
    assert c["moved_by"] == ["rates (volatility)", "close-out horizon", "OI-scaled IM", "tier boundaries",
                             "liquidity add-on", "funding provision"]
    # OI below the lower cap moves nothing
    assert compose_target(0.10, 0.05, vol_factor=1.0, open_interest=1e9, oi_caps=(2e9, 4e9))[0] == 0.10


def test_funding_extreme_moves_the_funding_provision(bars):
    # real funding history up to the live start, then one extreme print (0.30% per 8h, as on 2020-03-13)
    df = pd.read_csv(sample_data_dir() / "btcusdt_funding.csv")
    df["ts"] = pd.to_datetime(df["funding_time"], utc=True)
    df = df[(df["ts"] >= "2022-08-01") & (df["ts"] < "2022-10-05")]
    fund = [FundingEvent("BTC-PERP", r.ts, r.funding_rate) for r in df.itertuples()]
    fund.append(FundingEvent("BTC-PERP", pd.Timestamp("2022-10-05 08:00", tz="UTC"), -0.003))
    evs = [b for b in bars if b.ts < pd.Timestamp("2022-10-05 08:00", tz="UTC")] + fund
    eng, out = _run(evs)
    assert any(isinstance(x, Signal) and x.kind == "funding_extreme" and x.severity == "critical" for x in out)
    im, mm, comp = eng.target("BTC-PERP")
    assert comp["funding_provision"] == pytest.approx(0.003 * 24 / 8)  # three 8h periods over 24h
    assert "funding provision" in comp["moved_by"]
    # without the extreme signal (funding mapping off) the provision is gone and IM is lower by exactly it
    off = load_policy(None, overrides={"moves": {"funding": {"enabled": False}}})
    eng2, _ = _run(evs, off)
    im2, mm2, comp2 = eng2.target("BTC-PERP")
    assert comp2["funding_provision"] == 0.0 and im - im2 == pytest.approx(0.009, rel=1e-9)
    assert mm - mm2 == pytest.approx(0.009, rel=1e-9)


def test_open_interest_above_its_cap_moves_oi_scaled_im_and_tier_boundaries(bars):
    ts0 = pd.Timestamp("2022-08-01", tz="UTC")
    oi = [OpenInterestEvent("BTC-PERP", ts0 + pd.Timedelta(days=d), 5e9) for d in range(70)]
    evs = [b for b in bars if b.ts < ts0 + pd.Timedelta(days=70)] + oi
    eng, _ = _run(evs, NO_APC)  # the OI mapping alone (APC's buffer, rebuilt over 20 days, is tested below)
    assert eng.target("BTC-PERP")[2]["oi_imf"] == 1.0  # OI at its reference: nothing moves
    big = OpenInterestEvent("BTC-PERP", ts0 + pd.Timedelta(days=70, hours=1), 12e9)
    eng.process(big)
    im, mm, comp = eng.target("BTC-PERP")
    lo, hi = comp["oi_caps"]
    ref = eng._insts["BTC-PERP"].oi_ref.mean
    assert (lo, hi) == pytest.approx((1.5 * ref, 4.0 * ref))
    core = 0.08 * comp["vol_factor"]
    assert im == pytest.approx(_dydx(core, 12e9, lo, hi), rel=1e-12)
    assert comp["tier_scale"] == pytest.approx(lo / 12e9) and "tier boundaries" in comp["moved_by"]
    # calibrated caps on the row win over the monitor's reference
    eng3, _ = _run(evs + [big], NO_APC, pset=_pset(oi_lower_cap=10e9, oi_upper_cap=20e9))
    im3, _, comp3 = eng3.target("BTC-PERP")
    assert comp3["oi_caps"] == [10e9, 20e9]
    assert im3 == pytest.approx(_dydx(0.08 * comp3["vol_factor"], 12e9, 10e9, 20e9), rel=1e-12)


def _book(ts, mid, half_spread_bps, size):
    h = mid * half_spread_bps / 1e4
    return DepthEvent("BTC-PERP", ts, ((mid - h, size), (mid - 2 * h, size)), ((mid + h, size), (mid + 2 * h, size)))


def test_liquidity_drop_moves_horizon_tier_boundaries_and_addon(bars):
    ts0 = pd.Timestamp("2022-09-01", tz="UTC")
    books = [_book(ts0 + pd.Timedelta(hours=h), 20_000.0, 1.0, 50.0) for h in range(0, 24 * 40)]
    evs = [b for b in bars if b.ts < ts0 + pd.Timedelta(days=40)] + books
    eng, _ = _run(evs, NO_APC)  # the liquidity mapping alone
    assert eng.target("BTC-PERP")[2]["horizon_factor"] == 1.0
    st = eng._insts["BTC-PERP"]
    crash = _book(ts0 + pd.Timedelta(days=40), 20_000.0, 6.0, 5.0)  # depth / 10, spread x 6
    out = eng.process(crash)
    # the typical levels are the 168h EWMA levels, including the latest snapshot
    typical_depth, typical_spread = st.depth_stats.mean, st.spread_stats.mean
    assert any(s.kind == "liquidity_drop" and s.severity == "critical" for s in out)
    im, mm, comp = eng.target("BTC-PERP")
    q = min(max(typical_depth / crash.depth_notional(100), crash.spread_bps / typical_spread), 4.0)
    assert comp["horizon_factor"] == pytest.approx(q, rel=1e-12) and q == 4.0
    assert comp["liquidity_addon"] == pytest.approx(0.5 * (crash.spread_bps - typical_spread) / 1e4, rel=1e-12)
    assert comp["tier_scale"] == pytest.approx(1 / q)
    assert im == pytest.approx(0.08 * comp["vol_factor"] * math.sqrt(q) + comp["liquidity_addon"], rel=1e-12)


def test_breach_cluster_escalates_with_a_proposed_increase():
    df = pd.read_csv(sample_data_dir() / "btcusdt_perp_1h.csv.gz")
    df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
    df = df[(df["ts"] >= "2022-09-15") & (df["ts"] < "2022-11-15")]
    evs = [BarEvent("BTC-PERP", r.ts, r.open, r.high, r.low, r.close, r.volume, "1h") for r in df.itertuples()]
    # a low calibrated rate (2%) breaches repeatedly in the FTX week
    pset = ParameterSet({"BTC-PERP": InstrumentParams("BTC-PERP", 0.02, 0.01, {})}, version=1)
    eng = MonitorEngine(default_policy(), pset, live_from="2022-11-01")
    fired = None
    for e in evs:
        out = eng.process(e) or []
        sig = [x for x in out if isinstance(x, Signal) and x.kind == "breach_cluster"]
        if sig and fired is None:
            fired = (sig[0], [x for x in out if isinstance(x, Adjustment) and x.kind == "escalation"])
    assert fired is not None
    sig, esc = fired
    assert len(esc) == 1 and esc[0].route == "proposal"
    a = esc[0]
    move = sig.values["last_move"]
    assert a.im_after >= move * 1.10 - 1e-12 and a.im_after > a.im_before
    assert "escalation" in a.rule and "escalation (breach cluster)" in a.components["moved_by"]


def test_stale_bars_raise_a_signal_instead_of_an_adjustment(bars):
    cut = next(i for i, b in enumerate(bars) if b.ts >= pd.Timestamp("2022-10-05", tz="UTC"))
    gapped = bars[:cut] + bars[cut + 5:]  # five hourly bars missing
    eng = MonitorEngine(default_policy(), _pset(), live_from=LIVE)
    for b in gapped[:cut]:
        eng.process(b)
    out = eng.process(gapped[cut]) or []
    assert [s.kind for s in out if isinstance(s, Signal)] == ["stale_data"]
    assert not any(isinstance(x, Adjustment) for x in out)
    assert out[0].values["gap_bars"] == 6.0


def test_decreases_are_batched_weekly_and_grouped():
    d = sample_data_dir()
    evs = []
    for f, inst in [("btcusdt_perp_1h.csv.gz", "BTC-PERP"), ("ethusdt_perp_1h.csv.gz", "ETH-PERP")]:
        df = pd.read_csv(d / f)
        df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
        df = df[(df["ts"] >= "2023-01-01") & (df["ts"] < "2023-07-01")]
        evs += [BarEvent(inst, r.ts, r.open, r.high, r.low, r.close, r.volume, "1h") for r in df.itertuples()]
    evs.sort(key=event_key)
    # calibrated high (a calm half-year after a stressed calibration): the target sits below the rate in force
    pset = ParameterSet({i: InstrumentParams(i, 0.30, 0.15, {}) for i in ("BTC-PERP", "ETH-PERP")}, version=1)
    eng = MonitorEngine(default_policy(), pset, live_from="2023-01-15")
    adjs = []
    for e in evs:
        adjs += [x for x in (eng.process(e) or []) if isinstance(x, Adjustment)]
    dec = [a for a in adjs if a.im_after < a.im_before]
    assert dec and all(a.route == "proposal" and a.kind == "decrease_batch" for a in dec)
    # each evaluated at the first bar of a Monday-00:00 UTC week, both instruments in one group
    for a in dec:
        start = pd.Timestamp(a.group.split(":", 1)[1].split("@")[0])
        assert start.day_of_week == 0 and start.hour == 0 and a.ts - start < pd.Timedelta(hours=2)
    groups = {}
    for a in dec:
        groups.setdefault(a.group, set()).add(a.instrument)
    assert any(len(v) == 2 for v in groups.values())
    weeks = (pd.Timestamp("2023-07-01", tz="UTC") - pd.Timestamp("2023-01-15", tz="UTC")).days / 7
    assert len(dec) / 2 / weeks <= 1.0


def _apc_path(policy, pset, bars):
    eng = MonitorEngine(policy, pset, live_from=LIVE)
    raws, outs, buffers = [], [], []
    for b in bars:
        eng.process(b)
        if b.ts + pd.Timedelta(hours=1) < LIVE:
            continue
        _, _, comp = eng.target("BTC-PERP")  # evaluated on a copy of the APC state
        raws.append(comp["apc_raw_im"])
        buffers.append(comp["apc_buffer"])
        outs.append(eng._insts["BTC-PERP"].apc_out)
    return eng, np.array(raws), np.array(outs), np.array(buffers)


def test_monitor_applies_the_published_rules_apc_by_default(bars):
    """Issue 18 item 5: by default the monitor applies the anti-procyclicality rule of the published rates.

    The published rule (margin.published.published_curve_path) runs ``margin.apc.apply_apc(loss_raw,
    apc_config(CalibrationSettings().apc))`` over its unbuffered tail loss; the monitor's rate path must be that
    same recursion over its own unbuffered requirement (the vol-scaled rate / (1 + the buffer the calibrated rate
    carries: 25% for a row without es/es_raw)), computed here independently with apply_apc over the whole path.
    """
    from margincal.adjust.policy import apc_settings
    from margincal.config import CalibrationSettings
    from margincal.margin.apc import apc_config, apply_apc

    published = apc_config(CalibrationSettings().apc)
    on, cfg = apc_settings(default_policy())
    assert on and cfg == published and published.buffer == 0.25
    eng, raws, outs, buffers = _apc_path(default_policy(), _pset(), bars)
    # on the same bar size as the published rule runs it: hourly bars, so rebuild_days = 20 is 480 steps
    ref = np.asarray(apply_apc(raws / (1.0 + published.buffer), published, bar_hours=1.0))
    assert len(raws) > 300
    assert outs == pytest.approx(ref, rel=1e-12)
    # the path holds stress steps (buffer released: the rate below the vol-scaled rate) and rebuilds
    assert (outs < raws * (1 - 1e-9)).any() and buffers.min() < 0.25 and buffers.max() == pytest.approx(0.25)
    # the target view after a bar shows that bar's APC output (it does not step the recursion again)
    assert eng.target("BTC-PERP")[0] == pytest.approx(outs[-1], rel=1e-12)
    # switched off in the policy file: the plain vol-scaled rate
    off = load_policy(None, overrides={"apc": {"enabled": False}})
    assert apc_settings(off)[0] is False
    eng_off = MonitorEngine(off, _pset(), live_from=LIVE)
    for b in bars:
        eng_off.process(b)
    im, _, comp = eng_off.target("BTC-PERP")
    assert "apc_raw_im" not in comp and im == pytest.approx(0.08 * comp["vol_factor"], rel=1e-12)


def test_apc_starts_from_the_buffer_the_calibrated_rate_carries(bars):
    """A published row records its tail loss with (es) and without (es_raw) the APC buffer: the monitor's
    recursion starts from that buffer (here 10%, released at calibration) and rebuilds it over 20 calm days:
    25%/480 per calm hourly bar, as the published rule does on hourly bars."""
    eng, raws, outs, buffers = _apc_path(default_policy(), _pset(es=0.011, es_raw=0.01), bars)
    assert eng._insts["BTC-PERP"].apc_beta0 == pytest.approx(0.10)
    assert outs[0] == pytest.approx(raws[0], rel=1e-12)  # the first bar continues the calibration
    assert buffers[0] == pytest.approx(0.10, abs=1e-12)
    assert buffers.max() > 0.10 and (buffers <= 0.25 + 1e-12).all()  # rebuilding, never above the preset's 25%
    # every step is margin.apc's recursion on raw / 1.10, each from the previous state
    from margincal.margin.apc import APCState, apc_config, step

    cfg = apc_config("emir_a")
    state = APCState(raws[0], raws[0] / 1.1, 0.1)
    for r, o in zip(raws[1:], outs[1:], strict=True):
        x, state = step(state, r / 1.1, cfg, bar_hours=1.0)
        assert o == pytest.approx(x, rel=1e-12)


def test_apc_policy_keys_are_validated_and_old_files_still_load():
    with pytest.raises(ConfigError, match=r"\[apc\] preset is 'emir_b'"):
        load_policy(None, overrides={"apc": {"preset": "emir_b"}})
    with pytest.raises(ConfigError, match=r"\[apc\] rebuild_steps"):
        load_policy(None, overrides={"apc": {"rebuild_steps": 0}})
    from margincal.adjust.policy import apc_settings

    # a policy file written before the preset key existed ([apc] enabled/buffer/stress_threshold) still loads
    old = load_policy(None, overrides={"apc": {"enabled": True, "buffer": 0.3, "stress_threshold": 0.2}})
    on, cfg = apc_settings(old)
    assert on and cfg.buffer == 0.3 and cfg.stress_threshold == 0.2 and cfg.rebuild_steps == 20
    assert apc_settings(load_policy(None, overrides={"apc": {"preset": "off"}}))[0] is False
