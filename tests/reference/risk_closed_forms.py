"""Generate tests/reference/risk_closed_forms.json from scipy alone (no margincal code).

Run: ``.venv/bin/python tests/reference/risk_closed_forms.py``

Every ES here is computed by NUMERICAL INTEGRATION of the quantile function over
the tail, ES_p = 1/(1-p) * int_p^1 F^-1(u) du (Acerbi & Tasche 2002, eq. for
continuous distributions), not by the closed forms margincal implements, so the
tests compare two independent computations:

* normal and Student-t: ``scipy.stats.<dist>.ppf`` integrated with ``scipy.integrate.quad``;
* generalised Pareto tail above a threshold u (peaks over threshold, McNeil & Frey 2000):
  the loss distribution above u is ``F(x) = 1 - (N_u/n) * (1 - G(x - u))`` with
  ``G = genpareto(xi, scale=beta)``; VaR_p = u + G^-1(1 - (1-p) n / N_u) and
  ES_p = 1/(1-p) * int_p^1 VaR_v dv, both via scipy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import integrate, stats


def es_by_quantile_integral(isf, p: float) -> float:
    """1/(1-p) int_p^1 F^-1(v) dv with F^-1(v) = isf(1 - v).

    Substituting 1 - v = (1-p) exp(-s) spreads the integrable singularity at v = 1
    over s in (0, inf): ES = int_0^inf isf((1-p) e^-s) e^-s ds.
    """
    def f(s: float) -> float:
        return isf((1.0 - p) * np.exp(-s)) * np.exp(-s)

    # the integrand decays at least like exp(-s/2) for every tail used here; beyond s = 300 it is < 1e-60
    # (and scipy's t.isf breaks down below 1e-200, which s <= 300 never reaches)
    head, _ = integrate.quad(f, 0.0, 60.0, epsabs=1e-14, epsrel=1e-12, limit=500)
    rest, _ = integrate.quad(f, 60.0, 300.0, epsabs=1e-14, epsrel=1e-12, limit=500)
    return float(head + rest)


def main() -> None:
    out: dict[str, list[dict[str, float]]] = {"normal": [], "student_t": [], "gpd_tail": []}
    for p in (0.95, 0.975, 0.99, 0.995, 0.999):
        for mu, sigma in ((0.0, 1.0), (0.001, 0.04)):
            d = stats.norm(mu, sigma)
            out["normal"].append({"level": p, "mu": mu, "sigma": sigma, "var": float(d.ppf(p)),
                                  "es": es_by_quantile_integral(d.isf, p)})
        for df in (3.0, 4.0, 6.0, 30.0):
            for loc, scale in ((0.0, 1.0), (0.0, 0.03)):
                d = stats.t(df, loc, scale)
                out["student_t"].append({"level": p, "df": df, "loc": loc, "scale": scale, "var": float(d.ppf(p)),
                                         "es": es_by_quantile_integral(d.isf, p)})
    n, n_u, u = 1000, 100, 0.05
    for xi, beta in ((0.25, 0.02), (0.1, 0.015), (-0.1, 0.02), (0.5, 0.01)):
        g = stats.genpareto(xi, scale=beta)
        for p in (0.99, 0.995, 0.999):
            def isf(x: float, g=g) -> float:  # loss quantile at tail probability x (x < N_u / n)
                return u + float(g.isf(x * n / n_u))
            out["gpd_tail"].append({"level": p, "xi": xi, "beta": beta, "u": u, "n": n, "n_u": n_u,
                                    "var": isf(1.0 - p), "es": es_by_quantile_integral(isf, p)})
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
