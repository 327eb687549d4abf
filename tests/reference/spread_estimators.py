"""Worked examples of the Corwin-Schultz (2012) and Abdi-Ranaldo (2017) spread estimators.

Scalar arithmetic written straight from the papers' equations (see spread_estimators.md),
independent of margincal. Run: python spread_estimators.py  (writes spread_estimators.json).
"""

import json
import math
from pathlib import Path

# Corwin & Schultz (2012), J. Finance 67(2): eq. (18) alpha, eq. (14) S, beta/gamma below eq. (11)
H = [102.0, 103.0]
L = [100.0, 100.5]
beta = math.log(H[0] / L[0]) ** 2 + math.log(H[1] / L[1]) ** 2
gamma = math.log(max(H) / min(L)) ** 2
k = 3 - 2 * math.sqrt(2)
alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / k - math.sqrt(gamma / k)
S_cs = 2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha))

# Abdi & Ranaldo (2017), RFS 30(12): eta_t = (h_t + l_t)/2 in logs; S^2 = 4 E[(c_t - eta_t)(c_t - eta_{t+1})]
Ha = [102.0, 103.0, 101.5]
La = [100.0, 100.5, 99.8]
Ca = [101.8, 100.7, 100.0]
eta = [(math.log(h) + math.log(lo)) / 2 for h, lo in zip(Ha, La, strict=True)]
c = [math.log(x) for x in Ca]
prods = [(c[t] - eta[t]) * (c[t] - eta[t + 1]) for t in range(2)]
S_ar_two_day = sum(math.sqrt(max(4 * p, 0.0)) for p in prods) / 2
S_ar_sample = math.sqrt(max(4 * sum(prods) / 2, 0.0))

out = {"cs": {"high": H, "low": L, "beta": beta, "gamma": gamma, "alpha": alpha, "spread": S_cs},
       "ar": {"high": Ha, "low": La, "close": Ca, "products": prods, "spread_two_day": S_ar_two_day,
              "spread_sample": S_ar_sample}}
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
