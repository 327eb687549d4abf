"""Rolling Basel zones, Acerbi-Szekely Z2 (size and power by simulation), cost of coverage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from margincal.backtest.stats import (
    acerbi_szekely_z2,
    cost_of_coverage,
    cost_of_coverage_reference,
    rolling_traffic_light,
    rolling_traffic_light_reference,
    z2_test,
)
from margincal.errors import DataError


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.06), st.integers(260, 900))
def test_rolling_zones_agree_with_the_loop(seed, p, n):
    b = np.random.default_rng(seed).random(n) < p
    fast = rolling_traffic_light(b, 250, 0.99)
    ref = rolling_traffic_light_reference(b, 250, 0.99)
    names = np.array(["green", "yellow", "red"])[fast.zones]
    assert names.tolist() == ref
    assert fast.n_yellow == ref.count("yellow") and fast.n_red == ref.count("red")


def test_rolling_zones_hand_case():
    # Basel table for 250 days at 99%: green 0-4, yellow 5-9, red 10+ (tests/reference/basel_traffic_light_250_99)
    b = np.zeros(300, dtype=bool)
    b[100:105] = True  # 5 breaches -> every window containing all five is yellow
    z = rolling_traffic_light(b)
    assert (z.green_max, z.yellow_max) == (4, 9)
    assert z.n_windows == 51
    # windows j..j+249 contain 100..104 for j <= 100 (all 51 windows start at 0..50)
    assert z.n_yellow == 51 and z.n_red == 0 and z.worst == "yellow"
    b[200:205] = True  # ten breaches in windows covering 100..204: j in 0..50 all do -> red
    assert rolling_traffic_light(b).n_red == 51
    assert rolling_traffic_light(b[:100]).n_windows == 0


def _t_var_es(df: float, level: float) -> tuple[float, float]:
    """VaR and ES of a unit-variance Student t loss (closed form: McNeil, Frey and Embrechts, 2005, ex. 2.19)."""
    s = np.sqrt((df - 2) / df)
    q = stats.t.ppf(level, df)
    es = stats.t.pdf(q, df) / (1 - level) * (df + q**2) / (df - 1)
    return s * q, s * es


def test_z2_is_centred_and_sized_under_the_null_and_powerful_otherwise():
    level, df, T = 0.975, 5.0, 250
    var1, es1 = _t_var_es(df, level)
    sigma = np.full(T, 0.02)
    var, es = sigma * var1, sigma * es1
    scale = sigma * np.sqrt((df - 2) / df)

    def draw(rng, k=1.0):
        return k * scale * rng.standard_t(df, T)

    rng = np.random.default_rng(5)
    null_z = np.array([acerbi_szekely_z2(draw(rng), var, es, level) for _ in range(3000)])
    assert abs(null_z.mean()) < 0.03  # E[Z2] = 0 under H0
    # Acerbi and Szekely (2014) report a 5% critical value near -0.70, stable across distributions
    assert np.quantile(null_z, 0.05) == pytest.approx(-0.70, abs=0.12)
    # size and power of the simulated-p-value test
    sims = lambda r: draw(r)  # noqa: E731
    p_null = [z2_test(draw(rng), var, es, level, simulate=sims, n_sims=300, seed=k).pvalue for k in range(60)]
    p_alt = [z2_test(draw(rng, 1.5), var, es, level, simulate=sims, n_sims=300, seed=k).pvalue for k in range(60)]
    size = np.mean(np.array(p_null) < 0.05)
    power = np.mean(np.array(p_alt) < 0.05)
    assert size <= 0.15
    assert power >= 0.7


def test_z2_input_errors():
    with pytest.raises(DataError, match="same"):
        acerbi_szekely_z2([1.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(DataError, match="> 0"):
        acerbi_szekely_z2([1.0], [1.0], [0.0])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(5, 300))
def test_cost_of_coverage_matches_brute_force(seed, n):
    rng = np.random.default_rng(seed)
    losses = np.abs(rng.standard_t(3, n)) * 0.02
    margin = np.abs(rng.normal(0.04, 0.02, n))
    c = cost_of_coverage(losses, margin)
    assert c.static_rate == pytest.approx(cost_of_coverage_reference(losses, margin))
    assert c.static_breaches <= c.dynamic_breaches


def test_cost_of_coverage_hand_case():
    losses = [0.01, 0.05, 0.02, 0.08, 0.03]
    margin = [0.04, 0.04, 0.04, 0.04, 0.04]  # breaches: 0.05 and 0.08 -> b = 2
    c = cost_of_coverage(losses, margin)
    assert (c.dynamic_breaches, c.static_rate, c.static_breaches) == (2, 0.03, 2)
    assert c.ratio == pytest.approx(0.04 / 0.03)
