"""The compiled (numba) Black-76 kernels against QuantLib, scipy and the numpy path (issue 17 item 8)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr, ndtri

from margincal.errors import DataError
from margincal.pricing import IVStatus, black76_greeks, black76_price, implied_vol

REF = Path(__file__).resolve().parents[1] / "reference" / "quantlib_black76.py"


def _load_reference():
    spec = importlib.util.spec_from_file_location("quantlib_black76", REF)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ql_rows():
    rows = _load_reference().generate()
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def iv_grid():
    rows = _load_reference().generate_iv_grid()
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def test_kernel_normal_cdf_against_scipy():
    from margincal.pricing import _kernels

    x = np.concatenate([np.linspace(-37.5, 9.0, 40001), np.random.default_rng(3).normal(0.0, 2.0, 20000)])
    ours = np.array([_kernels.ncdf(v) for v in x])
    ref = ndtr(x)
    assert np.max(np.abs(ours - ref)) <= 2.3e-16  # absolute, everywhere
    # relative: the rounding of x / sqrt 2 (in scipy) alone moves the lower tail by ~ x^2 eps
    eps = np.finfo(float).eps
    assert np.all(np.abs(ours - ref) <= 4 * eps * (1.0 + x * x) * ref)
    assert np.all(np.diff(np.array([_kernels.ncdf(v) for v in np.linspace(-10, 10, 20001)])) >= 0)


def test_kernel_inverse_normal_cdf_against_scipy():
    from numba import njit

    from margincal.pricing import _kernels

    @njit
    def apply(p):
        out = np.empty_like(p)
        for i in range(p.size):
            out[i] = _kernels._acklam(p[i])
        return out

    p = np.concatenate([10.0 ** np.linspace(-300, -0.31, 3000), np.random.default_rng(4).uniform(0, 1, 5000),
                        [_kernels._TINY]])
    ref = ndtri(p)
    # used by the wing branches of the initial guess only (Acklam's published bound: 1.15e-9 relative)
    assert np.max(np.abs(apply(p) - ref) / np.maximum(np.abs(ref), 1.0)) <= 1.15e-9
    assert np.isnan(_kernels._acklam(np.nan)) and _kernels._acklam(0.0) == -np.inf


def test_vectorised_exp_log_cdf_against_numpy_and_scipy():
    # the branch-free primitives of the vectorised price kernel, element by element
    from numba import njit

    from margincal.pricing import _kernels

    @njit
    def apply(x, which):
        out = np.empty_like(x)
        for i in range(x.size):
            if which == 0:
                out[i] = _kernels.vexp(x[i])
            elif which == 1:
                out[i] = _kernels.vlog(x[i])
            else:
                out[i] = _kernels.vncdf(x[i], _kernels.vgauss(x[i]))
        return out

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-708.0, 709.0, 50000), rng.uniform(-1.0, 1.0, 20000), [0.0, -708.0, 709.0]])
    assert np.max(np.abs(apply(x, 0) / np.exp(x) - 1.0)) <= 3.4e-16
    y = np.concatenate([10.0 ** rng.uniform(-300.0, 300.0, 50000), rng.uniform(0.5, 2.0, 50000), [1.0, 2.0]])
    ly = np.log(y)
    assert np.max(np.abs(apply(y, 1) - ly) / np.maximum(1.0, np.abs(ly))) <= 3.4e-16
    z = np.concatenate([np.linspace(-40.0, 12.0, 52001), rng.normal(0.0, 3.0, 50000)])
    assert np.max(np.abs(apply(z, 2) - ndtr(z))) <= 2.3e-16  # absolute: what a price needs


def test_numba_price_rejects_bad_input_like_numpy():
    for kw in ({"forward": -1.0}, {"strike": np.inf}, {"expiry_years": -0.1}, {"vol": np.nan}, {"rate": np.nan}):
        args = {"forward": [100.0, 100.0], "strike": 90.0, "expiry_years": 0.5, "vol": 0.4, "rate": 0.0}
        args.update({k: [1.0 if k != "rate" else 0.0, v] for k, v in kw.items()})
        msgs = []
        for backend in ("numpy", "numba"):
            with pytest.raises(DataError) as err:
                black76_price(args["forward"], args["strike"], args["expiry_years"], args["vol"], True,
                              rate=args["rate"], backend=backend)
            msgs.append(str(err.value))
        assert msgs[0] == msgs[1] and "[1]" in msgs[0]


def test_numba_price_matches_quantlib(ql_rows):
    r = ql_rows
    ours = black76_price(r["forward"], r["strike"], r["expiry"], r["vol"], r["is_call"], rate=r["rate"],
                         backend="numba")
    assert ours.shape == (1800,)
    # prices on F = 100 and F = 65,000: 3e-11 relative to the forward's scale (~2e-15 of 65,000 is 1.3e-10)
    scale = np.maximum(1.0, r["forward"] / 100.0)
    assert np.max(np.abs(ours - r["price"]) / scale) <= 3e-11


def test_numba_price_matches_scipy_closed_form_and_numpy_path():
    rng = np.random.default_rng(7)
    n = 20000
    F, K = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    T, v = rng.uniform(0.01, 2.0, n), rng.uniform(0.1, 1.5, n)
    call = rng.random(n) < 0.5
    rate = rng.uniform(-0.01, 0.08, n)
    ours = black76_price(F, K, T, v, call, rate=rate, backend="numba")
    sd = v * np.sqrt(T)
    d1 = np.log(F / K) / sd + 0.5 * sd
    d2 = d1 - sd
    cdf = stats.norm.cdf
    ref = np.exp(-rate * T) * np.where(call, F * cdf(d1) - K * cdf(d2), K * cdf(-d2) - F * cdf(-d1))
    assert np.max(np.abs(ours - ref)) <= 3e-11
    assert np.max(np.abs(ours - black76_price(F, K, T, v, call, rate=rate))) <= 1e-13
    # broadcasting, zero expiry / zero vol and inverse (coin) prices behave as on the numpy path
    Fb = np.array([[90.0], [100.0], [120.0]])
    assert np.allclose(black76_price(Fb, [80.0, 100.0, 150.0], 0.3, 0.7, False, rate=0.03, backend="numba"),
                       black76_price(Fb, [80.0, 100.0, 150.0], 0.3, 0.7, False, rate=0.03), rtol=1e-13, atol=1e-13)
    edge = black76_price([90.0, 110.0, 110.0], 100.0, [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], True, rate=0.05,
                         backend="numba")
    assert edge.tolist() == pytest.approx([0.0, 10.0, 10.0 * math.exp(-0.05)])
    coin = black76_price(68800.0, 70000.0, 30 / 365, 0.55, "C", inverse=True, backend="numba")
    assert coin == pytest.approx(float(black76_price(68800.0, 70000.0, 30 / 365, 0.55, "C")) / 68800.0, rel=1e-14)


def test_numba_implied_vol_round_trip_1e12():
    # the benchmark's distribution: |vol - true vol| <= 1e-12 wherever the price pins the vol to 1e-12
    rng = np.random.default_rng(11)
    n = 50000
    F, K = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    T, v = rng.uniform(0.01, 2.0, n), rng.uniform(0.1, 1.5, n)
    call = rng.random(n) < 0.5
    price = black76_price(F, K, T, v, call)
    res = implied_vol(price, F, K, T, call, backend="numba")
    vega = black76_greeks(F, K, T, v, call).vega
    with np.errstate(divide="ignore"):
        good = np.finfo(float).eps * (F + K) / vega <= 1e-12
    assert good.sum() > 0.9 * n
    assert np.all(res.status[good] == IVStatus.OK)
    assert np.max(np.abs(res.vol[good] - v[good])) <= 1e-12
    ref = implied_vol(price, F, K, T, call)
    assert np.array_equal(res.status, ref.status)
    assert np.nanmax(np.abs(res.vol - ref.vol)) <= 1e-13


def test_numba_implied_vol_matches_quantlib_on_wide_grid(iv_grid):
    r = iv_grid
    res = implied_vol(r["price"], r["forward"], r["strike"], r["expiry"], r["is_call"], backend="numba")
    eps = np.finfo(float).eps
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(r["vega"] > 0, eps * (r["forward"] + r["strike"]) / r["vega"], np.inf)
    tv = r["price"] - np.maximum(np.where(r["is_call"], 1.0, -1.0) * (r["forward"] - r["strike"]), 0.0)
    good = (cond <= 1e-12) & (r["price"] > 1e-300) & (tv > 0)
    assert good.sum() > 1000
    assert np.all(res.status[good] == IVStatus.OK)
    assert np.max(np.abs(res.vol[good] - r["vol"][good])) < 1e-10
    # same statuses and vols as the numpy path on the whole grid (wings deferred to it included)
    ref = implied_vol(r["price"], r["forward"], r["strike"], r["expiry"], r["is_call"])
    assert np.array_equal(res.status, ref.status)
    ok = res.status == IVStatus.OK
    assert np.max(np.abs(res.vol[ok] - ref.vol[ok]) / ref.vol[ok]) < 1e-12


def test_numba_implied_vol_flags_and_inverse():
    F, K, T = 100.0, 90.0, 0.5
    D = math.exp(-0.05 * T)
    prices = [D * 9.0, D * 10.0, D * 100.0, 12.0, -1.0, np.nan]
    res = implied_vol(prices, F, K, T, "C", rate=0.05, backend="numba")
    assert res.status.tolist() == [IVStatus.BELOW_INTRINSIC, IVStatus.AT_INTRINSIC, IVStatus.ABOVE_MAX,
                                   IVStatus.OK, IVStatus.INVALID_INPUT, IVStatus.INVALID_INPUT]
    assert res.vol[1] == 0.0
    assert float(black76_price(F, K, T, res.vol[3], "C", rate=0.05)) == pytest.approx(12.0, abs=1e-12)
    Ks = np.array([40000.0, 60000.0, 70000.0, 120000.0])
    coin = black76_price(68800.0, Ks, 45 / 365, 0.62, "P", inverse=True)
    inv = implied_vol(coin, 68800.0, Ks, 45 / 365, "P", inverse=True, backend="numba")
    assert np.max(np.abs(inv.vol - 0.62)) <= 1e-10


def test_unknown_backend_is_a_named_error():
    with pytest.raises(DataError, match="backend"):
        black76_price(100.0, 100.0, 1.0, 0.5, backend="gpu")
    with pytest.raises(DataError, match="backend"):
        implied_vol(10.0, 100.0, 100.0, 1.0, backend="fast")


def test_kernel_erfcx_rationals_against_scipy():
    # Cephes' erfc rationals without their exp(-z^2) factor are erfcx on z >= 1 (the low-wing objective's form)
    from numba import njit
    from scipy.special import erfcx

    from margincal.pricing import _kernels

    @njit
    def apply(z):
        out = np.empty_like(z)
        for i in range(z.size):
            out[i] = _kernels._erfcx_ge1(z[i])
        return out

    z = np.linspace(1.0, 30.0, 60001)
    assert np.max(np.abs(apply(z) / erfcx(z) - 1.0)) <= 1.3e-15
    z = 10.0 ** np.random.default_rng(6).uniform(0.0, 8.0, 20000)
    assert np.max(np.abs(apply(z) / erfcx(z) - 1.0)) <= 3.5e-15


def test_contracted_primitives_against_numpy_and_scipy():
    # the kernels are compiled with fastmath={"contract"} (a * b + c may become one FMA): the inlined
    # primitives keep their accuracy under it, and the Dekker split of _gauss_exact (compiled without
    # the flag) still gives the exact square
    from numba import njit

    from margincal.pricing import _kernels

    @njit(fastmath={"contract"})
    def apply(x, which):
        out = np.empty_like(x)
        for i in range(x.size):
            if which == 0:
                out[i] = _kernels.vexp(x[i])
            elif which == 1:
                out[i] = _kernels.vlog(x[i])
            elif which == 2:
                out[i] = _kernels.vncdf(x[i], _kernels.vgauss(x[i]))
            else:
                out[i] = _kernels._ncdf_e(x[i], _kernels._gauss_exact(abs(x[i])))
        return out

    rng = np.random.default_rng(8)
    x = np.concatenate([rng.uniform(-708.0, 709.0, 50000), rng.uniform(-1.0, 1.0, 20000), [0.0, -708.0, 709.0]])
    assert np.max(np.abs(apply(x, 0) / np.exp(x) - 1.0)) <= 3.4e-16
    y = np.concatenate([10.0 ** rng.uniform(-300.0, 300.0, 50000), rng.uniform(0.5, 2.0, 50000), [1.0, 2.0]])
    ly = np.log(y)
    assert np.max(np.abs(apply(y, 1) - ly) / np.maximum(1.0, np.abs(ly))) <= 3.4e-16
    z = np.concatenate([np.linspace(-40.0, 12.0, 52001), rng.normal(0.0, 3.0, 50000)])
    assert np.max(np.abs(apply(z, 2) - ndtr(z))) <= 2.3e-16
    w = np.concatenate([np.linspace(-37.5, 9.0, 40001), rng.normal(0.0, 2.0, 20000)])
    ref = ndtr(w)
    eps = np.finfo(float).eps
    assert np.all(np.abs(apply(w, 3) - ref) <= 4 * eps * (1.0 + w * w) * ref)


def test_numba_implied_vol_solves_deep_low_wing_in_kernel():
    # deep out of the money with small total std dev (d1 far below -5, b down to ~1e-300): the kernel's
    # erfcx form solves them itself (formerly deferred to the numpy path) and agrees with the numpy path
    from margincal.pricing import _kernels

    rng = np.random.default_rng(12)
    n = 20000
    F = np.full(n, 100.0)
    K = F * np.exp(rng.uniform(-6.0, 6.0, n))
    T = rng.uniform(1.0 / 365.0, 2.0, n)
    v = rng.uniform(0.01, 0.6, n)
    call = K > F  # out of the money
    price = black76_price(F, K, T, v, call)
    vol, st, cnt = np.empty(n), np.empty(n, dtype=np.int8), np.zeros(n, dtype=np.int8)
    deferred = _kernels.implied_vol_kernel(price, F, K, T, call, np.array([0.0]), False, vol, st, cnt)
    assert deferred == 0
    sd = v * np.sqrt(T)
    d1 = np.log(F / K) / sd + 0.5 * sd
    deep = (d1 < -5.0) & (price > 1e-300)
    assert deep.sum() > 2000
    ref = implied_vol(price, F, K, T, call)
    assert np.array_equal(st, ref.status)
    ok = st == IVStatus.OK
    assert np.all(ok[deep])
    assert np.max(np.abs(vol[ok] - ref.vol[ok]) / ref.vol[ok]) <= 1e-12
    assert np.max(np.abs(vol[deep] / v[deep] - 1.0)) <= 1e-10
