"""Tables for docs/monitoring.md: the FTX and March 2020 replays and the unattended full-history replay.

Usage::

    python docs/monitoring_tables.py            # prints markdown (takes about a minute)

Builds a temporary store from the bundled data (Binance USD-M BTC/ETH perpetual hourly bars, 8-hourly
funding, daily aggregate BTC open interest), and for each crash window calibrates on the data before
it (FHS, as ``margincal monitor --calibrate``), replays it with 60 days of warm-up through
:class:`margincal.adjust.monitor.Monitor` with the default policy, and prints:

1. which signal moved which parameter and when (every automatic change and proposal, with the
   components of its target);
2. per day and instrument, target vs applied IM and the largest 24h move (the calibration's close-out
   horizon) against the IM in force when that 24h window began, breaches marked, and whether a speed
   limit made the applied rate lag a target that would have covered the move;
3. crash-day coverage: the named stress days (margin.backtest.crash) covered by the monitored IM and by
   each static venue preset (its rate for a 100,000 USD position);
4. proposal noise of an unattended replay of the whole bundled history (proposals per instrument-week,
   outside and inside stress weeks).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from margincal.adjust.monitor import Monitor
from margincal.adjust.policy import default_policy
from margincal.backtest.crash import STRESS_EVENTS
from margincal.config import CalibrationSettings, sample_data_dir
from margincal.data.feeds import ReplayFeed
from margincal.data.store import connect, load_bars, transaction
from margincal.margin import presets
from margincal.margin.params import new_run_id, publish
from margincal.pipeline import calibrate_bars, to_parameter_set

INSTRUMENTS = ("BTC-PERP", "ETH-PERP")
WINDOWS = {"FTX collapse": ("2022-11-01", "2022-11-20"), "COVID crash": ("2020-03-01", "2020-03-31")}
PRESET_NOTIONAL = 100_000.0


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
        cals = [calibrate_bars(load_bars(con, i, "1h", end=before - pd.Timedelta(hours=1)), i, "1h", settings)
                for i in INSTRUMENTS]
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

    mon = Monitor(store, default_policy(), name=name, live_from=t0)

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


def daily(store: Path, recs: list[dict], base: dict[str, float], start: str, end: str) -> dict:
    con = connect(store, read_only=True)
    t0, t1 = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
    rows, cover = [], {}
    for inst in INSTRUMENTS:
        bars = load_bars(con, inst, "1h", t0 - pd.Timedelta(days=2), t1)
        c = pd.Series(bars["close"].to_numpy(), index=bars.index + pd.Timedelta(hours=1))  # known at close
        move = (c / c.shift(24) - 1.0).abs()
        ap, tg = paths(recs, base, inst)
        idx = ap.index.union(c.index)
        ap_at = ap.reindex(idx).ffill().reindex(c.index)
        tg_at = tg.reindex(tg.index.union(c.index)).ffill().reindex(c.index)
        im_start, tg_start = ap_at.shift(24), tg_at.shift(24)
        inside = move[(move.index > t0) & (move.index <= t1)]
        for day, g in inside.groupby((inside.index - pd.Timedelta(1, "ns")).floor("D")):
            k = g.idxmax()
            rows.append((day.strftime("%m-%d"), inst, g.max(), k, im_start[k], tg_start[k], ap_at[g.index[-1]],
                         tg_at[g.index[-1]]))
            cover[(day.strftime("%Y-%m-%d"), inst)] = (g.max(), im_start[k])
    con.close()
    print("\n| day | instrument | largest 24h move (ended) | IM in force at its start | target then | "
          "applied at day end | target at day end |\n|---|---|---|---|---|---|---|")
    for d, inst, m, k, ims, tgs, ap_end, tg_end in sorted(rows):
        flag = ""
        if m > ims:
            flag = " **breach**" + (" (speed limit: the target covered it, the applied rate lagged)"
                                    if tgs >= m else "")
        ended = "24:00" if k.hour == 0 else k.strftime("%H:%M")
        print(f"| {d} | {inst} | {100 * m:.1f}% ({ended}){flag} | {_p(ims)} | {_p(tgs)} | {_p(ap_end)} | "
              f"{_p(tg_end)} |")
    return cover


#: presets the venues apply to BTC and ETH (dYdX v4 lists BTC-USD and ETH-USD in its Large-Cap tier);
#: the other dYdX tiers (Mid-Cap 5%, Small-Cap 10%, Long-Tail 20%) are for smaller coins: shown for reference
APPLICABLE = {"BTC-PERP": ("binance_btcusdt", "deribit_btc_future", "dydx_large_cap"),
              "ETH-PERP": ("deribit_eth_future", "dydx_large_cap")}
REFERENCE = ("dydx_mid_cap", "dydx_small_cap", "dydx_long_tail")


def coverage_table(covers: dict) -> None:
    named = sorted({e.day for e in STRESS_EVENTS})
    days = sorted((d, i) for (d, i) in covers if d in named)
    names = sorted({n for v in APPLICABLE.values() for n in v}) + list(REFERENCE)
    rates = {n: float(np.asarray(presets.get(n).margin_rate(PRESET_NOTIONAL, 0.0).im)) for n in names}
    print("\n| crash day | instrument | worst 24h move | monitored IM in force | "
          + " | ".join(f"{n} ({_p(r)})" for n, r in rates.items()) + " |")
    print("|---|---|---|---|" + "---|" * len(rates))
    n_mon = 0
    n_pre = dict.fromkeys(rates, 0)
    n_app = dict.fromkeys(rates, 0)
    for d, i in days:
        m, im = covers[(d, i)]
        ok = im >= m
        n_mon += ok
        cells = []
        for n, r in rates.items():
            if n in APPLICABLE[i] or n in REFERENCE:
                n_pre[n] += r >= m
                n_app[n] += 1
                cells.append("covered" if r >= m else "breach")
            else:
                cells.append("-")
        print(f"| {d} | {i} | {100 * m:.1f}% | {_p(im)} {'covered' if ok else '**breach**'} | "
              + " | ".join(cells) + " |")
    app = [n for n in rates if n not in REFERENCE]
    best = max(app, key=lambda n: n_pre[n])
    print(f"\ncrash days covered (24h move against the IM in force when the 24h window began): monitor {n_mon} "
          f"of {len(days)}; venue presets for BTC/ETH: " + ", ".join(f"{n} {n_pre[n]} of {n_app[n]}" for n in app)
          + f" (best: {best}); other-asset tiers for reference: "
          + ", ".join(f"{n} {n_pre[n]} of {n_app[n]}" for n in REFERENCE))


def noise(store: Path) -> None:
    """Unattended replay of the whole bundled history: proposals per instrument-week outside stress."""
    recs: list[dict] = []
    calibrate(store, pd.Timestamp("2020-01-01", tz="UTC"))
    mon = Monitor(store, default_policy(), name="noise", live_from="2020-01-01")

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
    print(f"\nunattended replay 2020-01-01 .. {str(last)[:10]}: {rep.events:,} events, {rep.signals:,} signals, "
          f"{rep.auto_adjustments:,} automatic versions, {len(ids):,} proposals ({len(props):,} instrument "
          f"changes; {sum(len(v) > 1 for v in ids.values()):,} proposals group several instruments)")
    print("\n| weeks | weeks | instrument-changes proposed | per instrument-week |\n|---|---|---|---|")
    print(f"| outside stress | {len(calm)} | {per_inst_calm} | {per_inst_calm / (n_i * len(calm)):.2f} |")
    ns = len(all_weeks) - len(calm)
    print(f"| stress (a named crash day or a critical signal) | {ns} | {per_inst_stress} | "
          f"{per_inst_stress / (n_i * max(ns, 1)):.2f} |")


def main() -> None:
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


if __name__ == "__main__":
    sys.exit(main())
