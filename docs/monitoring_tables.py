"""Tables for docs/monitoring.md: four crash replays and the unattended full-history replay.

Usage::

    python docs/monitoring_tables.py [POLICY.toml]   # prints markdown (a few minutes); default policy if omitted

Builds a temporary store from the bundled data (Binance USD-M BTC/ETH perpetual hourly bars, 8-hourly
funding, daily aggregate BTC open interest), and for each crash window (FTX, COVID, the 2024-08-05 yen
carry unwind, the 2025-10-10 cascade) calibrates on the data before it (the published rule, as
``margincal monitor --calibrate``), replays it with 60 days of warm-up through
:class:`margincal.adjust.monitor.Monitor` with the policy, and prints:

1. which signal moved which parameter and when (every automatic change and proposal, with the
   components of its target);
2. per day and instrument, target vs applied IM, the largest 24h move against the IM in force when
   that 24h window began, and the worst move over the close-out horizon of a 100,000 USD position
   (margin v2, ``margin.horizon.CloseOutModel.im_horizon``) on the shortest bundled bars, breaches
   marked, and whether a speed limit made the applied rate lag a target that would have covered it;
3. crash-day coverage over both horizons: the named stress days (margin.backtest.crash) covered by
   the monitored IM and by each static venue preset (its rate for a 100,000 USD position), and whether
   the monitor covers at least as many as the best venue preset for BTC/ETH;
4. proposal noise of an unattended replay of the whole bundled history (proposals per instrument-week,
   outside and inside stress weeks).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from margincal import datasets
from margincal.adjust.monitor import Monitor
from margincal.adjust.policy import Policy, default_policy, load_policy
from margincal.backtest.crash import STRESS_EVENTS
from margincal.backtest.intrabar import adverse_excursion, horizon_in_bars
from margincal.config import CalibrationSettings, sample_data_dir
from margincal.data.feeds import ReplayFeed
from margincal.data.store import connect, load_bars, transaction
from margincal.margin import presets
from margincal.margin.horizon import CloseOutModel
from margincal.margin.liquidity import LiquidityModel
from margincal.margin.params import new_run_id, publish
from margincal.margin.published import calibrate_store, to_parameter_set

INSTRUMENTS = ("BTC-PERP", "ETH-PERP")
WINDOWS = {"FTX collapse": ("2022-11-01", "2022-11-20"), "COVID crash": ("2020-03-01", "2020-03-31"),
           "Yen carry-trade unwind": ("2024-07-29", "2024-08-11"),
           "10 October 2025 liquidation cascade": ("2025-10-04", "2025-10-17")}
PRESET_NOTIONAL = 100_000.0  # the reference position: venue presets at this size, close-out horizon of this size
#: the shortest bundled bars per crash window (close-out horizon moves); hourly perpetual bars otherwise
INTRADAY = {"2024-07-29": "1m", "2025-10-04": "5m"}
POLICY: Policy = default_policy()


def build_store(path: Path) -> Path:
    d = sample_data_dir()
    con = connect(path)
    with transaction(con):
        for f, inst in [("btcusdt_perp_1h.csv.gz", "BTC-PERP"), ("ethusdt_perp_1h.csv.gz", "ETH-PERP")]:
            df = pd.read_csv(d / f)
            frame = pd.DataFrame({"instrument": inst, "timeframe": "1h",
                                  "ts": pd.to_datetime(df["timestamp"]).dt.tz_localize(None), "open": df["open"],
                                  "high": df["high"], "low": df["low"], "close": df["close"], "volume": df["volume"]})
            con.register("frame", frame)
            con.execute("INSERT INTO bars SELECT * FROM frame")
            con.unregister("frame")
        for f, inst in [("btcusdt_funding.csv", "BTC-PERP"), ("ethusdt_funding.csv", "ETH-PERP")]:
            df = pd.read_csv(d / f)
            frame = pd.DataFrame({"instrument": inst, "ts": pd.to_datetime(df["funding_time"]).dt.tz_localize(None),
                                  "rate": df["funding_rate"]})
            con.register("frame", frame)
            con.execute("INSERT INTO funding SELECT * FROM frame")
            con.unregister("frame")
        df = pd.read_csv(d / "btc_open_interest_daily.csv")
        frame = pd.DataFrame({"instrument": "BTC-PERP", "ts": pd.to_datetime(df["date"]),
                              "oi": df["open_interest_usd"]})
        con.register("frame", frame)
        con.execute("INSERT INTO open_interest SELECT instrument, ts, oi, NULL FROM frame")
        con.unregister("frame")
    con.close()
    return path


def calibrate(store: Path, before: pd.Timestamp) -> dict[str, float]:
    settings = CalibrationSettings()
    con = connect(store)
    try:
        # the published rule's own calibration (coin reference series, funding) on data known before the window,
        # as `margincal monitor --calibrate` does
        cals = calibrate_store(con, [(i, "1h") for i in INSTRUMENTS], settings, before=before)
        publish(con, to_parameter_set(cals, settings, new_run_id()), created_by="docs", source="calibration")
    finally:
        con.close()
    return {c.instrument: c.im_rate for c in cals}


TARGETS: dict[str, list[tuple[pd.Timestamp, float]]] = {}


def replay(store: Path, start: str, end: str, name: str) -> tuple[list[dict], dict[str, float], object]:
    t0 = pd.Timestamp(start, tz="UTC")
    t1 = pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    base = calibrate(store, t0)
    recs: list[dict] = []
    TARGETS.clear()

    def collect(ev, sigs, records) -> None:
        recs.extend({"type": "signal", **s.as_dict()} for s in sigs)
        recs.extend(records)

    mon = Monitor(store, POLICY, name=name, live_from=t0)

    def tick(ev) -> None:  # the target after every bar (engine.target: no state change)
        if ev.kind == "bar" and ev.t_ns >= t0.value:
            tg = mon.engine.target(ev.instrument)
            if tg is not None:
                TARGETS.setdefault(ev.instrument, []).append((pd.Timestamp(ev.t_ns, tz="UTC"), tg[0]))

    rep = mon.run(ReplayFeed(store, list(INSTRUMENTS), t0 - pd.Timedelta(days=60), t1), on_output=collect,
                  on_tick=tick, tick_every=1)
    return recs, base, rep


def _p(x: float) -> str:
    return f"{100 * x:.2f}%"


def mapping_table(recs: list[dict], lo: str, hi: str) -> None:
    print("| time (UTC) | instrument | what | IM | target | moved by | scope / effective |\n|---|---|---|---|---|---|---|")
    for r in recs:
        if r["type"] == "signal" or "skipped" in r or not (lo <= r["ts"][:10] <= hi):
            continue
        kind = r.get("kind", "rate")
        what = f"**auto v{r['version']}**" if r["type"] == "adjustment" else "proposal"
        if kind != "rate":
            what += f" ({kind.replace('_', ' ')})"
        comp = r.get("components") or {}
        moved = ", ".join(comp.get("moved_by", [])) or ("MM (announced change)" if kind == "mm_effective" else "-")
        if kind == "mm_effective":
            im = f"MM {_p(r['mm_before'])} -> {_p(r['mm_after'])}"
            eff = f"all positions, {r['effective_at'][:16].replace('T', ' ')}"
        else:
            im = f"{_p(r['im_before'])} -> {_p(r['im_after'])}"
            eff = "new exposure, at once"
            if r.get("mm_scheduled") is not None:
                eff += f"; MM {_p(r['mm_scheduled'])} from {r['mm_effective_at'][:16].replace('T', ' ')}"
        print(f"| {r['ts'][:16].replace('T', ' ')} | {r['instrument']} | {what} | {im} | {_p(r['target_im'])} | "
              f"{moved} | {eff} |")


def paths(recs: list[dict], base: dict[str, float], inst: str) -> tuple[pd.Series, pd.Series]:
    """IM applied (step function of event time) and the latest target seen, from the run's records."""
    applied = [(pd.Timestamp("2000-01-01", tz="UTC"), base[inst])]
    target = [(pd.Timestamp("2000-01-01", tz="UTC"), base[inst]), *TARGETS.get(inst, [])]
    for r in recs:
        if r["type"] == "signal" or r["instrument"] != inst or "skipped" in r:
            continue
        if r["type"] == "adjustment":
            applied.append((pd.Timestamp(r["ts"]), r["im_after"]))

    def series(x):
        s = pd.Series([v for _, v in x], index=pd.DatetimeIndex([t for t, _ in x]))
        return s[~s.index.duplicated(keep="last")]

    return series(applied), series(target)


def closeout_moves(con, inst: str, t0: pd.Timestamp, t1: pd.Timestamp) -> tuple[pd.Series, float, str]:
    """Adverse excursion over the close-out horizon of the reference position, by the close starting it.

    The horizon is ``margin.horizon.CloseOutModel.im_horizon(PRESET_NOTIONAL)`` with ADV from the 30 days
    of hourly bars before the window (margin v2); the excursion is measured on the shortest bundled bars
    (1-minute spot, 5-minute perpetual, else hourly perpetual), over ceil(horizon / bar) bars.
    """
    pre = load_bars(con, inst, "1h", t0 - pd.Timedelta(days=31), t0 - pd.Timedelta(hours=1))
    horizon = float(CloseOutModel.from_liquidity(LiquidityModel.from_bars(pre, window=30)).im_horizon(PRESET_NOTIONAL))
    tf = INTRADAY.get(str(t0.date()))
    if tf is not None:
        xb = datasets.load_intraday(inst[:3], tf)
        bar = pd.Timedelta(minutes=int(tf[:-1]))
        xb = xb[(xb.index >= t0 - pd.Timedelta(days=1)) & (xb.index < t1 + pd.Timedelta(days=1))]
        label = f"{tf} bars"
    else:
        xb, bar, label = load_bars(con, inst, "1h", t0 - pd.Timedelta(days=1), t1 + pd.Timedelta(days=1)), \
            pd.Timedelta(hours=1), "1h bars"
    hb = horizon_in_bars(horizon, bar / pd.Timedelta(hours=1))
    exc = adverse_excursion(xb, hb)["both"].dropna()
    exc.index = exc.index + bar  # the horizon starts at the bar's close
    return exc, horizon, f"{label} x {hb}"


def daily(store: Path, recs: list[dict], base: dict[str, float], start: str, end: str) -> dict:
    con = connect(store, read_only=True)
    t0, t1 = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
    rows, cover, horizons = [], {}, []
    for inst in INSTRUMENTS:
        bars = load_bars(con, inst, "1h", t0 - pd.Timedelta(days=2), t1)
        c = pd.Series(bars["close"].to_numpy(), index=bars.index + pd.Timedelta(hours=1))  # known at close
        move = (c / c.shift(24) - 1.0).abs()
        ap, tg = paths(recs, base, inst)
        idx = ap.index.union(c.index)
        ap_at = ap.reindex(idx).ffill().reindex(c.index)
        tg_at = tg.reindex(tg.index.union(c.index)).ffill().reindex(c.index)
        im_start, tg_start = ap_at.shift(24), tg_at.shift(24)
        exc, horizon, how = closeout_moves(con, inst, t0, t1)
        horizons.append(f"{inst} {60 * horizon:.2f} min ({how})")
        ex_im = ap.reindex(ap.index.union(exc.index)).ffill().reindex(exc.index)
        ex_tg = tg.reindex(tg.index.union(exc.index)).ffill().reindex(exc.index)
        inside = move[(move.index > t0) & (move.index <= t1)]
        for day, g in inside.groupby((inside.index - pd.Timedelta(1, "ns")).floor("D")):
            k = g.idxmax()
            e = exc[(exc.index >= day) & (exc.index < day + pd.Timedelta(days=1))]
            j = (e - ex_im[e.index]).idxmax()  # the window that breached the IM in force most (or came closest)
            rows.append((day.strftime("%m-%d"), inst, g.max(), k, im_start[k], tg_start[k], ap_at[g.index[-1]],
                         tg_at[g.index[-1]], e.max(), e[j], ex_im[j], ex_tg[j]))
            cover[(day.strftime("%Y-%m-%d"), inst)] = {"m": g.max(), "im": im_start[k], "tg": tg_start[k],
                                                       "co": e.max(), "co_j": e[j], "co_im": ex_im[j],
                                                       "co_tg": ex_tg[j], "h": horizon}
    con.close()
    print(f"\nclose-out horizon of a {PRESET_NOTIONAL:,.0f} USD position (margin v2, H_IM; ADV of the 30 days "
          f"before the window, 10% participation): " + "; ".join(horizons))
    print("\n| day | instrument | largest 24h move (ended) | IM in force at its start | target then | "
          "applied at day end | target at day end | worst close-out move | close-out breach |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for d, inst, m, k, ims, tgs, ap_end, tg_end, co, coj, coim, cotg in sorted(rows):
        flag = ""
        if m > ims:
            flag = " **breach**" + (" (speed limit: the target covered it, the applied rate lagged)"
                                    if tgs >= m else "")
        ended = "24:00" if k.hour == 0 else k.strftime("%H:%M")
        cob = "-"
        if coj > coim:
            cob = f"**{100 * coj:.2f}% > {_p(coim)}**" + (" (speed limit)" if cotg >= coj else "")
        print(f"| {d} | {inst} | {100 * m:.1f}% ({ended}){flag} | {_p(ims)} | {_p(tgs)} | {_p(ap_end)} | "
              f"{_p(tg_end)} | {100 * co:.2f}% | {cob} |")
    return cover


#: presets the venues apply to BTC and ETH (dYdX v4 lists BTC-USD and ETH-USD in its Large-Cap tier);
#: the other dYdX tiers (Mid-Cap 5%, Small-Cap 10%, Long-Tail 20%) are for smaller coins: shown for reference
APPLICABLE = {"BTC-PERP": ("binance_btcusdt", "deribit_btc_future", "dydx_large_cap"),
              "ETH-PERP": ("deribit_eth_future", "dydx_large_cap")}
REFERENCE = ("dydx_mid_cap", "dydx_small_cap", "dydx_long_tail")


def _lag(covered: bool, target: float, move: float) -> str:
    if covered:
        return "-"
    return f"yes (target {_p(target)})" if target >= move else f"no (target {_p(target)})"


CRASH_INTRO = """
### Crash days against the static venue presets

The named stress days of `margincal.backtest.crash` inside the four windows, over the 24h move and over
the close-out horizon. A day is covered over 24h when the IM in force at the start of its worst 24h
window is at least the move, and over the close-out horizon when every window starting that day is
covered by the IM in force at its start. Venue presets at their rate for a 100,000 USD position; "-"
where the preset is not for that coin; "speed limit lag" says, for each breach, whether the monitor's
target at that time would have covered it (yes: the speed limit made the applied rate lag)."""

NOISE_INTRO = """
### Proposal noise, unattended

The whole bundled history replayed with nobody answering (calibrated before 2020-01-01). A week
counts as stress when it contains a named crash day or a critical signal."""

NOISE_OUTRO = """
Outside stress the replay stays within the bound of at most one instrument-change per instrument-week (the
table above). Before issue 18 the same kind of replay filed one decrease proposal per instrument per day
(3,294 proposals over 129,748 events in the benchmark replay, as the issue measured); decreases are now
evaluated once a week and filed together."""


def coverage_table(covers: dict) -> dict[str, tuple[int, int]]:
    print(CRASH_INTRO)
    named = sorted({e.day for e in STRESS_EVENTS})
    days = sorted((d, i) for (d, i) in covers if d in named)
    names = sorted({n for v in APPLICABLE.values() for n in v}) + list(REFERENCE)
    rates = {n: float(np.asarray(presets.get(n).margin_rate(PRESET_NOTIONAL, 0.0).im)) for n in names}
    out: dict[str, tuple[int, int]] = {}
    for hz, mk, imk, tgk in (("24h", "m", "im", "tg"), ("close-out horizon", "co_j", "co_im", "co_tg")):
        print(f"\n**{hz}**\n\n| crash day | instrument | worst {hz} move | monitored IM in force | speed limit lag | "
              + " | ".join(f"{n} ({_p(r)})" for n, r in rates.items()) + " |")
        print("|---|---|---|---|---|" + "---|" * len(rates))
        n_mon = 0
        n_pre = dict.fromkeys(rates, 0)
        n_app = dict.fromkeys(rates, 0)
        for d, i in days:
            v = covers[(d, i)]
            m, im = v[mk], v[imk]
            worst = v["m"] if mk == "m" else v["co"]  # presets: a flat rate meets the worst window of the day
            ok = im >= m
            n_mon += ok
            cells = []
            for n, r in rates.items():
                if n in APPLICABLE[i] or n in REFERENCE:
                    n_pre[n] += r >= worst
                    n_app[n] += 1
                    cells.append("covered" if r >= worst else "breach")
                else:
                    cells.append("-")
            print(f"| {d} | {i} | {100 * m:.2f}% | {_p(im)} {'covered' if ok else '**breach**'} | "
                  f"{_lag(ok, v[tgk], m)} | " + " | ".join(cells) + " |")
        app = [n for n in rates if n not in REFERENCE]
        best = max(app, key=lambda n: n_pre[n])
        verdict = "holds" if n_mon >= n_pre[best] else "does NOT hold"
        print(f"\ncrash days covered over the {hz}: monitor {n_mon} of {len(days)}; venue presets for BTC/ETH: "
              + ", ".join(f"{n} {n_pre[n]} of {n_app[n]}" for n in app)
              + f" (best: {best}); other-asset tiers for reference: "
              + ", ".join(f"{n} {n_pre[n]} of {n_app[n]}" for n in REFERENCE)
              + f". Monitor >= best static venue preset: {verdict} ({n_mon} vs {n_pre[best]}).")
        out[hz] = (n_mon, n_pre[best])
    return out


def noise(store: Path) -> None:
    """Unattended replay of the whole bundled history: proposals per instrument-week outside stress."""
    recs: list[dict] = []
    calibrate(store, pd.Timestamp("2020-01-01", tz="UTC"))
    mon = Monitor(store, POLICY, name="noise", live_from="2020-01-01")

    def collect(ev, sigs, records) -> None:
        recs.extend({"type": "signal", **s.as_dict()} for s in sigs)
        recs.extend(records)

    rep = mon.run(ReplayFeed(store, list(INSTRUMENTS), "2019-09-01", None), on_output=collect)
    week = lambda ts: (pd.Timestamp(ts) - pd.Timedelta(days=pd.Timestamp(ts).day_of_week)).floor("D")  # noqa: E731
    stress = {week(pd.Timestamp(e.day, tz="UTC")) for e in STRESS_EVENTS}
    stress |= {week(r["ts"]) for r in recs if r["type"] == "signal" and r["severity"] == "critical"}
    first, last = pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp(rep.last_event)
    all_weeks = pd.date_range(week(first), week(last), freq="7D")
    calm = [w for w in all_weeks if w not in stress]
    props = [r for r in recs if r["type"] == "proposal" and "skipped" not in r]
    ids = {}
    for r in props:
        ids.setdefault(r["proposal_id"], []).append(r)
    per_inst_calm = sum(1 for r in props if week(r["ts"]) not in stress)
    per_inst_stress = len(props) - per_inst_calm
    n_i = len(INSTRUMENTS)
    print(NOISE_INTRO)
    print(f"unattended replay 2020-01-01 .. {str(last)[:10]}: {rep.events:,} events, {rep.signals:,} signals, "
          f"{rep.auto_adjustments:,} automatic versions, {len(ids):,} proposals ({len(props):,} instrument "
          f"changes; {sum(len(v) > 1 for v in ids.values()):,} proposals group several instruments)")
    print("\n| weeks | weeks | instrument-changes proposed | per instrument-week |\n|---|---|---|---|")
    print(f"| outside stress | {len(calm)} | {per_inst_calm} | {per_inst_calm / (n_i * len(calm)):.2f} |")
    ns = len(all_weeks) - len(calm)
    print(f"| stress (a named crash day or a critical signal) | {ns} | {per_inst_stress} | "
          f"{per_inst_stress / (n_i * max(ns, 1)):.2f} |")
    print(NOISE_OUTRO)


BEGIN, END = "<!-- monitoring-tables:begin (docs/monitoring_tables.py) -->", "<!-- monitoring-tables:end -->"


def tables(argv: list[str]) -> None:
    global POLICY
    if argv:  # an alternative policy file (the default policy otherwise)
        POLICY = load_policy(argv[0])
        print(f"policy: {argv[0]}")
    tmp = Path(tempfile.mkdtemp(prefix="monitoring_tables_"))
    covers: dict = {}
    for label, (start, end) in WINDOWS.items():
        store = build_store(tmp / f"{start}.duckdb")
        recs, base, rep = replay(store, start, end, label)
        print(f"\n### {label}, {start} .. {end}\n\nbase (calibrated before {start}): "
              + ", ".join(f"{k} IM {_p(v)}" for k, v in base.items())
              + f"; {rep.events:,} events, {rep.signals} signals, {rep.auto_adjustments} automatic versions, "
              f"{rep.proposals} proposals\n")
        mapping_table(recs, start, end)
        covers.update(daily(store, recs, base, start, end))
    coverage_table(covers)
    noise(build_store(tmp / "full.duckdb"))


def main() -> None:
    """``--write``: replace the marked section of docs/monitoring.md (default policy only); else print."""
    args = [a for a in sys.argv[1:] if a != "--write"]
    if "--write" not in sys.argv[1:]:
        tables(args)
        return
    if args:
        sys.exit("--write regenerates docs/monitoring.md with the default policy; drop the policy file")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tables([])
    page = Path(__file__).with_name("monitoring.md")
    text = page.read_text()
    a, b = text.index(BEGIN), text.index(END)
    page.write_text(text[:a + len(BEGIN)] + "\n" + buf.getvalue().strip("\n") + "\n\n" + text[b:])
    print(f"updated {page.name}")


if __name__ == "__main__":
    sys.exit(main())
