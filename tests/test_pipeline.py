"""The calibration use case (FHS + EWMA + liquidity add-on + rounding) against an independent computation,
and its causal history: one published rule for the frozen number and the backtested path."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from margincal.config import CalibrationSettings
from margincal.data.ingest import ingest_file
from margincal.data.store import load_bars
from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.margin.published import calibrate_bars, published_history, published_path
from margincal.margin.rounding import ceil_to_increment
from margincal.risk import Decay
from margincal.risk.models import FilteredHistoricalSimulation
from margincal.vol.ewma import EWMAVolatility, ewma_variance, ewma_variance_reference, fit_lambda


def ceil_to(x: float, step: float) -> float:
    return float(ceil_to_increment(x, step)) if step > 0 else float(x)


def bar_lambda(lam_day: float, bar_hours: float) -> float:
    return Decay(per_day=lam_day).for_bars(bar_hours)


def test_ceil_to_worked_examples():
    assert ceil_to(0.1081578, 0.0005) == pytest.approx(0.1085)   # 216.3 steps -> 217 steps
    assert ceil_to(0.0100000000001, 0.0005) == pytest.approx(0.01)  # float noise is not a step
    assert ceil_to(0.01001, 0.0005) == pytest.approx(0.0105)
    assert ceil_to(0.0123, 0.0) == 0.0123


def test_bar_lambda_keeps_the_same_memory_in_hours():
    lam_h = bar_lambda(0.94, 1.0)
    assert lam_h ** 24 == pytest.approx(0.94)
    # half-life in hours is identical: ln(0.5)/ln(lam) bars x bar hours
    assert math.log(0.5) / math.log(lam_h) == pytest.approx(24 * math.log(0.5) / math.log(0.94))


def test_ewma_matches_pandas_ewm_and_loop():
    r = np.random.default_rng(1).standard_t(4, 800) * 0.02
    v = ewma_variance(r, 0.94, seed=30)
    assert np.allclose(v, ewma_variance_reference(r, 0.94, seed=30), rtol=1e-12)
    # pandas: y_t = (1-a) y_{t-1} + a x_t with a = 1 - lam, adjust=False, seeded by prepending the seed
    seed = np.mean(r[:30] ** 2)
    pd_v = pd.Series(np.concatenate([[seed], r**2])).ewm(alpha=0.06, adjust=False).mean().to_numpy()
    assert np.allclose(v, pd_v, rtol=1e-12)


def test_ewma_uses_only_past_data():
    r = np.random.default_rng(2).normal(0, 0.02, 300)
    r2 = r.copy()
    r2[200:] *= 10
    assert np.array_equal(ewma_variance(r, 0.94)[:201], ewma_variance(r2, 0.94)[:201])


def test_ewma_lambda_recovered_by_likelihood():
    rng = np.random.default_rng(3)
    lam, n = 0.97, 6000
    s2, r = 1e-4, np.empty(n)
    for t in range(n):
        r[t] = math.sqrt(s2) * rng.standard_normal()
        s2 = lam * s2 + (1 - lam) * r[t] ** 2
    assert fit_lambda(r) == pytest.approx(lam, abs=0.01)
    assert EWMAVolatility(fit_lambda=True).fit(r).lam_ == pytest.approx(lam, abs=0.01)


def test_ewma_rejects_nan():
    with pytest.raises(DataError, match=r"returns\[2\] is nan"):
        ewma_variance([0.01, 0.02, float("nan")])


def _independent_fhs(r: np.ndarray, lam: float, level: float, seed: int = 30) -> tuple[float, float]:
    """FHS written from the textbook, independently: pandas EWM sigma, sorted residual tail."""
    s0 = np.mean(r[:seed] ** 2)
    var = pd.Series(np.concatenate([[s0], r**2])).ewm(alpha=1 - lam, adjust=False).mean().to_numpy()
    sig = np.sqrt(var)
    z = r[seed:] / sig[seed:-1]
    scen = sig[-1] * z
    out = []
    for loss in (-np.expm1(scen), np.expm1(scen)):
        srt = np.sort(loss)[::-1]
        n_tail = len(srt) * (1 - level)
        k = int(math.floor(n_tail + 1e-12))
        es = (srt[:k].sum() + (n_tail - k) * srt[k]) / n_tail
        out.append(es)
    return max(out), sig[-1]


def test_fhs_calibration_matches_independent_computation(con, data_dir):
    ingest_file(con, data_dir / "eth_daily.csv", instrument="ETH-USDT", timeframe="1d")
    bars = load_bars(con, "ETH-USDT", "1d")
    cal = calibrate_bars(bars, "ETH-USDT", "1d", CalibrationSettings(rule="flat"))
    r = np.log(bars["close"].to_numpy())
    r = np.diff(r)
    es, sig = _independent_fhs(r, 0.94, 0.99)
    assert cal.es == pytest.approx(es, rel=1e-10)
    assert cal.sigma == pytest.approx(sig, rel=1e-10)
    # liquidity add-on, written out: half-spread 2 bp + sqrt impact at 1M USD against the 30-day ADV
    last = bars.iloc[-31:]
    adv = float(np.mean((last["close"] * last["volume"]).to_numpy()[1:]))
    sigma_d = float(np.std(np.diff(np.log(last["close"].to_numpy())), ddof=1))
    addon = 0.0002 + 1.0 * sigma_d * math.sqrt(1e6 / adv)
    assert cal.extra["liquidity_addon"] == pytest.approx(addon, rel=1e-10)
    assert cal.im_rate == pytest.approx(math.ceil((es + addon) / 0.0005 - 1e-9) * 0.0005)
    assert cal.mm_rate == pytest.approx(math.ceil(cal.im_rate * 0.5 / 0.0005 - 1e-9) * 0.0005)
    assert cal.window_end.startswith("2026-03-30")


def test_calibration_is_monotone_in_level_and_horizon(con, data_dir):
    ingest_file(con, data_dir / "btc_daily.csv", instrument="BTC-USDT", timeframe="1d")
    bars = load_bars(con, "BTC-USDT", "1d")
    for rule in ("flat", "v2"):
        ims = [calibrate_bars(bars, "B", "1d", CalibrationSettings(level=lv, rule=rule)).im_rate
               for lv in (0.95, 0.99, 0.995)]
        assert ims == sorted(ims) and ims[0] < ims[-1]
    hs = [calibrate_bars(bars, "B", "1d", CalibrationSettings(horizon_hours=h, rule="flat")).im_rate
          for h in (24, 48, 120)]
    assert hs == sorted(hs) and hs[0] < hs[-1]


def test_fhs_direct_and_sqrt_scaling_agree_roughly_on_iid_data():
    rng = np.random.default_rng(5)
    r = pd.Series(rng.normal(0, 0.01, 20000), index=pd.date_range("2020-01-01", periods=20000, freq="h"))
    a = FilteredHistoricalSimulation(lam=Decay(per_bar=0.999), scaling="sqrt").fit(r).forecast(24, 0.99)
    b = FilteredHistoricalSimulation(lam=Decay(per_bar=0.999), scaling="direct").fit(r).forecast(24, 0.99)
    assert a.es == pytest.approx(b.es, rel=0.15)
    assert b.effective_n == pytest.approx(a.effective_n / 24, rel=0.01)


def test_too_little_history_is_a_clear_error(con, data_dir):
    ingest_file(con, data_dir / "btc_daily.csv", instrument="BTC-USDT", timeframe="1d")
    bars = load_bars(con, "BTC-USDT", "1d").iloc[:100]
    with pytest.raises(CalibrationError, match="100 bars, need at least 251"):
        calibrate_bars(bars, "BTC-USDT", "1d", CalibrationSettings())


def test_settings_validated():
    with pytest.raises(ConfigError, match="mm_fraction is 1.5"):
        CalibrationSettings(mm_fraction=1.5)
    with pytest.raises(ConfigError, match="horizon_hours is -1"):
        CalibrationSettings(horizon_hours=-1)


@pytest.mark.parametrize("rule", ["flat", "v2"])
def test_published_history_is_causal(con, data_dir, rule):
    ingest_file(con, data_dir / "sol_daily.csv", instrument="SOL-USDT", timeframe="1d")
    bars = load_bars(con, "SOL-USDT", "1d")
    s = CalibrationSettings(rule=rule)
    full = published_history(bars, "1d", s)
    cut = published_history(bars.iloc[:1500], "1d", s)
    common = cut.index
    for col in ("im_rate", "mm_rate", "es", "liq_addon"):
        np.testing.assert_array_equal(full.loc[common, col].to_numpy(), cut[col].to_numpy())
    assert full["im_rate"].notna().sum() > 1500


@pytest.mark.parametrize("rule", ["flat", "v2"])
@pytest.mark.parametrize(("file", "inst", "tf", "rows"), [
    ("eth_daily.csv", "ETH-USDT", "1d", None),
    ("btcusdt_perp_1h.csv.gz", "BTC-PERP", "1h", 1400),
])
def test_published_history_row_is_the_published_calibration_on_data_up_to_it(con, data_dir, file, inst, tf, rows,
                                                                              rule):
    """One rule: row t of the causal history is exactly what calibrate_bars publishes from bars[:t + 1]
    (ES, add-on, rounding, cap, MM), on daily bars (sqrt) and hourly bars (24-bar direct sums)."""
    ingest_file(con, data_dir / file, instrument=inst, timeframe=tf)
    bars = load_bars(con, inst, tf)
    if rows:
        bars = bars.iloc[-rows:]
    s = CalibrationSettings(rule=rule)
    p = published_path(bars, tf, s)
    assert len(p) == len(bars)
    assert p["im_rate"].iloc[: s.min_history].isna().all()
    for t in (s.min_history, s.min_history + 37, len(bars) // 2, len(bars) - 1):
        cal = calibrate_bars(bars.iloc[: t + 1], inst, tf, s)
        row = p.iloc[t]
        assert row["im_rate"] == cal.im_rate and row["mm_rate"] == cal.mm_rate
        assert row["es"] == pytest.approx(cal.es, rel=1e-12)
        assert row["liq_addon"] == pytest.approx(cal.extra["liquidity_addon"], rel=1e-10)
    h = published_history(bars, tf, s)
    # the history row of a bar holds what was published at the close before it
    np.testing.assert_array_equal(h["im_rate"].to_numpy(), p["im_rate"].to_numpy()[:-1])


def test_fhs_gives_the_same_margin_from_every_entry_point(con, data_dir):
    """Calibration, the backtest's fhs path, its reference loop (risk:fhs), the risk model's fit and the
    published backtest all compute the same FHS on hourly BTC-PERP: one definition, one decay unit."""
    from margincal.backtest.models import make_path_model
    from margincal.margin.calibration import calibrate_instrument

    ingest_file(con, data_dir / "btcusdt_perp_1h.csv.gz", instrument="BTC-PERP", timeframe="1h")
    bars = load_bars(con, "BTC-PERP", "1h").iloc[-700:]
    r = np.diff(np.log(bars["close"].to_numpy()))
    fast_l, fast_s = make_path_model("fhs").var_paths(r, side_level=0.995, horizon_bars=8.0, bar_hours=1.0)
    ref_l, ref_s = make_path_model("risk:fhs").var_paths(r, side_level=0.995, horizon_bars=8.0, bar_hours=1.0)
    np.testing.assert_allclose(fast_l, ref_l, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(fast_s, ref_s, rtol=1e-12, equal_nan=True)
    # the same decay through the calibration entry point (per day, converted at the shell)
    s = CalibrationSettings(horizon_hours=8.0)
    cal = calibrate_instrument(r[:500], model="fhs", model_params={"lam": Decay(per_day=s.ewma_lambda)},
                               level=0.995, horizon_hours=8.0, bar_hours=1.0, rounding=0.0)
    fit_long = FilteredHistoricalSimulation(side="long").fit(r[:500], bar_hours=1.0).forecast(8, 0.995)
    fit_short = FilteredHistoricalSimulation(side="short").fit(r[:500], bar_hours=1.0).forecast(8, 0.995)
    assert fast_l[500] == pytest.approx(fit_long.var, rel=1e-12)
    assert fast_s[500] == pytest.approx(fit_short.var, rel=1e-12)
    both = max((fit_long, fit_short), key=lambda f: f.es)
    assert cal.es == pytest.approx(both.es, rel=1e-12) and cal.var == pytest.approx(both.var, rel=1e-12)
    # the published margin: calibrate_bars == the published history == the backtest's published path
    s24 = CalibrationSettings(min_history=300)
    from margincal.backtest.models import PublishedPath

    im, _ = PublishedPath(min_history=300).var_paths(r, side_level=0.995, horizon_bars=24.0, bar_hours=1.0,
                                                     bars=bars)
    hist = published_history(bars, "1h", s24)
    np.testing.assert_array_equal(im, hist["im_rate"].to_numpy())
    assert im[-1] == published_path(bars, "1h", s24)["im_rate"].iloc[-2]
    assert calibrate_bars(bars.iloc[:-1], "BTC-PERP", "1h", s24).im_rate == im[-1]
    # a bare float decay is refused: its unit is ambiguous
    with pytest.raises(ConfigError, match="ambiguous"):
        calibrate_instrument(r, model="fhs", model_params={"lam": 0.94}, bar_hours=1.0)


def test_pipeline_module_is_a_deprecated_re_export():
    import margincal.pipeline as old
    from margincal.margin import published

    with pytest.warns(DeprecationWarning, match="published_history"):
        assert old.margin_path is published.published_history
    with pytest.warns(DeprecationWarning):
        assert old.calibrate_bars is published.calibrate_bars
    with pytest.warns(DeprecationWarning):
        assert old.bar_lambda(0.94, 24.0) == pytest.approx(0.94)
