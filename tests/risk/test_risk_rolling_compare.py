"""Rolling forecasts (vectorised == per-window refit) and the model comparison on bundled data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from margincal.config import sample_data_dir
from margincal.errors import DataError
from margincal.risk.compare import (
    bundled_daily_symbols,
    compare_models,
    load_daily_log_returns,
    load_daily_panel,
    markdown_table,
)
from margincal.risk.rolling import rolling_forecasts, rolling_forecasts_reference


@pytest.fixture(scope="module")
def eth() -> pd.Series:
    return load_daily_log_returns("eth").iloc[-500:]


@pytest.mark.parametrize("model", ["hs", "fhs", "normal", "cf"])
@pytest.mark.parametrize("horizon", [24, "10d"])
def test_vectorised_rolling_equals_refit_per_window(model: str, horizon: object, eth: pd.Series) -> None:
    fast = rolling_forecasts(eth, model, window=365, horizon=horizon)
    slow = rolling_forecasts_reference(eth, model, window=365, horizon=horizon)
    assert len(fast) == len(eth) - 365 + 1
    assert fast.index.equals(slow.index) and fast.index[-1] == eth.index[-1]
    assert np.allclose(fast["var"], slow["var"], rtol=1e-12, atol=0)
    assert np.allclose(fast["es"], slow["es"], rtol=1e-12, atol=0)
    assert (fast["side"] == slow["side"]).all()


def test_rolling_generic_path_and_step(eth: pd.Series) -> None:
    out = rolling_forecasts(eth, "t", window=400, step=25)
    assert len(out) == 5 and out.index[-1] == eth.index[-1]
    from margincal.risk.models import make_model

    last = make_model("t").fit(eth.iloc[-400:]).forecast(24, 0.99)
    assert out["var"].iloc[-1] == pytest.approx(last.var, rel=1e-12)
    with pytest.raises(DataError, match="window"):
        rolling_forecasts(eth, "hs", window=10_000)


def test_rolling_non_default_params_fall_back_to_loop(eth: pd.Series) -> None:
    a = rolling_forecasts(eth, "fhs", window=365, step=50, params={"lam": 0.97, "side": "long"})
    b = rolling_forecasts_reference(eth, "fhs", window=365, params={"lam": 0.97, "side": "long"},
                                    ends=np.arange(499, 364, -50)[::-1], index=eth.index)
    assert np.allclose(a["var"], b["var"]) and (a["side"] == "long").all()


def test_bundled_data_loader() -> None:
    syms = bundled_daily_symbols()
    assert syms == ["ada", "bch", "bnb", "btc", "doge", "eth", "ltc", "sol", "trx", "xrp"]
    r = load_daily_log_returns("btc")
    assert r.name == "BTC" and str(r.index.tz) == "UTC" and r.index.is_monotonic_increasing
    # PROVENANCE check values: close 2022-11-09 = 15,922.81; the log return that day = log(15922.81 / close 11-08)
    raw = pd.read_csv(sample_data_dir() / "btc_daily.csv")
    c = raw.set_index("date")["close"]
    assert c["2022-11-09"] == 15922.81
    assert r.loc["2022-11-09"] == pytest.approx(np.log(15922.81 / c["2022-11-08"]), rel=1e-12)
    with pytest.raises(DataError, match="no such bundled file"):
        load_daily_log_returns("nope")
    panel = load_daily_panel(["btc", "sol"])
    assert list(panel.columns) == ["BTC", "SOL"] and panel["SOL"].isna().sum() > 1000  # SOL lists in 2020


def test_compare_models_table() -> None:
    df = compare_models(models=["hs", "normal", "evt"], symbols=["btc", "trx"])
    assert len(df) == 6 and set(df["model"]) == {"hs", "normal", "evt"}
    assert (df["es"] >= df["var"]).all() and (df["var"] > 0).all()
    assert set(df["as_of"]) == {"2026-03-30"}
    table = markdown_table(df)
    assert table.splitlines()[0] == "| instrument | as of | hs | normal | evt |"
    btc = df[(df.instrument == "BTC") & (df.model == "hs")].iloc[0]
    assert f"{100 * btc['var']:.2f} / {100 * btc['es']:.2f}" in table
