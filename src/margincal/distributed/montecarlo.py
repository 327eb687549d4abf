"""Chunked Monte Carlo and importance sampling whose results do not depend on the number of workers.

Paths are cut into fixed *blocks* of ``block_paths`` paths (the last one
shorter). Block ``b`` draws from its own generator,
``numpy.random.default_rng(SeedSequence(seed).spawn(n_blocks)[b])`` (built as
``SeedSequence(seed, spawn_key=(b,))``, the same child), so the set of
simulated paths depends on ``(seed, n_paths, block_paths)`` only. Tasks
(``chunks`` of them) take contiguous runs of blocks; neither the number of
chunks nor the number of workers changes a single draw.

Merging is exact, not an approximation: a task returns, per loss series, its
``K = floor(n (1 - level)) + 3`` largest losses and the moments needed for the
standard deviation. The ``K`` largest losses of the whole sample are among the
union of the tasks' ``K`` largest, and VaR (lower ``level``-quantile,
``numpy`` ``inverted_cdf``) and the Acerbi-Tasche ES of
:mod:`margincal.risk.measures` only look at those order statistics, so they are
computed with the same arithmetic as on the full sample. For importance
sampling each block keeps the losses whose cumulative likelihood-ratio weight
(largest first, divided by the total ``n``) stays within the tail, which again
contains every order statistic the weighted VaR/ES formula of
:func:`margincal.risk.rare_event.weighted_tail_var_es` reads.

Standard errors of the IS VaR/ES are batch means over the blocks (at least two
blocks are needed), where the single-process function uses 20 equal batches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.risk.base import Horizon, TailForecast, check_level, horizon_hours, tail_losses
from margincal.risk.measures import expected_shortfall
from margincal.risk.montecarlo import GaussianLossFunction, MonteCarloModel, TCopulaMonteCarlo
from margincal.risk.rare_event import (
    ExpectedShortfallResult,
    TailProbabilityResult,
    _default_shift,
    _draw,
    _es_shift_and_scale,
    _is_scipy_dist,
    batch_std_error,
    default_scale_factor,
    weighted_tail_var_es,
)

DEFAULT_BLOCK_PATHS = 65_536


# ---------------------------------------------------------------- blocks and merging helpers


def block_sizes(n_paths: int, block_paths: int = DEFAULT_BLOCK_PATHS) -> list[int]:
    """Paths in each block: ``block_paths`` each, the last block shorter."""
    if int(n_paths) != n_paths or n_paths < 1:
        raise ConfigError(f"n_paths is {n_paths}; it must be a whole number >= 1")
    if int(block_paths) < 1:
        raise ConfigError(f"block_paths is {block_paths}; it must be >= 1")
    n, bp = int(n_paths), int(block_paths)
    return [min(bp, n - a) for a in range(0, n, bp)]


def block_rng(seed: int, b: int) -> np.random.Generator:
    """Generator of block ``b``: the ``b``-th child of ``SeedSequence(seed)`` (module doc)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(b,)))


def split_chunks(n_blocks: int, chunks: int) -> list[list[int]]:
    """Contiguous runs of block indices, as equal as possible."""
    c = max(1, min(int(chunks), n_blocks))
    edges = np.linspace(0, n_blocks, c + 1).round().astype(int)
    return [list(range(edges[i], edges[i + 1])) for i in range(c) if edges[i + 1] > edges[i]]


def tail_keep(n: int, level: float) -> int:
    """Order statistics (largest first) VaR and ES at ``level`` read on ``n`` losses, plus a margin of 2."""
    return min(n, int(math.floor(n * (1.0 - level))) + 3)


def _top(x: np.ndarray, k: int) -> np.ndarray:
    if x.size <= k:
        return np.sort(x)[::-1]
    part = np.partition(x, x.size - k)[x.size - k:]
    return np.sort(part)[::-1]


def var_es_from_top(top: np.ndarray, n: int, level: float) -> tuple[float, float]:
    """VaR and ES of ``n`` losses from their largest values ``top`` (descending), as risk.measures computes them."""
    top = np.asarray(top, dtype=float)
    v = n * level - 1.0
    prev = math.floor(v)
    idx = min(max(prev if v == prev else prev + 1, 0), n - 1)  # numpy inverted_cdf index (ascending)
    j = n - 1 - idx
    if j >= top.size:
        raise CalibrationError(f"internal: VaR needs order statistic {j} but only {top.size} were kept")
    var = float(top[j])
    tail = 1.0 - level
    w = 1.0 / n
    ws = np.full(top.size, w)
    cw = np.cumsum(ws)
    k = int(np.searchsorted(cw, tail + 1e-12, side="right"))
    if k >= top.size and k < n:
        raise CalibrationError(f"internal: ES needs {k + 1} order statistics but only {top.size} were kept")
    total = float(np.dot(top[:k], ws[:k]))
    used = float(cw[k - 1]) if k > 0 else 0.0
    if k < n and used < tail:
        total += (tail - used) * top[k]
    return var, total / tail


class Moments:
    """Count, mean and sum of squared deviations (Chan et al. pairwise update), for a stable std."""

    __slots__ = ("m2", "mean", "n")

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.n, self.mean, self.m2 = n, mean, m2

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        x = np.asarray(x, dtype=float)
        mu = float(x.mean()) if x.size else 0.0
        return cls(int(x.size), mu, float(((x - mu) ** 2).sum()))

    def __add__(self, o: Moments) -> Moments:
        n = self.n + o.n
        if n == 0:
            return Moments()
        d = o.mean - self.mean
        return Moments(n, self.mean + d * o.n / n, self.m2 + o.m2 + d * d * self.n * o.n / n)

    def std(self, ddof: int = 0) -> float:
        return math.sqrt(self.m2 / (self.n - ddof)) if self.n > ddof else float("nan")


def _sum_moments(ms: Sequence[Moments]) -> Moments:
    total = Moments()
    for m in ms:
        total = total + m
    return total


# ---------------------------------------------------------------- Monte Carlo VaR / ES


def _model_kind(model: Any) -> str:
    if isinstance(model, TCopulaMonteCarlo):
        model._check_fitted()
        return "copula"
    if isinstance(model, MonteCarloModel):
        model._check_fitted()
        return "univariate"
    raise ConfigError(f"model of type {type(model).__name__}: give a fitted MonteCarloModel or TCopulaMonteCarlo")


def mc_chunk(blocks: Sequence[tuple[int, int]], model: Any, kind: str, seed: int, horizon: float,
             weights: np.ndarray | None, keep: int) -> dict[str, Any]:
    """Task: simulate the given ``(block, n_paths)`` and return top losses and moments per series."""
    tops: dict[str, list[np.ndarray]] = {}
    moments = Moments()
    for b, nb in blocks:
        m = copy.copy(model)
        m.random_state = np.random.SeedSequence(seed, spawn_key=(b,))
        if kind == "univariate":
            m.n_sims = nb
            x = m.simulate(horizon)
            series = tail_losses(x, model.side)
            moments = moments + Moments.of(x)
        else:
            sims = m.simulate(n=nb, horizon=horizon).to_numpy()
            loss = m.portfolio_losses(sims, weights)
            series = {"portfolio": loss}
            moments = moments + Moments.of(loss)
        for name, losses in series.items():
            tops.setdefault(name, []).append(_top(losses, keep))
    return {"top": {k: _top(np.concatenate(v), keep) for k, v in tops.items()}, "moments": moments,
            "n": sum(nb for _, nb in blocks)}


def monte_carlo(engine: Any, model: Any, n_paths: int, chunks: int | None = None, *, horizon: Horizon = 24.0,
                level: float = 0.99, weights: Any = None, seed: int | None = None,
                block_paths: int = DEFAULT_BLOCK_PATHS, progress: Callable[[int], None] | None = None
                ) -> TailForecast:
    """VaR/ES of ``n_paths`` simulated losses of a fitted model, computed in ``chunks`` tasks (module doc).

    ``model``: a fitted :class:`~margincal.risk.montecarlo.MonteCarloModel` (losses
    per side of one unit of notional, ``side="both"`` keeps the larger ES, as its
    ``forecast``) or :class:`~margincal.risk.montecarlo.TCopulaMonteCarlo` with
    ``weights`` (signed notionals; as ``portfolio_forecast``). ``seed`` default:
    the model's ``random_state``. ``chunks`` default: 4 per worker.
    Returns a :class:`~margincal.risk.base.TailForecast` whose params record
    ``n_paths``, ``block_paths``, ``seed`` and ``chunks``.
    """
    kind = _model_kind(model)
    level = check_level(level)
    hh = horizon_hours(horizon)
    seed = int(model.random_state if seed is None else seed)
    sizes = block_sizes(n_paths, block_paths)
    n = int(n_paths)
    w = None
    if kind == "copula":
        if weights is None:
            raise ConfigError("a TCopulaMonteCarlo needs weights= (signed notionals per instrument)")
        w = model._weights(weights)
    keep = tail_keep(n, level)
    runs = split_chunks(len(sizes), chunks if chunks is not None else 4 * engine.n_workers)
    tasks = [[(b, sizes[b]) for b in run] for run in runs]
    parts = engine.map(mc_chunk, tasks, model, kind, seed, hh, w, keep, progress=progress,
                       weight=lambda t, _r: sum(nb for _, nb in t))
    moments = _sum_moments([p["moments"] for p in parts])
    best: tuple[float, float, str] | None = None
    for name in parts[0]["top"]:
        top = _top(np.concatenate([p["top"][name] for p in parts]), keep)
        v, e = var_es_from_top(top, n, level)
        if best is None or e > best[1]:
            best = (v, e, name)
    assert best is not None
    extra = {"n_paths": n, "block_paths": int(block_paths), "seed": seed, "chunks": len(tasks),
             "engine": engine.describe()}
    if kind == "univariate":
        side = best[2] if model.side == "both" else model.side
        fc = model._result(level, hh, best[0], best[1], moments.std(), side, float(model.residuals_.size))
        return replace(fc, params={**fc.params, **extra})
    return TailForecast(
        model=model.name,
        params={**model.get_params(), "weights": dict(zip(model.columns_, w.tolist(), strict=True)),  # type: ignore[union-attr]
                "copula_df": model.df_, **extra},
        level=level, horizon_hours=hh, var=best[0], es=max(best[1], best[0]), sigma=moments.std(),
        side="portfolio", n_obs=model.n_obs_, effective_n=float(model.residuals_.shape[0]),
        window_start=model.window_[0], window_end=model.window_[1], instrument="+".join(model.columns_),
    )


# ---------------------------------------------------------------- importance sampling


def _seed(seed: int | None) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed is {seed}; it must be a whole number >= 0")
    return int(seed)


def tp_chunk(blocks: Sequence[tuple[int, int]], target: Any, threshold: float, shift: Any, scale_factor: float,
             dim: int | None, seed: int) -> dict[str, Any]:
    """Task: IS indicator-weight moments and crude exceedances of the given blocks."""
    mom = Moments()
    crude = 0
    method = ""
    for b, nb in blocks:
        x, logw, cr, method = _draw(target, nb, shift, block_rng(seed, b), dim, scale_factor)
        y = np.where(x > threshold, np.exp(logw), 0.0)
        mom = mom + Moments.of(y)
        crude += int((cr > threshold).sum())
    return {"moments": mom, "crude": crude, "method": method}


def tail_probability(engine: Any, target: Any, threshold: float, n: int, chunks: int | None = None, *,
                     shift: Any = None, scale_factor: float | None = None, dim: int | None = None,
                     seed: int | None = None, block_paths: int = DEFAULT_BLOCK_PATHS,
                     progress: Callable[[int], None] | None = None) -> TailProbabilityResult:
    """Importance-sampling ``P(L > threshold)`` as :func:`margincal.risk.rare_event.tail_probability_is`,
    with the draws cut into seeded blocks (module doc); the proposal is fixed here once."""
    if int(n) < 2:
        raise DataError(f"n is {n}; need at least 2 samples")
    seed_i = _seed(seed)
    if shift is None:
        shift = _default_shift(target, float(threshold), dim)
    if scale_factor is None:
        scale_factor = default_scale_factor(target, float(threshold)) if _is_scipy_dist(target) else 1.0
    sizes = block_sizes(n, block_paths)
    runs = split_chunks(len(sizes), chunks if chunks is not None else 4 * engine.n_workers)
    tasks = [[(b, sizes[b]) for b in run] for run in runs]
    parts = engine.map(tp_chunk, tasks, target, float(threshold), shift, float(scale_factor), dim, seed_i,
                       progress=progress, weight=lambda t, _r: sum(nb for _, nb in t))
    mom = _sum_moments([p["moments"] for p in parts])
    n = int(n)
    est = mom.mean
    se = mom.std(ddof=1) / math.sqrt(n)
    c = sum(p["crude"] for p in parts)
    cest = c / n
    cse = math.sqrt(max(c - c * c / n, 0.0) / (n - 1)) / math.sqrt(n)
    return TailProbabilityResult(
        estimate=est, std_error=se, relative_error=se / est if est > 0 else math.inf,
        crude_estimate=cest, crude_std_error=cse, crude_relative_error=cse / cest if cest > 0 else math.inf,
        n=n, threshold=float(threshold), shift=np.asarray(shift).tolist(),
        method=f"{parts[0]['method']}; {len(sizes)} seeded blocks of {int(block_paths)}", seed=seed_i,
    )


def es_chunk(blocks: Sequence[tuple[int, int]], target: Any, level: float, shift: Any, scale_factor: float,
             dim: int | None, seed: int, n_total: int) -> dict[str, Any]:
    """Task: IS draws of the given blocks; keeps the tail (module doc) and per-block estimates for batch SEs."""
    tail = 1.0 - level
    xs, ws, crude_top, per_block = [], [], [], []
    keep_c = tail_keep(n_total, level)
    method = ""
    for b, nb in blocks:
        x, logw, cr, method = _draw(target, nb, shift, block_rng(seed, b), dim, scale_factor)
        w = np.exp(logw)
        order = np.argsort(x)[::-1]
        xo, wo = x[order], w[order]
        before = np.concatenate([[0.0], np.cumsum(wo / n_total)[:-1]])  # weight strictly above each loss
        m = int(np.searchsorted(before, tail * (1.0 + 1e-6), side="right")) + 2
        xs.append(xo[:m])
        ws.append(wo[:m])
        crude_top.append(_top(cr, keep_c))
        try:
            v_b, e_b = weighted_tail_var_es(x, w, level)
        except CalibrationError:
            v_b, e_b = math.nan, math.nan
        per_block.append((v_b, e_b, expected_shortfall(cr, level)))
    return {"x": np.concatenate(xs), "w": np.concatenate(ws), "crude_top": _top(np.concatenate(crude_top), keep_c),
            "per_block": per_block, "method": method}


def weighted_var_es_total(x: np.ndarray, w: np.ndarray, n_total: int, level: float) -> tuple[float, float]:
    """:func:`margincal.risk.rare_event.weighted_tail_var_es` on a kept tail of a sample of ``n_total`` draws."""
    return weighted_tail_var_es(x, w, level, n_total=n_total)


def expected_shortfall_is(engine: Any, target: Any, level: float, n: int, chunks: int | None = None, *,
                          shift: Any = None, scale_factor: float | None = None, dim: int | None = None,
                          seed: int | None = None, var_guess: float | None = None, pilot: int = 20_000,
                          block_paths: int = DEFAULT_BLOCK_PATHS,
                          progress: Callable[[int], None] | None = None) -> ExpectedShortfallResult:
    """Importance-sampling VaR/ES at ``level`` as :func:`margincal.risk.rare_event.expected_shortfall_is`,
    with seeded blocks (module doc). The proposal is chosen here once: for a loss function without
    ``shift`` or ``var_guess`` the pilot rounds run on this process with the generator
    ``SeedSequence(seed, spawn_key=(2**32 - 1,))``. Standard errors: batch means over blocks."""
    if not 0.0 < level < 1.0:
        raise DataError(f"level is {level}; it must be in (0, 1)")
    seed_i = _seed(seed)
    sizes = block_sizes(n, block_paths)
    if len(sizes) < 2:
        raise ConfigError(f"n={n} gives one block of {block_paths}; batch standard errors need at least two "
                          "(lower block_paths)")
    shift, scale_factor = _es_shift_and_scale(
        target, level, dim, pilot, var_guess,
        lambda: np.random.default_rng(np.random.SeedSequence(seed_i, spawn_key=(2**32 - 1,))), shift, scale_factor)
    if isinstance(target, GaussianLossFunction):
        dim = target.dim
    runs = split_chunks(len(sizes), chunks if chunks is not None else 4 * engine.n_workers)
    tasks = [[(b, sizes[b]) for b in run] for run in runs]
    n = int(n)
    parts = engine.map(es_chunk, tasks, target, float(level), shift, float(scale_factor), dim, seed_i, n,
                       progress=progress, weight=lambda t, _r: sum(nb for _, nb in t))
    var, es = weighted_var_es_total(np.concatenate([p["x"] for p in parts]),
                                    np.concatenate([p["w"] for p in parts]), n, level)
    keep_c = tail_keep(n, level)
    cvar, ces = var_es_from_top(_top(np.concatenate([p["crude_top"] for p in parts]), keep_c), n, level)
    pb = [t for p in parts for t in p["per_block"]]
    es_se, ces_se = batch_std_error([t[1] for t in pb]), batch_std_error([t[2] for t in pb])
    return ExpectedShortfallResult(
        level=float(level), var=var, es=es, var_std_error=batch_std_error([t[0] for t in pb]), es_std_error=es_se,
        relative_error=es_se / abs(es) if es else math.inf, crude_var=cvar, crude_es=ces,
        crude_es_std_error=ces_se, crude_relative_error=ces_se / abs(ces) if ces else math.inf,
        crude_expected_tail_count=n * (1.0 - level), n=n, shift=np.asarray(shift).tolist(),
        method=f"{parts[0]['method']}; {len(sizes)} seeded blocks of {int(block_paths)} (batch SE over blocks)",
        seed=seed_i,
    )


__all__ = [
    "DEFAULT_BLOCK_PATHS",
    "Moments",
    "block_rng",
    "block_sizes",
    "expected_shortfall_is",
    "monte_carlo",
    "split_chunks",
    "tail_keep",
    "tail_probability",
    "var_es_from_top",
    "weighted_var_es_total",
]
