"""Policy file parsing/validation and the bound/route rules (worked examples + properties)."""

from __future__ import annotations

import math
import tomllib
from importlib import resources

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from margincal.adjust.policy import Bounds, bound_target, default_policy, load_policy, route
from margincal.errors import ConfigError


def test_default_policy_is_package_data_and_valid():
    text = resources.files("margincal.adjust").joinpath("default_policy.toml").read_text()
    doc = tomllib.loads(text)
    pol = default_policy()
    assert pol["auto"]["max_increase"] == doc["auto"]["max_increase"] == 0.5
    assert pol["auto"]["max_decrease_per_day"] == 0.05
    assert pol["approval"]["decrease"] is True
    assert pol.name == "default" and len(pol.sha256) == 64


def test_partial_file_overrides_defaults(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('name = "strict"\n[approval]\ncritical_signals = true\n[auto]\nhysteresis = 0.1\n')
    pol = load_policy(f)
    assert pol.name == "strict"
    assert pol["approval"]["critical_signals"] is True and pol["auto"]["hysteresis"] == 0.1
    assert pol["auto"]["max_increase"] == 0.5  # untouched keys keep the defaults
    assert pol.sha256 != default_policy().sha256


@pytest.mark.parametrize("body, match", [
    ("[auto]\nmax_increase = -0.5\n", r"p\.toml: \[auto\] max_increase is -0\.5; it must be > 0"),
    ("[auto]\nmax_incraese = 0.5\n", r"p\.toml: \[auto\] has unknown key 'max_incraese'"),
    ("[autom]\nx = 1\n", r"p\.toml: unknown section \[autom\]"),
    ("[approval]\ndecrease = \"yes\"\n", r"\[approval\] decrease is 'yes'; it must be true or false"),
    ("[signals.breach_cluster]\nwarning = 2.5\n", r"\[signals\.breach_cluster\] warning is 2\.5; it must be a whole"),
    ("[signals.vol_regime]\nwarning = 3.0\n", r"\[signals\.vol_regime\] warning is 3\.0 but critical is 2\.5"),
    ("[target]\nanchor = \"yesterday\"\n", r"\[target\] anchor is 'yesterday'; it must be 'calibration' or 'start'"),
    ("[auto\nmax_increase = 1\n", r"p\.toml: not valid TOML"),
])
def test_invalid_policy_names_file_key_and_rule(tmp_path, body, match):
    f = tmp_path / "p.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=match):
        load_policy(f)


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy("no/such/policy.toml")


POL = default_policy()
B = dict(im_base=0.08, hours_since_change=100.0, hours_since_increase=100.0)


def test_bound_worked_examples():
    # hysteresis: 0.0840 is +5.0% of 0.08 -> inside the 5% band, no change
    assert bound_target(POL, current=0.08, target=0.0840, **B) is None
    # increase: target 0.20 from 0.08, at most +50% at once -> 0.12
    assert bound_target(POL, current=0.08, target=0.20, **B) == pytest.approx(0.12)
    # a modest increase is rounded UP to 5 bps: 0.0913 -> 0.0915
    assert bound_target(POL, current=0.08, target=0.0913, **B) == pytest.approx(0.0915)
    # cooldown: last increase 2h ago (< 6h) -> wait
    assert bound_target(POL, current=0.08, target=0.20, im_base=0.08, hours_since_change=2,
                        hours_since_increase=2) is None
    # decrease: 5%/day since the last change; 48h -> at most -10%: 0.10 -> 0.09
    assert bound_target(POL, current=0.10, target=0.05, im_base=0.08, hours_since_change=48,
                        hours_since_increase=48) == pytest.approx(0.09)
    # 12h after a change only -2.5% would be allowed, inside the band -> wait
    assert bound_target(POL, current=0.10, target=0.05, im_base=0.08, hours_since_change=12,
                        hours_since_increase=12) is None
    # floor: never below 75% of the calibrated IM (0.06), even after many days
    assert bound_target(POL, current=0.10, target=0.01, im_base=0.08, hours_since_change=24 * 30,
                        hours_since_increase=1e9) == pytest.approx(0.06)
    # cap 50%
    assert bound_target(POL, current=0.45, target=0.9, **B) == pytest.approx(0.5)


def test_route_worked_examples():
    # +25% is the automatic limit
    assert route(POL, current=0.08, new=0.10, critical=False) == [("auto", 0.10)]
    # +50%: the first +25% applies automatically, the full step is proposed
    assert route(POL, current=0.08, new=0.12, critical=False) == [("auto", 0.10), ("proposal", 0.12)]
    # any decrease needs an officer
    assert route(POL, current=0.10, new=0.09, critical=False) == [("proposal", 0.09)]
    # critical signals do not change routing by default, but do under a strict policy
    strict = load_policy(None, overrides={"approval": {"critical_signals": True}})
    assert route(strict, current=0.08, new=0.09, critical=True) == [("proposal", 0.09)]
    no_split = load_policy(None, overrides={"approval": {"split_large_increases": False}})
    assert route(no_split, current=0.08, new=0.12, critical=False) == [("proposal", 0.12)]
    auto_dec = load_policy(None, overrides={"approval": {"decrease": False}})
    assert route(auto_dec, current=0.10, new=0.09, critical=False) == [("auto", 0.09)]


@settings(max_examples=100, deadline=None)
@given(cur=st.floats(0.006, 0.5), target=st.floats(0.0001, 2.0), base=st.floats(0.005, 0.5),
       since=st.floats(0.0, 24 * 60))
@example(cur=0.00753171760465055, target=0.00753171760465055, base=0.0078125, since=6.0)  # found in CI
def test_bound_properties(cur, target, base, since):
    b = Bounds(POL)
    new = b.bound(cur, target, base, since, since)
    if new is None:
        return
    floor = max(POL["target"]["im_floor"], POL["target"]["floor_fraction_of_base"] * base)
    assert new <= POL["target"]["im_cap"] + 1e-12
    if new < cur:
        assert new >= min(floor, POL["target"]["im_cap"]) - 1e-12  # a decrease never goes below the floor
    assert abs(new / cur - 1) > POL["auto"]["hysteresis"] - 1e-12  # moves only outside the band
    if new > cur:
        assert new <= cur * 1.5 + 1e-12 and since >= POL["auto"]["increase_cooldown_hours"]
    else:
        assert new >= cur * (1 - 0.05 * since / 24) - 1e-12  # the daily speed limit
    # never overshoots the (floored, capped, rounded) target: rounded UP to the grid, so from a current rate
    # off the grid a target equal to it still moves (0.00753 -> 0.0080 at 5 bp)
    step, cap = POL["target"]["rounding"], POL["target"]["im_cap"]
    t = min(max(target, floor), cap)
    t = min(math.ceil(t / step - 1e-9) * step, cap) if step > 0 else t
    assert (new - cur) * (t - cur) > 0 and abs(new - cur) <= abs(t - cur) + POL["target"]["rounding"] + 1e-12
