"""Named crypto stress days and the selection of crash days in a backtest sample.

A crash day ``D`` (a UTC calendar day) is evaluated at the evaluation bar that
starts inside ``D`` and has the largest realised two-sided loss: on daily bars
that is the day itself; on hourly bars (1 h horizon) the worst hour of the day.
The margin compared with it is the one in force at that bar's start (set with
data up to the bar before).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class StressEvent:
    day: str
    label: str


def _days(start: str, end: str, label: str) -> list[StressEvent]:
    return [StressEvent(str(d.date()), label) for d in pd.date_range(start, end, freq="D")]


#: named stress days (UTC)
STRESS_EVENTS: tuple[StressEvent, ...] = (
    StressEvent("2020-03-12", "COVID crash (Black Thursday)"),
    StressEvent("2021-05-19", "May 2021 crash (China mining/exchange crackdown)"),
    *_days("2022-05-09", "2022-05-12", "Terra/LUNA-UST collapse"),
    StressEvent("2022-06-13", "Celsius withdrawal freeze / 3AC"),
    *_days("2022-11-08", "2022-11-10", "FTX collapse"),
    StressEvent("2024-08-05", "Yen carry-trade unwind"),
    StressEvent("2025-10-10", "10 Oct 2025 tariff shock liquidation cascade"),
)


def day_positions(index: pd.DatetimeIndex, day: str) -> np.ndarray:
    """Positions of the bars of ``index`` starting within UTC day ``day``."""
    start = pd.Timestamp(day, tz="UTC") if index.tz is not None else pd.Timestamp(day)
    end = start + pd.Timedelta(days=1)
    return np.flatnonzero((index >= start) & (index < end))


def crash_positions(index: pd.DatetimeIndex, loss: np.ndarray, *, events: tuple[StressEvent, ...] = STRESS_EVENTS,
                    worst_n: int = 5) -> list[tuple[int, str, str]]:
    """``[(position, day, label), ...]`` of the crash days in an evaluation sample.

    ``index`` / ``loss``: the evaluation bars and their realised two-sided loss.
    Named days outside the sample are skipped; the ``worst_n`` days with the
    largest loss (one bar per day, the worst) are added as ``worst #k``; a day
    that is both keeps both labels. Sorted by time.
    """
    out: dict[int, list[str]] = {}
    days: dict[int, str] = {}
    for ev in events:
        pos = day_positions(index, ev.day)
        if pos.size == 0:
            continue
        p = int(pos[np.argmax(loss[pos])])
        out.setdefault(p, []).append(ev.label)
        days[p] = ev.day
    if worst_n > 0 and len(index):
        day_of = index.floor("D")
        frame = pd.DataFrame({"day": day_of, "loss": loss, "pos": np.arange(len(index))})
        best = frame.loc[frame.groupby("day")["loss"].idxmax()]
        best = best.sort_values("loss", ascending=False, kind="stable").head(worst_n)
        for k, row in enumerate(best.itertuples(index=False), start=1):
            p = int(row.pos)
            out.setdefault(p, []).append(f"worst #{k}")
            days[p] = str(pd.Timestamp(row.day).date())
    return [(p, days[p], "; ".join(out[p])) for p in sorted(out)]


__all__ = ["STRESS_EVENTS", "StressEvent", "crash_positions", "day_positions"]
