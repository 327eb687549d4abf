"""MonitorEngine: estimator wiring vs pandas, the FHS-scaling target, policy routing, state round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from margincal.adjust.engine import Adjustment, MonitorEngine, sigma_anchor_from_details
from margincal.adjust.online import halflife_to_lambda
from margincal.adjust.policy import default_policy, load_policy
from margincal.adjust.signals import Signal
from margincal.config import sample_data_dir
from margincal.data.feeds import BarEvent, FundingEvent, event_key
from margincal.margin.params import InstrumentParams, ParameterSet

START = pd.Timestamp("2022-11-01", tz="UTC")


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    df = pd.read_csv(sample_data_dir() / "btcusdt_perp_1h.csv.gz")
    df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
    return df[(df["ts"] >= "2022-09-01") & (df["ts"] < "2022-11-21")].reset_index(drop=True)


@pytest.fixture(scope="module")
def events(btc) -> list[BarEvent]:
    return [BarEvent("BTC-PERP", r.ts, r.open, r.high, r.low, r.close, r.volume, "1h") for r in btc.itertuples()]


def _pset(im: float = 0.08, mm: float = 0.04, **details) -> ParameterSet:
    return ParameterSet({"BTC-PERP": InstrumentParams("BTC-PERP", im, mm, dict(details))}, version=1)


def _seeded_ewma(x2: np.ndarray, lam: float, k: int) -> np.ndarray:
    first = pd.Series(x2[:k]).expanding().mean().to_numpy()
    rest = pd.Series(np.concatenate([[x2[:k].mean()], x2[k:]])).ewm(alpha=1 - lam, adjust=False).mean().to_numpy()
    return np.concatenate([first, rest[1:]])


def test_engine_vols_equal_pandas_batch(btc, events):
    pol = default_policy()
    eng = MonitorEngine(pol, None, live_from=pd.Timestamp("2030-01-01", tz="UTC"))  # warm-up only
    for e in events:
        eng.process(e)
    snap = eng.snapshot("BTC-PERP")
    r = np.diff(np.log(btc["close"].to_numpy()))
    k = pol["estimators"]["vol_seed_bars"]
    for key, hl in [("sigma_short_annual", 24.0), ("sigma_long_annual", 720.0), ("sigma_target_annual", 48.0)]:
        ref = math.sqrt(_seeded_ewma(r**2, halflife_to_lambda(hl), k)[-1] * 8760.0)
        assert snap[key] == pytest.approx(ref, rel=1e-12), key
    assert snap["vol_ratio"] == pytest.approx(snap["sigma_short_annual"] / snap["sigma_long_annual"], rel=1e-12)
    assert snap["bars"] == len(btc) and eng.events_processed == len(btc)


def test_sigma_anchor_from_calibration_details():
    # a 24h horizon sigma of 2.2% is 2.2% * sqrt(8760/24) = 42.03% a year
    assert sigma_anchor_from_details({"sigma": 0.022}, {"horizon_hours": 24.0}) == pytest.approx(
        0.022 * math.sqrt(365.0))
    assert sigma_anchor_from_details({"sigma": 0.022, "horizon_hours": 8.0}) == pytest.approx(0.022 * math.sqrt(1095))
    assert sigma_anchor_from_details({"sigma_anchor_annual": 0.5, "sigma": 0.022}) == 0.5
    assert sigma_anchor_from_details({"es": 0.08}) is None


def test_first_automatic_increase_matches_fhs_scaling(btc, events):
    """IM_target = IM_base * sigma_now / sigma_anchor, then the policy: recomputed independently here."""
    pol = default_policy()
    anchor_h = 0.018  # 24h horizon sigma at "calibration" -> 34.4% a year
    eng = MonitorEngine(pol, _pset(0.08, 0.04, sigma=anchor_h, horizon_hours=24.0), live_from=START)
    adjs: list[Adjustment] = []
    for e in events:
        out = eng.process(e)
        if out:
            adjs += [x for x in out if isinstance(x, Adjustment)]
    first_auto = next(a for a in adjs if a.route == "auto")
    # independent recomputation of sigma_now on the bar that triggered it
    r = np.diff(np.log(btc["close"].to_numpy()))
    sig = np.sqrt(_seeded_ewma(r**2, halflife_to_lambda(48.0), 24) * 8760.0)
    i = int(np.flatnonzero((btc["ts"] + pd.Timedelta(hours=1) == first_auto.ts).to_numpy())[0])
    anchor = anchor_h * math.sqrt(365.0)
    target = 0.08 * sig[i - 1] / anchor  # bar i closes the return r[i-1]
    assert first_auto.sigma_now == pytest.approx(sig[i - 1], rel=1e-12)
    assert first_auto.sigma_anchor == pytest.approx(anchor, rel=1e-12)
    assert first_auto.target_im == pytest.approx(target, rel=1e-12)
    # the first move is an increase of more than the 5% band, rounded up to 5 bps, at most +25% automatically
    assert target > 0.08 * 1.05
    expected = min(math.ceil(round(target / 0.0005, 6)) * 0.0005, 0.08 * 1.25)
    assert first_auto.im_after == pytest.approx(expected, rel=1e-12)
    # IM applies at once to new exposure; MM (existing positions) keeps its rate and the new one, with the
    # base MM/IM ratio, is announced for the end of the 24h notice period
    assert first_auto.scope == "new_exposure" and first_auto.effective_at == first_auto.ts
    assert first_auto.mm_after == 0.04
    assert first_auto.mm_scheduled == pytest.approx(first_auto.im_after * 0.5, rel=1e-12)
    assert first_auto.mm_effective_at == first_auto.ts + pd.Timedelta(hours=24)
    assert first_auto.ts >= START
    # every bar before it had a target inside the band (or was warm-up / before live_from)
    live = (btc["ts"] + pd.Timedelta(hours=1) >= START).to_numpy()
    earlier = np.flatnonzero(live[:i])[1:] if live[:i].any() else []
    assert all(abs(0.08 * sig[j - 1] / anchor / 0.08 - 1) <= 0.05 + 1e-12 or 0.08 * sig[j - 1] / anchor < 0.08
               for j in earlier)
    # all later automatic steps respect the +50% speed limit and the 6h increase cooldown
    autos = [a for a in adjs if a.route == "auto"]
    for b in autos[1:]:
        if b.im_after > b.im_before:
            assert b.im_after <= b.im_before * 1.5 + 1e-12
    incr = [a.ts for a in autos if a.im_after > a.im_before]
    assert all((y - x) >= pd.Timedelta(hours=6) for x, y in zip(incr, incr[1:], strict=False))
    # decreases are never automatic under the default policy
    assert all(a.im_after > a.im_before for a in autos if a.kind == "rate")
    # the announced MM changes take effect 24h after each rate change, with IM unchanged, for all positions
    effs = [a for a in autos if a.kind == "mm_effective"]
    assert effs and all(a.im_after == a.im_before and a.scope == "all_positions" for a in effs)
    for e in effs:
        # it applies an announcement made at least 24h earlier, at the announced time
        ann = [a for a in autos if a.kind == "rate" and a.instrument == e.instrument
               and a.mm_effective_at == e.effective_at]
        assert len(ann) == 1 and ann[0].ts == e.effective_at - pd.Timedelta(hours=24) and e.ts >= e.effective_at
        assert e.mm_after == pytest.approx(min(ann[0].mm_scheduled, e.im_after))
    assert any(a.route == "proposal" and a.im_after < a.im_before for a in adjs)


def test_split_increase_is_auto_then_proposal(events):
    pol = default_policy()
    eng = MonitorEngine(pol, _pset(0.05, 0.025, sigma=0.015, horizon_hours=24.0), live_from=START)
    outs = []
    for e in events:
        out = eng.process(e)
        if out:
            outs.append([x for x in out if isinstance(x, Adjustment)])
    splits = [o for o in outs if len(o) == 2]
    assert splits, "the FTX crash must produce an increase above +25%"
    auto, prop = splits[0]
    assert (auto.route, prop.route) == ("auto", "proposal")
    assert auto.im_after == pytest.approx(auto.im_before * 1.25)  # the automatic part
    assert prop.im_before == auto.im_after and prop.im_after > auto.im_after
    assert "needs a risk officer" in prop.reason and "automatic bound (+25%)" in prop.rule


def test_nothing_before_live_from_and_signals_only_without_params(events):
    eng = MonitorEngine(default_policy(), None, live_from=START)
    kinds = []
    for e in events:
        out = eng.process(e)
        if out:
            assert all(isinstance(x, Signal) for x in out)  # no parameter set: signals only
            assert all(x.ts >= START for x in out)
            kinds += [x.kind for x in out]
    assert "vol_regime" in kinds


def _run(eng: MonitorEngine, evs) -> list[dict]:
    res = []
    for e in evs:
        out = eng.process(e)
        if out:
            res += [x.as_dict() for x in out]
    return res


def test_state_round_trip_reproduces_the_uninterrupted_run(events):
    pol = default_policy()
    fund = [FundingEvent("BTC-PERP", t, r) for t, r in zip(
        pd.date_range("2022-09-01", "2022-11-20", freq="8h", tz="UTC"),
        np.r_[np.full(200, 1e-4), np.linspace(1e-4, -8e-4, 44)], strict=False)]
    evs = sorted(events + fund, key=event_key)
    p = _pset(0.06, 0.03, sigma=0.016, horizon_hours=24.0)
    whole = _run(MonitorEngine(pol, p, live_from=START), evs)
    for cut in (1500, 1800, 2100):
        a = MonitorEngine(pol, p, live_from=START)
        first = _run(a, evs[:cut])
        state = json.loads(json.dumps(a.state(), allow_nan=False))
        b = MonitorEngine.from_state(pol, state, p)
        assert b.last_key == a.last_key and b.events_processed == cut
        assert first + _run(b, evs[cut:]) == whole
    assert any(d.get("route") == "auto" for d in whole) and any(d.get("kind") == "funding_extreme" for d in whole)


def test_state_with_another_policy_is_refused(events):
    a = MonitorEngine(default_policy(), None)
    for e in events[:50]:
        a.process(e)
    other = load_policy(None, overrides={"auto": {"hysteresis": 0.1}})
    with pytest.raises(Exception, match="different policy"):
        MonitorEngine.from_state(other, a.state())
