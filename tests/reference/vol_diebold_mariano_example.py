"""Generates vol_diebold_mariano_example.json: the DM / HLN worked example, computed from the formulas
with plain Python arithmetic (no margincal code).

Diebold, F.X. and Mariano, R.S. (1995), "Comparing predictive accuracy", JBES 13(3), 253-263:
    DM = d_bar / sqrt(V / T),  V = g_0 + 2 sum_{k=1}^{L} w_k g_k,  g_k = (1/T) sum_{t=k}^{T-1} (d_t - d_bar)(d_{t-k} - d_bar)
with Bartlett weights w_k = 1 - k/(L+1) (Newey-West, 1987) and L = h - 1 by default.
Harvey, D., Leybourne, S. and Newbold, P. (1997), "Testing the equality of prediction mean squared errors",
IJF 13(2), 281-291, eq. (9): DM* = DM * sqrt((T + 1 - 2h + h(h-1)/T) / T), compared with Student-t(T-1).
"""

import json
import math
from pathlib import Path

from scipy import stats

loss_a = [1.0, -1.0, 2.0, 0.0, 3.0, 1.0]
loss_b = [0.0] * 6


def dm(a, b, h, lags, hln):
    d = [x - y for x, y in zip(a, b, strict=True)]
    T = len(d)
    m = sum(d) / T
    e = [x - m for x in d]
    L = h - 1 if lags is None else lags
    v = sum(x * x for x in e) / T
    for k in range(1, L + 1):
        v += 2 * (1 - k / (L + 1)) * sum(e[t] * e[t - k] for t in range(k, T)) / T
    s = m / math.sqrt(v / T)
    if hln:
        s *= math.sqrt((T + 1 - 2 * h + h * (h - 1) / T) / T)
        p = 2 * stats.t.sf(abs(s), T - 1)
    else:
        p = 2 * stats.norm.sf(abs(s))
    return s, p


cases = []
for h, lags, hln in [(1, 0, False), (1, 0, True), (1, 1, False), (1, 1, True), (2, None, True), (3, None, True)]:
    s, p = dm(loss_a, loss_b, h, lags, hln)
    cases.append({"h": h, "lags": lags, "hln": hln, "stat": s, "pvalue": p})
out = {"source": "vol_diebold_mariano_example.py (formulas of DM 1995 / HLN 1997)", "loss_a": loss_a, "loss_b": loss_b,
       "cases": cases}
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
