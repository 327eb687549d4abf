"""Write the Binance USD-M (fapi) fixtures derived from the bundled real data.

Run from the repository root: ``python tests/reference/make_ccxt_binance_fapi_fixtures.py``.
See ccxt_binance_fapi_README.md for what is recorded, what is derived and what is constructed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
DATA = HERE.parents[2] / "src" / "margincal" / "datasets"
START, END = "2022-09-19T00:00:00Z", "2022-11-10T23:00:00Z"


def _s(x: float, nd: int) -> str:
    return f"{x:.{nd}f}"


def klines() -> list[list]:
    df = pd.read_csv(DATA / "btcusdt_perp_1h.csv.gz", parse_dates=["timestamp"])
    df = df[(df["timestamp"] >= START) & (df["timestamp"] <= END)]
    out = []
    for r in df.itertuples(index=False):
        t = int(pd.Timestamp(r.timestamp).value // 1_000_000)
        # [openTime, open, high, low, close, volume, closeTime, quoteVolume, trades, takerBase, takerQuote, ignore]
        out.append([t, _s(r.open, 2), _s(r.high, 2), _s(r.low, 2), _s(r.close, 2), _s(r.volume, 3),
                    t + 3_599_999, "0", 0, "0", "0", "0"])
    return out


def ws_kline_messages(rows: list[list]) -> list[dict]:
    """USD-M kline stream payloads (btcusdt@kline_1h): each bar once while forming (x=false), once closed."""
    out = []
    for r in rows[-4:]:
        t = r[0]
        for closed in (False, True):
            out.append({"e": "kline", "E": t + (1_800_000 if not closed else 3_600_050), "s": "BTCUSDT",
                        "k": {"t": t, "T": t + 3_599_999, "s": "BTCUSDT", "i": "1h", "f": 0, "L": 0,
                              "o": r[1], "c": r[4], "h": r[2], "l": r[3], "v": r[5], "n": 0, "x": closed,
                              "q": "0", "V": "0", "Q": "0", "B": "0"}})
    return out


def depth() -> dict:
    """A 20-level book in the documented GET /fapi/v1/depth shape around the premiumIndex mark price."""
    mid = 11793.6
    bids = [[_s(mid - 0.05 - 0.1 * i, 2), _s(0.5 + 0.75 * i, 3)] for i in range(20)]
    asks = [[_s(mid + 0.05 + 0.1 * i, 2), _s(0.4 + 0.8 * i, 3)] for i in range(20)]
    return {"lastUpdateId": 1027024, "E": 1597370495010, "T": 1597370495002, "bids": bids, "asks": asks}


def main() -> None:
    rows = klines()
    (HERE / "ccxt_binance_fapi_klines_BTCUSDT_1h.json").write_text(json.dumps(rows))
    (HERE / "ccxt_binance_ws_kline_BTCUSDT_1h.json").write_text(json.dumps(ws_kline_messages(rows), indent=1))
    (HERE / "ccxt_binance_fapi_depth_BTCUSDT.json").write_text(json.dumps(depth(), indent=1))
    print(f"{len(rows)} klines {rows[0][0]}..{rows[-1][0]}")


if __name__ == "__main__":
    main()
