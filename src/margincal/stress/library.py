"""The scenario library: historical windows cut from the bundled real data, plus hypothetical shocks.

Historical scenarios (:class:`~margincal.stress.scenarios.HistoricalScenario`)
------------------------------------------------------------------------------
* **Named crashes** (:data:`NAMED_EVENTS`): whole UTC days. Each coin moves by its
  close-to-close log return from the close of the day before ``start`` to the close of
  the last day of the window (daily Binance spot files, all ten coins). The worst
  intra-window low / high against the start close is kept in ``extremes`` (hourly bars
  where bundled, else daily). Perpetual funding accrued in the window comes from the
  bundled 8-hourly funding files (BTC, ETH).
* **Worst windows** found automatically per horizon (1h, 4h on the hourly BTC spot
  file; 1d, 3d on the daily file): the ``n`` largest falls and the ``n`` largest rises
  of BTC, non-overlapping (greedy: take the worst, drop every window that shares a bar
  with it, repeat). Other coins move by their own return over the same window when the
  data has them at that resolution (ETH and SOL hourly; every coin daily), otherwise by
  ``beta x`` the BTC move, with ``beta`` the OLS slope of their daily log returns on
  BTC's over the whole common history (listed in ``proxied``).
* Coins not listed yet at the time of a window are also proxied by beta.

Hypothetical shocks: :func:`margincal.stress.scenarios.hypothetical_scenarios`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from margincal import datasets
from margincal.errors import ConfigError, DataError
from margincal.stress.scenarios import HistoricalScenario, Scenario, ShockLeg, hypothetical_scenarios

if TYPE_CHECKING:
    from margincal.margin.account import Account, AccountView
    from margincal.stress.book import StressMarket

COINS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "TRX", "BCH", "LTC")
HOURLY = {f.symbol: f.file for f in datasets.files(kind="hourly") if f.market == "spot"}
FUNDING = {f.symbol: f.file for f in datasets.files(kind="funding")}
HORIZONS_HOURS = (1.0, 4.0, 24.0, 72.0)


@dataclass(frozen=True)
class NamedEvent:
    name: str
    start: str  # first UTC day of the window
    end: str  # last UTC day of the window (inclusive)
    description: str


NAMED_EVENTS: tuple[NamedEvent, ...] = (
    NamedEvent("covid-2020-03-12", "2020-03-12", "2020-03-12",
               "COVID 'Black Thursday': BTC closed at 4,800 (Binance), about -40% close to close"),
    NamedEvent("may-2021-05-19", "2021-05-19", "2021-05-19",
               "China mining/trading crackdown sell-off; record crypto liquidations that day"),
    NamedEvent("luna-2022-05-09-12", "2022-05-09", "2022-05-12",
               "Terra/LUNA and UST collapse, four days"),
    NamedEvent("celsius-3ac-2022-06-13", "2022-06-13", "2022-06-13",
               "Celsius froze withdrawals; Three Arrows Capital distress"),
    NamedEvent("ftx-2022-11-08-10", "2022-11-08", "2022-11-10",
               "FTX/Alameda collapse, three days; SOL hit hardest"),
    NamedEvent("yen-carry-2024-08-05", "2024-08-05", "2024-08-05",
               "Yen carry-trade unwind: global risk-off, Nikkei -12%"),
    NamedEvent("oct-2025-10-10", "2025-10-10", "2025-10-10",
               "2025-10-10 tariff shock: largest single-day liquidation on record; BTC 21:00Z bar low 102,000"),
)


# ---------------------------------------------------------------- data


@functools.lru_cache(maxsize=16)
def daily_closes(coin: str) -> pd.DataFrame:
    """Daily bars of a bundled coin (index: UTC date, naive)."""
    d = datasets.load_daily(coin)[["open", "high", "low", "close"]]
    d.index = d.index.tz_localize(None).rename("date")
    return d


@functools.lru_cache(maxsize=8)
def hourly_bars(coin: str) -> pd.DataFrame:
    """Hourly spot bars on a complete hourly grid (missing hours are NaN rows); index naive UTC open time."""
    if coin not in HOURLY:
        raise DataError(f"no bundled hourly file for {coin}; hourly data exists for {', '.join(HOURLY)}")
    d = datasets.load_hourly(coin, "spot")[["open", "high", "low", "close"]]
    d.index = d.index.tz_localize(None).rename("timestamp")
    grid = pd.date_range(d.index[0], d.index[-1], freq="h")
    return d.reindex(grid)


@functools.lru_cache(maxsize=4)
def funding_series(coin: str) -> pd.Series:
    if coin not in FUNDING:
        raise DataError(f"no bundled funding file for {coin}; funding exists for {', '.join(FUNDING)}")
    f = datasets.load_funding(coin)
    return pd.Series(f.to_numpy(), index=f.index.tz_localize(None).rename("funding_time"))


@functools.lru_cache(maxsize=1)
def betas_to_btc() -> dict[str, float]:
    """OLS slope of each coin's daily log return on BTC's over their common history."""
    btc = np.log(daily_closes("BTC")["close"]).diff()
    out = {"BTC": 1.0}
    for c in COINS[1:]:
        r = np.log(daily_closes(c)["close"]).diff()
        df = pd.concat([r, btc], axis=1, join="inner").dropna()
        x, y = df.iloc[:, 1].to_numpy(), df.iloc[:, 0].to_numpy()
        out[c] = float(np.cov(x, y)[0, 1] / np.var(x, ddof=1))
    return out


def _funding_between(coin: str, start: pd.Timestamp, end: pd.Timestamp) -> float | None:
    if coin not in FUNDING:
        return None
    s = funding_series(coin)
    if start < s.index[0]:
        return None
    return float(s[(s.index > start) & (s.index <= end)].sum())


def _daily_move(coin: str, first_day: pd.Timestamp, last_day: pd.Timestamp
                ) -> tuple[float, float, float] | None:
    d = daily_closes(coin)
    prev = first_day - pd.Timedelta(days=1)
    if prev not in d.index or last_day not in d.index:
        return None
    p0 = float(d.loc[prev, "close"])
    w = d.loc[first_day:last_day]
    return (float(np.log(d.loc[last_day, "close"] / p0)), float(np.log(w["low"].min() / p0)),
            float(np.log(w["high"].max() / p0)))


def _hourly_move(coin: str, start: pd.Timestamp, end: pd.Timestamp) -> tuple[float, float, float] | None:
    """Move over bars with open time in [start, end): close of the bar before start -> close of the last bar."""
    if coin not in HOURLY:
        return None
    h = hourly_bars(coin)
    prev = start - pd.Timedelta(hours=1)
    last = end - pd.Timedelta(hours=1)
    if prev not in h.index or last not in h.index:
        return None
    p0, p1 = h.loc[prev, "close"], h.loc[last, "close"]
    if not (np.isfinite(p0) and np.isfinite(p1)):
        return None
    w = h.loc[start:last]
    return (float(np.log(p1 / p0)), float(np.log(np.nanmin(w["low"]) / p0)), float(np.log(np.nanmax(w["high"]) / p0)))


# ---------------------------------------------------------------- named events


def named_scenario(event: NamedEvent) -> HistoricalScenario:
    first, last = pd.Timestamp(event.start), pd.Timestamp(event.end)
    start_ts, end_ts = first, last + pd.Timedelta(days=1)
    spot, extremes, proxied, funding = {}, {}, [], {}
    beta = betas_to_btc()
    btc = _daily_move("BTC", first, last)
    if btc is None:
        raise DataError(f"{event.name}: BTC daily data does not cover {event.start}..{event.end}")
    for c in COINS:
        mv = _daily_move(c, first, last)
        if mv is None:
            spot[c] = beta[c] * btc[0]
            proxied.append(c)
            continue
        spot[c] = mv[0]
        hm = _hourly_move(c, start_ts, end_ts)
        extremes[c] = (hm[1], hm[2]) if hm is not None else (mv[1], mv[2])
        f = _funding_between(c, start_ts, end_ts)
        if f is not None:
            funding[c] = f
    return HistoricalScenario(
        name=event.name, description=event.description, start=start_ts.isoformat() + "Z",
        end=end_ts.isoformat() + "Z", horizon_hours=(end_ts - start_ts).total_seconds() / 3600.0, spot=spot,
        funding=funding, extremes=extremes, proxied=tuple(proxied),
        source="bundled Binance spot daily closes (moves), hourly bars (BTC/ETH/SOL extremes), 8h funding",
    )


# ---------------------------------------------------------------- worst windows


def worst_windows(log_close: np.ndarray, h: int, n: int, direction: str = "down") -> list[tuple[int, float]]:
    """The ``n`` worst non-overlapping ``h``-bar log returns: list of (end index, move), worst first.

    Window ending at bar ``t`` spans bars ``t-h+1..t`` (its start price is the close of bar ``t-h``).
    Missing closes (NaN) make a window invalid. Greedy: take the most extreme remaining window,
    then discard every window sharing a bar with it.
    """
    if h < 1 or n < 1:
        raise ConfigError(f"worst_windows: h={h} and n={n} must be >= 1")
    x = np.asarray(log_close, dtype=float)
    mv = np.full(x.size, np.nan)
    mv[h:] = x[h:] - x[:-h]
    valid = np.flatnonzero(np.isfinite(mv))
    key = mv[valid] if direction == "down" else -mv[valid]
    order = valid[np.argsort(key, kind="stable")]
    used = np.zeros(x.size, dtype=bool)
    out: list[tuple[int, float]] = []
    for t in order:
        if used[t - h + 1: t + 1].any():
            continue
        out.append((int(t), float(mv[t])))
        used[t - h + 1: t + 1] = True
        if len(out) == n:
            break
    return out


def worst_window_scenarios(n: int = 3, horizons_hours: tuple[float, ...] = HORIZONS_HOURS
                           ) -> list[HistoricalScenario]:
    """``n`` worst falls and ``n`` worst rises of BTC per horizon, as joint scenarios (see module doc)."""
    beta = betas_to_btc()
    out: list[HistoricalScenario] = []
    for hh in horizons_hours:
        daily = hh >= 24.0
        if daily:
            if hh % 24:
                raise ConfigError(f"horizon {hh}h: daily windows must be whole days")
            bars = daily_closes("BTC")
            h = int(hh // 24)
            step = pd.Timedelta(days=1)
        else:
            bars = hourly_bars("BTC")
            h = int(hh)
            step = pd.Timedelta(hours=1)
        lc = np.log(bars["close"].to_numpy(dtype=float))
        label = f"{int(hh)}h" if hh < 24 else f"{int(hh // 24)}d"
        for direction in ("down", "up"):
            for rank, (t, mv) in enumerate(worst_windows(lc, h, n, direction), start=1):
                start = bars.index[t - h + 1]
                end = bars.index[t] + step
                spot, extremes, proxied, funding = {}, {}, [], {}
                for c in COINS:
                    m = (_daily_move(c, start, bars.index[t]) if daily else _hourly_move(c, start, end))
                    if c == "BTC" and m is None:
                        m = (mv, mv, mv)
                    if m is None:
                        spot[c] = beta[c] * mv
                        proxied.append(c)
                    else:
                        spot[c] = m[0]
                        extremes[c] = (m[1], m[2])
                    f = _funding_between(c, start, end)
                    if f is not None:
                        funding[c] = f
                word = "fall" if direction == "down" else "rise"
                name = f"worst-{label}-{word}-{rank}"
                out.append(HistoricalScenario(
                    name=name,
                    description=f"BTC {label} {word} #{rank}: {np.expm1(mv):+.1%} from {start:%Y-%m-%d %H:%M}Z",
                    start=start.isoformat() + "Z", end=end.isoformat() + "Z", horizon_hours=hh, spot=spot,
                    funding=funding, extremes=extremes, proxied=tuple(proxied),
                    source=("bundled Binance spot daily closes" if daily else
                            "bundled Binance spot hourly closes (BTC/ETH/SOL), beta proxy for daily-only coins"),
                ))
    return out


@dataclass(frozen=True)
class StablecoinDepeg(Scenario):
    """A stablecoin used as collateral trades at ``price`` USD while crypto moves ``spot_move`` (log).

    Positions see only ``spot_move``; the collateral side is what breaks:
    :meth:`apply_to_account` marks the coin at ``price`` and returns the
    account view (equity, margin ratio, liquidation prices) under the depeg,
    and :attr:`haircut_floor` (``1 - price``) is the floor a collateral
    haircut of that coin should not go below (``HaircutPolicy.stress_floors``).
    """

    coin: str = "USDE"
    price: float = 0.65
    spot_move: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.price <= 1.0:
            raise ConfigError(f"StablecoinDepeg.price is {self.price}; it must be in (0, 1]")

    def legs(self, market: StressMarket) -> list[ShockLeg]:
        return [ShockLeg(default_spot=self.spot_move)]

    @property
    def haircut_floor(self) -> float:
        return 1.0 - self.price

    def collateral_prices(self, prices: dict[str, float]) -> dict[str, float]:
        """``prices`` with the depegged coin at ``price`` and every crypto moved by ``spot_move``."""
        out = {k: (v * float(np.exp(self.spot_move)) if k.upper() not in STABLE_NAMES else v)
               for k, v in prices.items()}
        out[self.coin.upper()] = self.price
        return out

    def apply_to_account(self, account: Account, prices: dict[str, float]) -> AccountView:
        """:class:`margincal.margin.account.AccountView` of ``account`` under the depeg."""
        return account.view(self.collateral_prices(dict(prices)))

    def summary(self) -> dict:
        out = super().summary()
        out.update({"coin": self.coin, "price": self.price, "spot_move": self.spot_move, "source": self.source})
        return out


STABLE_NAMES = ("USD", "USDT", "USDC", "USDE", "DAI", "FDUSD")


def depeg_scenarios() -> list[StablecoinDepeg]:
    """Stablecoin depegs seen in the data's history (sources in docs/stress_testing.md and the scenario)."""
    btc = daily_closes("BTC")["close"]
    move = float(np.log(btc.loc["2025-10-10"] / btc.loc["2025-10-09"]))  # BTC close to close that day (-7.3%)
    return [
        StablecoinDepeg("usde-depeg-2025-10-10", "USDe at 0.65 on Binance's USDe/USDT book while BTC moved "
                        f"{np.expm1(move):.1%} close to close (10 Oct 2025)", coin="USDE", price=0.65, spot_move=move,
                        source="https://stabledash.com/news/2025-10-13-usde-depeg"),
        StablecoinDepeg("usdc-depeg-2023-03-11", "USDC at 0.88 after Circle disclosed 3.3bn of reserves at SVB "
                        "(11 Mar 2023, CoinGecko low)", coin="USDC", price=0.88, spot_move=0.0,
                        source="https://ktvz.com/money/cnn-business-consumer/2023/03/11/"
                               "stablecoin-usdc-breaks-dollar-peg-after-revealing-3-3-billion-silicon-valley-bank-exposure/"),
    ]


@functools.lru_cache(maxsize=4)
def _historical(n_worst: int) -> tuple[HistoricalScenario, ...]:
    return tuple([named_scenario(e) for e in NAMED_EVENTS] + worst_window_scenarios(n_worst))


def historical_scenarios(n_worst: int = 3) -> list[HistoricalScenario]:
    """Named crashes plus the worst windows (cached per ``n_worst``)."""
    return list(_historical(int(n_worst)))


def scenario_library(n_worst: int = 3) -> list[Scenario]:
    """Every scenario: historical (named + worst windows) then hypothetical."""
    return [*historical_scenarios(n_worst), *hypothetical_scenarios(), *depeg_scenarios()]


def get_scenarios(name: str, n_worst: int = 3) -> list[Scenario]:
    """``"all"``, ``"historical"``, ``"hypothetical"``, or one scenario name (comma-separated list allowed)."""
    lib = scenario_library(n_worst)
    if name == "all":
        return lib
    if name == "historical":
        return list(historical_scenarios(n_worst))
    if name == "hypothetical":
        return hypothetical_scenarios()
    if name == "depeg":
        return list(depeg_scenarios())
    by_name = {s.name: s for s in lib}
    out = []
    for part in [p.strip() for p in name.split(",") if p.strip()]:
        if part not in by_name:
            raise ConfigError(f"scenario {part!r} is not in the library; names: all, historical, hypothetical, depeg, "
                              + ", ".join(by_name))
        out.append(by_name[part])
    return out
