"""The adjustment engine: events in, signals and margin adjustments out (no I/O).

:class:`MonitorEngine` keeps one small state object per instrument (online
estimators, signal triggers, the IM/MM rates in force) and processes one event
at a time in O(1). It never touches the store: :class:`margincal.adjust.monitor.Monitor`
persists what it returns. Per event:

1. update the instrument's estimators (:mod:`margincal.adjust.online`);
2. evaluate signals (:mod:`margincal.adjust.signals`) - only once the event is
   at or after ``live_from`` and the instrument has ``warmup_hours`` of bars;
3. on bars, compute the target IM and apply the policy
   (:func:`margincal.adjust.policy.bound_target` / :func:`~margincal.adjust.policy.route`).

Target margin (FHS scaling). The first-line calibration is filtered
historical simulation: IM = ES of ``sigma_t * z`` with ``z`` the standardised
residuals, so IM is proportional to the current volatility with a multiplier
``k = IM_base / sigma_at_calibration`` fixed by the calibration. Between two
calibrations the monitor keeps ``k`` and moves sigma::

    IM_target = IM_base * sigma_now / sigma_anchor
    MM_target = IM_target * MM_base / IM_base

``sigma_now`` is an EWMA volatility of the bar returns with a half-life of
``target_halflife_hours`` (annualised with 8,760 hours a year); ``sigma_anchor``
is the calibration's sigma (``details["sigma"]``, a horizon sigma, annualised
with the horizon) when the published row carries it and the policy says
``anchor = "calibration"``, otherwise the monitor's own ``sigma_now`` at the
first bar it may act on. ``IM_base``, ``MM_base`` and ``sigma_anchor`` travel
in the details of every auto-adjusted row, so targets never compound.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from margincal.adjust import signals as sg
from margincal.adjust.online import (
    BreachCounter,
    EWMAVariance,
    EWMStats,
    corwin_schultz_spread,
    halflife_to_lambda,
)
from margincal.adjust.policy import Bounds, Policy, apc_settings, route
from margincal.data.feeds import (
    KIND_RANK,
    BarEvent,
    DepthEvent,
    FundingEvent,
    OpenInterestEvent,
    timeframe_ns,
)
from margincal.data.store import to_utc
from margincal.errors import ConfigError
from margincal.margin.apc import APCConfig
from margincal.margin.apc import step_floats as apc_step_floats
from margincal.margin.params import ParameterSet

__all__ = ["HOURS_PER_YEAR", "Adjustment", "MonitorEngine", "sigma_anchor_from_details"]

HOURS_PER_YEAR = 8760.0
_EMPTY: list[Any] = []  # shared "nothing happened" result (never mutated)
_NS_PER_HOUR = 3_600_000_000_000
_MONDAY_NS = 4 * 24 * _NS_PER_HOUR  # 1970-01-05, a Monday: decrease batches start on Mondays 00:00 UTC


@dataclass(frozen=True)
class Adjustment:
    """A margin change decided by the engine: applied automatically or proposed to a risk officer."""

    instrument: str
    ts: pd.Timestamp
    route: str  # "auto" | "proposal"
    im_before: float
    im_after: float
    mm_before: float
    mm_after: float
    target_im: float
    sigma_now: float
    sigma_anchor: float
    im_base: float
    mm_base: float
    rule: str
    reason: str
    signals: tuple[sg.Signal, ...] = ()
    estimators: Mapping[str, float] = field(default_factory=dict)
    #: what moved the target: {"vol_factor", "oi_imf", "horizon_factor", "liquidity_addon", "funding_provision",
    #: "tier_scale", "moved_by": [...]} (see :func:`compose_target`)
    components: Mapping[str, Any] = field(default_factory=dict)
    #: "new_exposure" (an IM change: applies to positions opened from ``effective_at``) or "all_positions"
    #: (an MM change: applies to existing positions too, after the notice period)
    scope: str = "new_exposure"
    effective_at: pd.Timestamp | None = None
    #: MM announced now, in force from ``mm_effective_at`` (NaN / None: no MM change scheduled)
    mm_scheduled: float = math.nan
    mm_effective_at: pd.Timestamp | None = None
    #: adjustments sharing a group are filed together (one proposal / one version with one diff)
    group: str | None = None
    kind: str = "rate"  # "rate" | "mm_effective" | "escalation" | "decrease_batch"

    @property
    def change_pct(self) -> float:
        return 100.0 * (self.im_after / self.im_before - 1.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument, "ts": self.ts.isoformat(), "route": self.route,
            "im_before": self.im_before, "im_after": self.im_after, "mm_before": self.mm_before,
            "mm_after": self.mm_after, "change_pct": round(self.change_pct, 4), "target_im": self.target_im,
            "sigma_now_annual": self.sigma_now, "sigma_anchor_annual": self.sigma_anchor, "im_base": self.im_base,
            "mm_base": self.mm_base, "rule": self.rule, "reason": self.reason,
            "signals": [s.as_dict() for s in self.signals],
            "estimators": {k: (None if not math.isfinite(v) else v) for k, v in self.estimators.items()},
            "components": dict(self.components), "scope": self.scope, "kind": self.kind, "group": self.group,
            "effective_at": (self.effective_at or self.ts).isoformat(),
            "mm_scheduled": None if self.mm_scheduled != self.mm_scheduled else self.mm_scheduled,
            "mm_effective_at": None if self.mm_effective_at is None else self.mm_effective_at.isoformat(),
        }


def sigma_anchor_from_details(details: Mapping[str, Any], provenance: Mapping[str, Any] | None = None
                              ) -> float | None:
    """Annualised sigma at calibration from a published row, or None when it is not recorded.

    ``details["sigma_anchor_annual"]`` (written by earlier automatic changes)
    wins; otherwise ``details["sigma"]`` is the calibration's horizon sigma
    (``sigma_bar * sqrt(h / bar_hours)``) and is annualised as
    ``sigma * sqrt(8760 / horizon_hours)``.
    """
    a = details.get("sigma_anchor_annual")
    if isinstance(a, (int, float)) and a > 0:
        return float(a)
    s = details.get("sigma")
    h = details.get("horizon_hours") or (provenance or {}).get("horizon_hours")
    if isinstance(s, (int, float)) and s > 0 and isinstance(h, (int, float)) and h > 0:
        return float(s) * math.sqrt(HOURS_PER_YEAR / float(h))
    return None


def compose_target(im_base: float, mm_base: float, *, vol_factor: float, open_interest: float = math.nan,
                   oi_caps: tuple[float, float] | None = None, horizon_factor: float = 1.0,
                   horizon_exponent: float = 0.5, liquidity_addon: float = 0.0, funding_provision: float = 0.0,
                   tier_boundary_liquidity: bool = True, tier_boundary_oi: bool = True
                   ) -> tuple[float, float, dict[str, Any]]:
    """Target IM and MM from the calibrated rates and what each signal measured.

    ::

        core      = IM_base x vol_factor x horizon_factor ** horizon_exponent
        IM_core   = oi_scaled_imf(core, OI, lower cap, upper cap)   (margin.size_rules; dYdX v4 rule)
        IM_target = IM_core + liquidity_addon + funding_provision
        MM_target = IM_core x MM_base / IM_base + liquidity_addon + funding_provision

    The tier scale (what the tier boundaries are multiplied by) is
    ``min(lower cap / OI, 1 / horizon_factor, 1)``. Returns ``(im, mm,
    components)``; ``components["moved_by"]`` names the parameters that moved.
    """
    from margincal.margin.size_rules import oi_scaled_imf

    core = im_base * vol_factor * (horizon_factor ** horizon_exponent if horizon_factor > 1.0 else 1.0)
    imf = core
    tier = 1.0
    moved = []
    if vol_factor != 1.0:
        moved.append("rates (volatility)")
    if horizon_factor > 1.0:
        moved.append("close-out horizon")
        if tier_boundary_liquidity:
            tier = 1.0 / horizon_factor
    if oi_caps is not None and open_interest == open_interest and open_interest > oi_caps[0] and core < 1.0:
        imf = float(oi_scaled_imf(min(core, 1.0), open_interest, oi_caps[0], oi_caps[1]))
        moved.append("OI-scaled IM")
        if tier_boundary_oi:
            tier = min(tier, oi_caps[0] / open_interest)
    if tier < 1.0:
        moved.append("tier boundaries")
    if liquidity_addon > 0:
        moved.append("liquidity add-on")
    if funding_provision > 0:
        moved.append("funding provision")
    im = imf + liquidity_addon + funding_provision
    mm = imf * mm_base / im_base + liquidity_addon + funding_provision
    comp = {"vol_factor": vol_factor, "horizon_factor": horizon_factor, "oi_imf": imf / core if core > 0 else 1.0,
            "open_interest": open_interest if open_interest == open_interest else None,
            "oi_caps": list(oi_caps) if oi_caps is not None else None, "liquidity_addon": liquidity_addon,
            "funding_provision": funding_provision, "tier_scale": tier, "im_core": imf, "moved_by": moved}
    return im, mm, comp


def _signal_from_dict(r: Mapping[str, Any]) -> sg.Signal:
    return sg.Signal(r["instrument"], pd.Timestamp(r["ts"]), r["kind"], r["severity"],
                     {k: (math.nan if v is None else float(v)) for k, v in r["values"].items()},
                     math.nan if r["threshold"] is None else float(r["threshold"]), r["reason"])


def _adjustment_from_dict(d: Mapping[str, Any]) -> Adjustment:
    """Inverse of :meth:`Adjustment.as_dict` (for decisions held in the engine's checkpointed state)."""
    def nf(x: Any) -> float:
        return math.nan if x is None else float(x)

    def ts(x: Any) -> pd.Timestamp | None:
        return None if x is None else pd.Timestamp(x)

    return Adjustment(d["instrument"], pd.Timestamp(d["ts"]), d["route"], nf(d["im_before"]), nf(d["im_after"]),
                      nf(d["mm_before"]), nf(d["mm_after"]), nf(d["target_im"]), nf(d["sigma_now_annual"]),
                      nf(d["sigma_anchor_annual"]), nf(d["im_base"]), nf(d["mm_base"]), d["rule"], d["reason"],
                      tuple(_signal_from_dict(x) for x in d["signals"]),
                      {k: nf(v) for k, v in d["estimators"].items()}, dict(d.get("components") or {}),
                      d.get("scope", "new_exposure"), ts(d.get("effective_at")), nf(d.get("mm_scheduled")),
                      ts(d.get("mm_effective_at")), d.get("group"), d.get("kind", "rate"))


class _Inst:
    """Per-instrument state (plain floats and small estimator objects)."""

    # the estimators exist from the first bar (or event) on: None until then
    tf: str | None
    vs: EWMAVariance | None
    vl: EWMAVariance | None
    vt: EWMAVariance | None
    volu: EWMStats | None
    volu_s: EWMStats | None
    cs_s: EWMStats | None
    cs_l: EWMStats | None
    breach: BreachCounter | None
    oi_stats: EWMStats | None
    fund_stats: EWMStats | None
    depth_stats: EWMStats | None
    spread_stats: EWMStats | None
    oi_ref: EWMStats | None
    oi_cal: tuple[float, float] | None

    __slots__ = (
        "bar_hours", "bars_per_year", "breach", "cs_l", "cs_s", "depth_first", "depth_seen", "depth_stats", "depth_t",
        "fund_first", "fund_stats", "fund_t",
        "im", "im_base", "last_change_ns", "last_increase_ns", "last_proposal_ns", "listing_done", "mm", "mm_base", "n_bars", "name",
        "oi_prev", "oi_stats", "oi_t", "pending_im", "prev_close", "prev_high", "prev_low", "prev_open_ns", "recent",
        "sigma_anchor", "spread_stats", "tf", "tf_ns", "trig", "vl", "volu", "vs", "vt",
        "apc_base", "apc_beta", "apc_beta0", "apc_cfg", "apc_out", "batch_idx", "depth_last", "fund_last", "mm_queue", "mm_sched", "mm_sched_ns",
        "oi_level", "oi_cal", "oi_ref", "spread_last", "volu_s", "bar_est",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.tf = None
        self.tf_ns = 0
        self.bar_hours = math.nan
        self.bars_per_year = math.nan
        self.n_bars = 0
        self.prev_close = math.nan
        self.prev_high = math.nan
        self.prev_low = math.nan
        self.prev_open_ns = 0
        self.vs = self.vl = self.vt = None  # EWMAVariance, created at the first bar (needs the bar spacing)
        self.volu = self.cs_s = self.cs_l = None
        self.breach = None
        self.oi_prev = math.nan
        self.oi_t = 0
        self.fund_t = 0
        self.fund_first = math.nan
        self.depth_t = 0
        self.depth_first = (math.nan, math.nan)
        self.oi_stats = self.fund_stats = self.depth_stats = self.spread_stats = None
        self.depth_seen = False
        # triggers: vol, volume, oi, depth, spread, proxy, funding, breach, volume drop
        self.trig = [sg.Trigger() for _ in range(9)]
        self.volu_s = None  # 24h EWMA of log volume (volume drop)
        self.bar_est: tuple[Any, ...] | None = None  # (vs, vl, vt, volu, volu_s, cs_s, cs_l, breach) once they exist
        self.oi_cal = None  # OI caps from the calibrated row (details oi_lower_cap / oi_upper_cap)
        self.oi_ref = None  # slow EWMA of OI notional (the reference level of the OI caps)
        self.oi_level = math.nan
        self.fund_last = math.nan
        self.depth_last = math.nan
        self.spread_last = math.nan
        self.mm_sched = math.nan  # the latest announced MM and when it takes effect
        self.mm_sched_ns = 0
        self.mm_queue: list[list[float]] = []  # earlier announcements still to take effect: [[rate, ns], ...]
        self.batch_idx = -1
        self.apc_out = math.nan  # margin.apc state: the previous output, base and buffer fraction in force
        self.apc_base = math.nan
        self.apc_beta = math.nan
        self.apc_beta0 = math.nan  # the APC buffer the calibrated IM carries (NaN: the preset's full buffer)
        self.apc_cfg: APCConfig | None = None  # the policy's [apc] converted to this instrument's bar size
        self.listing_done = False
        self.recent: list[sg.Signal] = []
        self.im = self.mm = self.im_base = self.mm_base = math.nan
        self.sigma_anchor = math.nan
        self.last_change_ns = -(1 << 62)
        self.last_increase_ns = -(1 << 62)
        self.last_proposal_ns = -(1 << 62)
        self.pending_im = math.nan

    def critical(self) -> bool:
        return any(t.level == 2 for t in self.trig)


def _halflife_lam(hours: float, bar_hours: float) -> float:
    return halflife_to_lambda(hours / bar_hours)


class MonitorEngine:
    """Online estimators + signals + policy over an event stream (pure; no store access).

    Parameters
    ----------
    policy : a validated :class:`~margincal.adjust.policy.Policy`.
    params : the parameter set in force (None: signals only, no adjustments).
    live_from : events before this time only warm the estimators up (no
        signal, no adjustment); None = live from the first event.

    ``process(event)`` returns None (nothing happened) or a list of
    :class:`~margincal.adjust.signals.Signal` and :class:`Adjustment` objects.
    ``state()`` / ``from_state()`` save and restore everything (JSON-able).
    """

    def __init__(self, policy: Policy, params: ParameterSet | None = None, *, live_from: Any = None) -> None:
        self.policy = policy
        self.live_from_ns = -(1 << 62) if live_from is None else int(to_utc(live_from).value)
        self._insts: dict[str, _Inst] = {}
        self.events_processed = 0
        self._last_key: tuple[int, int, str] | None = None
        self._last_ev: Any = None  # the last event processed; its key is built only when asked for
        self.params: ParameterSet | None = None
        e = policy["estimators"]
        self._short_h = e["short_halflife_hours"]
        self._long_h = e["long_halflife_hours"]
        self._target_h = e["target_halflife_hours"]
        self._stats_h = e["stats_halflife_hours"]
        self._seed = e["vol_seed_bars"]
        self._band_bps = e["depth_band_bps"]
        self._warmup_h = e["warmup_hours"]
        s = policy
        self._vr = s["signals.vol_regime"]
        self._vu = s["signals.volume_surge"]
        self._oi = s["signals.oi_surge"]
        self._lq = s["signals.liquidity_drop"]
        self._fu = s["signals.funding_extreme"]
        self._br = s["signals.breach_cluster"]
        self._nl = s["signals.new_listing"]
        self._vr_on, self._vr_w, self._vr_c, self._vr_r = (self._vr["enabled"], self._vr["warning"],
                                                           self._vr["critical"], self._vr["rearm"])
        self._vu_on, self._vu_w, self._vu_c, self._vu_r = (self._vu["enabled"], self._vu["warning"],
                                                           self._vu["critical"], self._vu["rearm"])
        self._px_on = self._lq["enabled"] and self._lq["bar_spread_proxy"]
        self._px_w, self._px_c = self._lq["proxy_warning"], self._lq["proxy_critical"]
        self._px_r = self._px_w * self._lq["rearm_fraction"]
        self._br_on, self._br_w, self._br_c = self._br["enabled"], self._br["warning"], self._br["critical"]
        self._nl_on = self._nl["enabled"]
        self._band = policy["auto"]["hysteresis"]
        self._floor = policy["target"]["im_floor"]
        self._floor_frac = policy["target"]["floor_fraction_of_base"]
        self._cap = policy["target"]["im_cap"]
        self._anchor_cal = policy["target"]["anchor"] == "calibration"
        self._bounds = Bounds(policy)
        self._dec_needs_officer = bool(policy["approval"]["decrease"])
        self._prop_cool_ns = int(policy["approval"]["proposal_cooldown_hours"] * _NS_PER_HOUR)
        mv = self._mv = {k: policy[f"moves.{k}"] for k in ("volatility", "open_interest", "liquidity", "funding",
                                                              "breach")}
        self._mv_vol = mv["volatility"]["enabled"]
        self._mv_regime = mv["volatility"]["regime_short_vol"]
        self._mv_oi = mv["open_interest"]["enabled"]
        self._mv_liq = mv["liquidity"]["enabled"]
        self._mv_fund = mv["funding"]["enabled"]
        self._mv_br = mv["breach"]["enabled"]
        self._vd_w, self._vd_c = self._lq["volume_drop_warning"], self._lq["volume_drop_critical"]
        self._vd_r = self._vd_w * self._lq["rearm_fraction"]
        self._stale = policy["signals.stale_data"]
        self._stale_on, self._stale_gap = self._stale["enabled"], self._stale["max_gap_bars"]
        # the lowest level at which each bar trigger can fire (below it, and above its re-arm level, its check
        # returns 0 without changing anything, so _on_bar skips the call)
        self._vr_lo, self._vu_lo = min(self._vr_w, self._vr_c), min(self._vu_w, self._vu_c)
        self._px_lo, self._vd_lo = min(self._px_w, self._px_c), min(self._vd_w, self._vd_c)
        self._br_lo = min(self._br_w, self._br_c)
        ef = policy["effective"]
        self._notice_ns = int(ef["mm_notice_hours"] * _NS_PER_HOUR)
        self._batch_ns = int(ef["decrease_batch_hours"] * _NS_PER_HOUR)
        self._dec_band = float(ef["decrease_hysteresis"])
        self._apc_on, self._apc_cfg = apc_settings(policy)
        self._apc_peek = False  # True inside target(): a view, not a new step of the recursion
        self._oi_lo_mult = mv["open_interest"]["lower_cap_multiple"]
        self._oi_hi_mult = mv["open_interest"]["upper_cap_multiple"]
        self._fund_periods = mv["funding"]["horizon_hours"] / mv["funding"]["interval_hours"]
        self._batch: list[Adjustment] = []  # decreases collected at a batch boundary, filed together
        self._batch_due = 0
        if params is not None:
            self.set_params(params)

    # ------------------------------------------------------------------ params
    def _inst(self, name: str) -> _Inst:
        st = self._insts.get(name)
        if st is None:
            st = _Inst(name)
            self._insts[name] = st
            if self.params is not None and name in self.params.params:
                self._apply_row(st, self.params, name, now_ns=None)
        return st

    def _apply_row(self, st: _Inst, pset: ParameterSet, name: str, now_ns: int | None) -> None:
        p = pset.params[name]
        d = p.details or {}
        changed = math.isfinite(st.im) and (st.im != p.im_rate)
        if changed and now_ns is not None:
            if p.im_rate > st.im:
                st.last_increase_ns = now_ns
            st.last_change_ns = now_ns
        st.im, st.mm = float(p.im_rate), float(p.mm_rate)
        im_base = float(d.get("im_base", p.im_rate))
        if im_base != st.im_base:
            # a new calibration: the anti-procyclicality recursion starts again from it
            st.apc_out = st.apc_base = st.apc_beta = math.nan
            es, es_raw = d.get("es"), d.get("es_raw")
            st.apc_beta0 = (min(max(float(es) / float(es_raw) - 1.0, 0.0), self._apc_cfg.buffer)
                            if isinstance(es, (int, float)) and isinstance(es_raw, (int, float)) and es_raw > 0
                            and math.isfinite(es) else math.nan)
        st.im_base = im_base
        st.mm_base = float(d.get("mm_base", p.mm_rate))
        anchor = sigma_anchor_from_details(d, pset.provenance) if self._anchor_cal else (
            float(d["sigma_anchor_annual"]) if isinstance(d.get("sigma_anchor_annual"), (int, float)) else None)
        if anchor is not None:
            st.sigma_anchor = anchor
        if math.isfinite(st.pending_im) and abs(st.pending_im / st.im - 1.0) <= 1e-12:
            st.pending_im = math.nan
        lo, hi = d.get("oi_lower_cap"), d.get("oi_upper_cap")
        st.oi_cal = (float(lo), float(hi)) if (isinstance(lo, (int, float)) and isinstance(hi, (int, float))
                                               and hi > lo > 0) else None
        sched = d.get("mm_scheduled")
        if isinstance(sched, Mapping) and isinstance(sched.get("rate"), (int, float)):
            rate = float(sched["rate"])
            if st.mm_sched == st.mm_sched and abs(st.mm_sched - rate) <= 1e-15:
                pass  # already scheduled by this engine (e.g. on resume): keep its effective time
            elif abs(rate - st.mm) > 1e-15:
                eff = int(pd.Timestamp(sched["effective_at"]).value)
                if now_ns is not None:  # announced on approval: the notice runs from now at the earliest
                    eff = max(eff, now_ns + self._notice_ns)
                st.mm_sched, st.mm_sched_ns = rate, eff
            else:
                st.mm_sched = math.nan
        elif changed:
            st.mm_sched = math.nan

    def set_params(self, pset: ParameterSet, *, now_ns: int | None = None,
                   pending: Mapping[str, float] | None = None) -> None:
        """Take the rates in force from ``pset`` (e.g. after an officer approved a proposal).

        ``pending`` (instrument -> proposed IM of the open proposal) replaces
        the engine's idea of what is awaiting a decision.
        """
        self.params = pset
        for name in pset.params:
            st = self._insts.get(name)
            if st is None:
                self._inst(name)
            else:
                self._apply_row(st, pset, name, now_ns)
        if pending is not None:
            for name, st in self._insts.items():
                st.pending_im = float(pending[name]) if name in pending else math.nan

    def rates(self) -> dict[str, tuple[float, float]]:
        return {n: (s.im, s.mm) for n, s in self._insts.items() if math.isfinite(s.im)}

    # ------------------------------------------------------------------ events
    def process(self, ev: Any) -> list[Any] | None:
        """Process one event; returns None or a list of signals and adjustments."""
        k = ev.kind
        if self._batch and ev.t_ns >= self._batch_due:
            # one filing = one group (a window's decreases found later in the window are a filing of their own)
            due = pd.Timestamp(self._batch_due - 1, tz="UTC").isoformat()
            flushed: list[Any] = [dataclasses.replace(a, group=f"{a.group}@{due}") for a in self._batch]
            self._batch = []
            more = self.process(ev)
            return flushed + (more or [])
        if k == "bar":
            out = self._on_bar(ev)
        elif k == "funding":
            out = self._on_funding(ev)
        elif k == "oi":
            out = self._on_oi(ev)
        elif k == "depth":
            out = self._on_depth(ev)
        else:  # pragma: no cover - feeds only produce the four kinds
            raise ConfigError(f"unknown event kind {k!r}")
        self.events_processed += 1
        self._last_ev = ev
        return out

    @property
    def last_key(self) -> tuple[int, int, str] | None:
        """Key ``(t_ns, kind rank, instrument)`` of the last event processed (or restored from a checkpoint)."""
        ev = self._last_ev
        if ev is not None:
            return (ev.t_ns, KIND_RANK[ev.kind], ev.instrument)
        return self._last_key

    @last_key.setter
    def last_key(self, key: tuple[int, int, str] | None) -> None:
        self._last_key = key
        self._last_ev = None

    def _first_bar(self, st: _Inst, ev: BarEvent) -> None:
        st.tf = ev.timeframe
        st.tf_ns = timeframe_ns(ev.timeframe)
        bh = st.tf_ns / _NS_PER_HOUR
        st.bar_hours = bh
        st.bars_per_year = HOURS_PER_YEAR / bh
        seed = self._seed
        st.vs = EWMAVariance(_halflife_lam(self._short_h, bh), seed)
        st.vl = EWMAVariance(_halflife_lam(self._long_h, bh), seed)
        st.vt = EWMAVariance(_halflife_lam(self._target_h, bh), seed)
        lam_stats = _halflife_lam(self._stats_h, bh)
        st.volu = EWMStats(lam_stats)
        st.volu_s = EWMStats(_halflife_lam(self._short_h, bh))
        st.cs_s = EWMStats(_halflife_lam(self._short_h, bh))
        st.cs_l = EWMStats(_halflife_lam(self._long_h, bh))
        h = max(1, int(round(self._br["horizon_hours"] / bh)))
        w = max(1, int(round(self._br["window_hours"] / bh)))
        st.breach = BreachCounter(h, w)

    def _remember(self, st: _Inst, sig: sg.Signal, out: list[Any]) -> None:
        out.append(sig)
        rec = st.recent
        rec.append(sig)
        if len(rec) > 8:
            del rec[0]

    def _bar_estimators(self, st: _Inst, ev: BarEvent) -> tuple[EWMAVariance, EWMAVariance, EWMAVariance, EWMStats,
                                                                 EWMStats, EWMStats, EWMStats, BreachCounter]:
        """The bar estimators of ``st`` as one tuple (created at the first bar), cached on the instrument."""
        if st.vs is None:
            self._first_bar(st, ev)
        if st.volu_s is None:  # a state saved before the volume-drop measure existed
            st.volu_s = EWMStats(_halflife_lam(self._short_h, st.bar_hours))
        vs, vl, vt, volu, volu_s, cs_s, cs_l, breach = (st.vs, st.vl, st.vt, st.volu, st.volu_s, st.cs_s, st.cs_l,
                                                        st.breach)
        assert (vs is not None and vl is not None and vt is not None and volu is not None and cs_s is not None
                and cs_l is not None and breach is not None), "the bar estimators are created by _first_bar"
        est = st.bar_est = (vs, vl, vt, volu, volu_s, cs_s, cs_l, breach)
        return est

    def _on_bar(self, ev: BarEvent) -> list[Any] | None:
        # The hot path (every bar of every instrument): locals instead of repeated attribute lookups, the EWMA
        # variance recursion written out (the very operations of EWMAVariance.update_scaled), and a trigger's
        # check called only when its measure is at a firing level or could re-arm it (Trigger.check returns 0
        # otherwise and changes nothing).
        st = self._insts.get(ev.instrument)
        if st is None:
            st = self._inst(ev.instrument)
        est = st.bar_est
        if est is None:
            est = self._bar_estimators(st, ev)
        vs, vl, vt, volu, volu_s, cs_s, cs_l, breach = est
        c = ev.close
        h = ev.high
        lo = ev.low
        pc = st.prev_close
        t = ev.t_ns
        tf_ns = st.tf_ns
        open_ns = t - tf_ns
        gap = 1
        if pc > 0.0 and c > 0.0:
            r = math.log(c / pc)
            gap = (open_ns - st.prev_open_ns) // tf_ns
            x2 = r * r if gap <= 1 else r * r / gap
            if vs.n >= vs.seed:
                vs.n += 1
                vs.var = vs.lam * vs.var + vs.a * x2
            else:
                vs.update_scaled(x2)
            if vl.n >= vl.seed:
                vl.n += 1
                vl.var = vl.lam * vl.var + vl.a * x2
            else:
                vl.update_scaled(x2)
            if vt.n >= vt.seed:
                vt.n += 1
                vt.var = vt.lam * vt.var + vt.a * x2
            else:
                vt.update_scaled(x2)
            if gap == 1 and lo > 0.0 and st.prev_low > 0.0:
                s = corwin_schultz_spread(st.prev_high, st.prev_low, h, lo)
                cs_s.update(s)
                cs_l.update(s)
        vol = ev.volume
        lv = math.log1p(vol) if vol > 0.0 else 0.0
        # EWMStats.zscore, inlined
        z_vol = (lv - volu.mean) / math.sqrt(volu.var) if volu.n >= 2 and volu.var > 0.0 else math.nan
        volu.update(lv)
        volu_s.update(lv)
        im_now = st.im
        breach.update(c, im_now if im_now == im_now else math.inf)
        st.prev_close, st.prev_high, st.prev_low, st.prev_open_ns = c, h, lo, open_ns
        n_bars = st.n_bars = st.n_bars + 1
        if t < self.live_from_ns:
            return None
        out: list[Any] | None = None
        if not st.listing_done:
            st.listing_done = True
            min_bars = int(round(self._nl["min_history_hours"] / st.bar_hours))
            if self._nl_on and n_bars < min_bars:
                out = []
                self._remember(st, sg.new_listing(st.name, ev.available_at, n_bars, min_bars, st.bar_hours), out)
        if n_bars * st.bar_hours < self._warmup_h:
            return out
        if st.last_change_ns < 0:
            # speed limits count from the first bar the monitor may act on (not from an unknown past change)
            st.last_change_ns = t
        trig = st.trig
        # ---- volatility regime
        if self._vr_on and vl.var > 0.0:
            ratio = math.sqrt(vs.var / vl.var)
            tr = trig[0]
            if ratio >= self._vr_lo or (tr.level and ratio < self._vr_r):
                lvl = tr.check(ratio, self._vr_w, self._vr_c, self._vr_r)
                if lvl:
                    if out is None:
                        out = []
                    bpy = st.bars_per_year
                    self._remember(st, sg.vol_regime(st.name, ev.available_at, lvl, math.sqrt(vs.var * bpy),
                                                     math.sqrt(vl.var * bpy), self._vr_c if lvl == 2 else self._vr_w,
                                                     self._short_h, self._long_h), out)
        # ---- volume surge
        if self._vu_on and z_vol == z_vol:
            tr = trig[1]
            if z_vol >= self._vu_lo or (tr.level and z_vol < self._vu_r):
                lvl = tr.check(z_vol, self._vu_w, self._vu_c, self._vu_r)
                if lvl:
                    if out is None:
                        out = []
                    self._remember(st, sg.volume_surge(st.name, ev.available_at, lvl, vol,
                                                       math.expm1(volu.mean), z_vol,
                                                       self._vu_c if lvl == 2 else self._vu_w), out)
        # ---- bar spread proxy (only while no order-book data has been seen)
        if self._px_on and not st.depth_seen and cs_l.n > 1 and cs_l.mean > 0.0:
            pr = cs_s.mean / cs_l.mean
            tr = trig[5]
            if pr >= self._px_lo or (tr.level and pr < self._px_r):
                lvl = tr.check(pr, self._px_w, self._px_c, self._px_r)
                if lvl:
                    if out is None:
                        out = []
                    self._remember(st, sg.spread_widening(st.name, ev.available_at, lvl, 1e4 * cs_s.mean,
                                                          1e4 * cs_l.mean, self._px_c if lvl == 2 else self._px_w,
                                                          proxy=True), out)
        # ---- volume drop (liquidity: the 24h level of traded volume against its 7-day level)
        escalate = False
        if self._px_on and volu.n > 1 and volu_s.n > 1:
            vdrop = 1.0 - math.exp(volu_s.mean - volu.mean)
            tr = trig[8]
            if vdrop >= self._vd_lo or (tr.level and vdrop < self._vd_r):
                lvl = tr.check(vdrop, self._vd_w, self._vd_c, self._vd_r)
                if lvl:
                    if out is None:
                        out = []
                    self._remember(st, sg.volume_drop(st.name, ev.available_at, lvl, math.expm1(volu_s.mean),
                                                      math.expm1(volu.mean), self._vd_c if lvl == 2 else self._vd_w),
                                   out)
        # ---- breach cluster
        if self._br_on:
            cnt = breach.counts.count
            tr = trig[7]
            if cnt >= self._br_lo or (tr.level and cnt < self._br_w):
                lvl = tr.check(cnt, self._br_w, self._br_c, self._br_w)
                if lvl:
                    if out is None:
                        out = []
                    bc = breach
                    self._remember(st, sg.breach_cluster(st.name, ev.available_at, lvl, cnt,
                                                         self._br["window_hours"],
                                                         self._br_c if lvl == 2 else self._br_w, bc.last_move,
                                                         bc.last_margin, self._br["horizon_hours"]), out)
                    escalate = self._mv_br
        # ---- stale data: no decision on a bar that follows a gap
        if gap > self._stale_gap and n_bars > 1:
            if self._stale_on:
                if out is None:
                    out = []
                self._remember(st, sg.stale_data(st.name, ev.available_at, float(gap), self._stale_gap,
                                                 st.bar_hours), out)
            return out
        # ---- margin target and policy
        if im_now == im_now:
            # a scheduled MM change whose notice period has passed takes effect first
            if st.mm_queue and t >= st.mm_queue[0][1]:
                due = [q for q in st.mm_queue if t >= q[1]]
                st.mm_queue = [q for q in st.mm_queue if t < q[1]]
                eff = self._mm_effective(st, ev, due[-1][0], int(due[-1][1]))
                out = eff if out is None else out + eff
            if st.mm_sched == st.mm_sched and t >= st.mm_sched_ns:
                rate = st.mm_sched
                st.mm_sched = math.nan
                st.mm_queue = []
                eff = self._mm_effective(st, ev, rate, st.mm_sched_ns)
                out = eff if out is None else out + eff
                im_now = st.im
            var_t = vt.var
            if var_t > 0.0:
                sig_now = math.sqrt(var_t * st.bars_per_year)
                if st.sigma_anchor != st.sigma_anchor:
                    st.sigma_anchor = sig_now
                target, mm_target, comp = self._target(st, sig_now)
                adj: list[Any] = _EMPTY
                if target < im_now and self._batch_ns and st.batch_idx == (t - _MONDAY_NS) // self._batch_ns \
                        and im_now <= self._cap:
                    pass  # a decrease, and this batch window was already evaluated: nothing to do until the next
                elif abs(target / im_now - 1.0) > self._band or not (
                        self._floor <= im_now <= self._cap and im_now >= self._floor_frac * st.im_base):
                    adj = self._adjust(st, ev, t, target, mm_target / target, sig_now, comp)
                if escalate:
                    adj = list(adj) + self._escalate(st, ev, t, target, mm_target / target, sig_now, comp)
                if adj:
                    if out is None:
                        out = list(adj)
                    else:
                        out.extend(adj)
        return out

    # ------------------------------------------------------------------ targets
    def _liquidity(self, st: _Inst) -> tuple[float, float]:
        """(horizon factor, liquidity add-on) while a liquidity_drop signal is active, else (1, 0)."""
        trig = st.trig
        if not (trig[3].level or trig[4].level or trig[5].level or trig[8].level):
            return 1.0, 0.0
        q = 1.0
        addon = 0.0
        if st.depth_seen:
            ds, ss = st.depth_stats, st.spread_stats
            if ds is not None and st.depth_last > 0 and ds.mean > 0:
                q = max(q, ds.mean / st.depth_last)
            if ss is not None and ss.mean > 0 and st.spread_last == st.spread_last:
                q = max(q, st.spread_last / ss.mean)
                addon = max(addon, (st.spread_last - ss.mean) / 1e4)
        elif st.cs_s is not None and st.cs_l is not None and st.cs_l.n > 1 and st.cs_l.mean > 0:
            q = max(q, st.cs_s.mean / st.cs_l.mean)
            addon = max(addon, st.cs_s.mean - st.cs_l.mean)
        if st.volu is not None and st.volu_s is not None and st.volu_s.n > 1:
            q = max(q, math.exp(st.volu.mean - st.volu_s.mean))
        lq = self._mv["liquidity"]
        return min(q, lq["max_horizon_factor"]), lq["addon_multiplier"] * max(addon, 0.0)

    def _oi_caps(self, st: _Inst) -> tuple[float, float] | None:
        """OI caps: the calibrated ones on the row in force, else multiples of the monitor's OI reference level."""
        if st.oi_cal is not None:
            return st.oi_cal
        ref = st.oi_ref
        if ref is None or ref.n < 1 or not ref.mean > 0:
            return None
        lo_, hi_ = ref.mean * self._oi_lo_mult, ref.mean * self._oi_hi_mult
        return (lo_, hi_) if hi_ > lo_ else None

    def _target(self, st: _Inst, sig_now: float) -> tuple[float, float, Any]:
        """Target IM and MM of one instrument now, and which signal moved what (:func:`compose_target`).

        The third item is the components dict, or a tuple from which :meth:`_components` builds the same dict
        on demand (most bars change nothing): the vol factor when only volatility moved, or the dict of
        :func:`compose_target` with what anti-procyclicality did still to be added.
        """
        if self._mv_regime and st.trig[0].level and st.vs is not None:
            v = math.sqrt(st.vs.var * st.bars_per_year)
            if v > sig_now:
                sig_now = v
        vol_factor = sig_now / st.sigma_anchor if self._mv_vol else 1.0
        trig = st.trig
        if self._mv_liq and (trig[3].level or trig[4].level or trig[5].level or trig[8].level):
            q, addon = self._liquidity(st)
        else:  # no liquidity signal active (what _liquidity returns then, without the call)
            q, addon = 1.0, 0.0
        fund = 0.0
        if self._mv_fund and trig[6].level and st.fund_last == st.fund_last:
            fund = abs(st.fund_last) * self._fund_periods
        caps = self._oi_caps(st) if self._mv_oi and st.oi_level == st.oi_level else None
        fast = q == 1.0 and addon == 0.0 and fund == 0.0 and (caps is None or st.oi_level <= caps[0])
        if not self._apc_on:
            if fast:
                im = st.im_base * vol_factor
                return im, im * st.mm_base / st.im_base, (vol_factor, sig_now)
            scaled = vol_factor
        else:
            # anti-procyclicality acts on the volatility-scaled rate (the published rule buffers the tail loss,
            # not the close-out horizon, OI scaling or the add-ons, which apply on top of it)
            raw = st.im_base * vol_factor
            out = self.apply_apc(st, raw)
            if fast:
                return out, out * st.mm_base / st.im_base, (vol_factor, sig_now, raw, st.apc_beta, out)
            scaled = out / st.im_base
        im, mm, comp = compose_target(
            st.im_base, st.mm_base, vol_factor=scaled, open_interest=st.oi_level, oi_caps=caps,
            horizon_factor=q, horizon_exponent=self._mv["liquidity"]["horizon_exponent"], liquidity_addon=addon,
            funding_provision=fund, tier_boundary_liquidity=self._mv["liquidity"]["tier_boundaries"],
            tier_boundary_oi=self._mv["open_interest"]["tier_boundaries"])
        comp["sigma_now_annual"] = sig_now
        if self._apc_on:
            comp["vol_factor"] = vol_factor
            # what anti-procyclicality did is written into the dict (a formatted sentence) only when a decision
            # asks for the components (:meth:`_components`), not on every bar
            return im, mm, (comp, raw, st.apc_beta, out)
        return im, mm, comp

    def _apc_components(self, st: _Inst, comp: dict[str, Any], raw: float, beta: float, out: float) -> None:
        """Record what anti-procyclicality did: the core rate before it, the buffer in force, and whether it moved."""
        comp["apc_raw_im"] = raw
        comp["apc_buffer"] = beta
        if abs(out - raw) > 1e-12 * max(raw, 1e-12):
            comp["moved_by"] = [*comp.get("moved_by", []),
                                f"anti-procyclicality (buffer {100 * beta:.1f}%, calibrated with "
                                f"{100 * self._apc_b0(st):.1f}%)"]

    def _components(self, st: _Inst, comp: Any) -> dict[str, Any]:
        if isinstance(comp, tuple):
            if isinstance(comp[0], dict):  # compose_target's dict, anti-procyclicality to add: (dict, raw, buffer, out)
                c = dict(comp[0])  # a copy: a decision may ask more than once (e.g. an automatic step, then a proposal)
                self._apc_components(st, c, comp[1], comp[2], comp[3])
                return c
            if len(comp) == 2:
                c = compose_target(st.im_base, st.mm_base, vol_factor=comp[0])[2]
            else:  # anti-procyclicality applied: (vol factor, sigma, raw rate, buffer in force, output)
                c = compose_target(st.im_base, st.mm_base, vol_factor=comp[4] / st.im_base)[2]
                c["vol_factor"] = comp[0]
                self._apc_components(st, c, comp[2], comp[3], comp[4])
            c["sigma_now_annual"] = comp[1]
            return c
        return comp

    def _apc_b0(self, st: _Inst) -> float:
        """The APC buffer fraction the calibrated IM carries: ``es / es_raw - 1`` of the published row, else the
        preset's full buffer (a published rate in calm markets carries all of it)."""
        b0 = st.apc_beta0
        return self._apc_cfg.buffer if b0 != b0 else b0

    def apply_apc(self, st: _Inst, raw: float) -> float:
        """The one place the monitor calls :mod:`margincal.margin.apc` (:func:`~margincal.margin.apc.step_floats`, the
        recursion of ``step`` on the three floats kept per instrument, with the policy's ``[apc]``).

        ``raw`` is the volatility-scaled rate ``IM_base x vol factor``; the calibrated IM already carries
        the buffer ``b0`` in force at calibration (:meth:`_apc_b0`), so the recursion runs on
        ``raw / (1 + b0)`` - the published rule's unbuffered requirement - and starts, on the first bar the
        monitor acts on, from the calibration's state (output = raw, base ``raw / (1 + b0)``, buffer
        ``b0``): the buffer is then released in stress and rebuilt in calm markets exactly as :func:`margincal.margin.apc.apply_apc` does for the published rates. The state is
        kept per instrument and saved with the checkpoint.
        """
        cfg = st.apc_cfg
        if cfg is None:  # the policy's [apc] on this instrument's bars: rebuild_days become steps of its bar size
            cfg = st.apc_cfg = self._apc_cfg.for_bars(st.bar_hours if st.bar_hours == st.bar_hours else 24.0)
        b0 = st.apc_beta0
        if b0 != b0:  # as _apc_b0, inlined: this runs on every bar
            b0 = cfg.buffer
        if st.apc_out != st.apc_out:
            # the first bar the monitor acts on continues the calibration: its base, with the buffer b0
            st.apc_out, st.apc_base, st.apc_beta = raw, raw / (1.0 + b0), b0
            return raw
        base = raw / (1.0 + b0)
        if self._apc_peek and base == st.apc_base:
            return st.apc_out  # the target view right after this bar's step: the bar's output
        out, st.apc_base, st.apc_beta = apc_step_floats(st.apc_out, st.apc_base, st.apc_beta, base, cfg)
        st.apc_out = out
        return out

    # ------------------------------------------------------------------ decisions
    def _mk(self, st: _Inst, ev: BarEvent, route_: str, before: float, rate: float, mm_now: float,
            mm_sched: float, target: float, sig_now: float, rule: str, comp: Any, kind: str,
            group: str | None = None) -> Adjustment:
        t = ev.t_ns
        ts = ev.available_at
        comp = self._components(st, comp)
        evidence = tuple(s for s in st.recent if t - s.ts.value <= 24 * _NS_PER_HOUR)
        sched = mm_sched if (mm_sched == mm_sched and abs(mm_sched - mm_now) > 1e-15) else math.nan
        return Adjustment(st.name, ts, route_, before, rate, st.mm, mm_now, target, sig_now, st.sigma_anchor,
                          st.im_base, st.mm_base, rule, self._reason(st, before, rate, target, sig_now, rule, comp),
                          evidence, self.snapshot(st.name), comp,
                          "all_positions" if kind == "mm_effective" else "new_exposure", ts, sched,
                          None if sched != sched else pd.Timestamp(t + self._notice_ns, tz="UTC"), group, kind)

    def _mm_effective(self, st: _Inst, ev: BarEvent, rate: float, due_ns: int) -> list[Any]:
        """An announced MM change takes effect (scope: all positions)."""
        new_mm = min(rate, st.im)
        if abs(new_mm - st.mm) <= 1e-15:
            return []
        h = self._notice_ns / _NS_PER_HOUR
        adj = Adjustment(st.name, ev.available_at, "auto", st.im, st.im, st.mm, new_mm, st.im, math.nan,
                         st.sigma_anchor, st.im_base, st.mm_base,
                         f"announced MM change takes effect after the {h:g}h notice period",
                         f"{st.name} MM {100 * st.mm:.2f}% -> {100 * new_mm:.2f}% for all positions, as announced "
                         f"{h:g}h before {pd.Timestamp(due_ns, tz='UTC')}", (), self.snapshot(st.name), {},
                         "all_positions", pd.Timestamp(due_ns, tz="UTC"), math.nan, None, None, "mm_effective")
        st.mm = new_mm
        return [adj]

    def _schedule_mm(self, st: _Inst, t: int, mm_target: float) -> float:
        """MM in force right after an IM change: unchanged (announced for later) unless it must fall under IM.

        An earlier announcement that has not yet taken effect keeps its own effective time (it is queued),
        so a run of increases does not keep postponing the MM change already announced.
        """
        if self._notice_ns <= 0:
            st.mm_sched = math.nan
            return min(mm_target, st.im)
        if abs(mm_target - st.mm) > 1e-15:
            if st.mm_sched == st.mm_sched and st.mm_sched_ns > t:
                st.mm_queue.append([st.mm_sched, float(st.mm_sched_ns)])
            st.mm_sched, st.mm_sched_ns = mm_target, t + self._notice_ns
        return min(st.mm, st.im)

    def _adjust(self, st: _Inst, ev: BarEvent, t: int, target: float, mm_ratio: float, sig_now: float,
                comp: Any) -> list[Adjustment]:
        cur = st.im
        new = self._bounds.bound(cur, target, st.im_base, (t - st.last_change_ns) / _NS_PER_HOUR,
                                 (t - st.last_increase_ns) / _NS_PER_HOUR)
        if new is None:
            if target < cur and self._batch_ns > 0:
                st.batch_idx = (t - _MONDAY_NS) // self._batch_ns  # evaluated (nothing to do) for this window
            return _EMPTY
        # the stated target is the volatility target lifted to the policy floor; a change never moves the rate
        # away from it (e.g. no cut towards a cap below the rate in force while volatility asks for more)
        b = self._bounds
        floor = b.floor if b.floor >= b.floor_frac * st.im_base else b.floor_frac * st.im_base
        if target < floor:
            target = floor
        if (new - cur) * (target - cur) <= 0.0:
            return _EMPTY
        if new < cur:
            return self._decrease(st, ev, t, cur, new, target, mm_ratio, sig_now, comp)
        steps = route(self.policy, current=cur, new=new, critical=st.critical())
        out = []
        before = cur
        for kind, rate in steps:
            if (rate - before) * (target - before) <= 0.0:
                # the bound rounds up to the grid, so after an automatic step capped at +x% the remainder can
                # lie beyond the target: a step that would move away from the stated target is not taken
                break
            if kind == "proposal":
                pend = st.pending_im
                if pend == pend:
                    if abs(rate / pend - 1.0) <= self._band:
                        continue  # an open proposal already asks for (about) this
                    same_way = (rate > before) == (pend > before)
                    if same_way and t - st.last_proposal_ns < self._prop_cool_ns:
                        continue  # do not replace an open proposal more often than the cooldown
                rule = self._rule(kind, before, rate, st)
                out.append(self._mk(st, ev, "proposal", before, rate, st.mm, rate * mm_ratio, target, sig_now,
                                    rule, comp, "rate"))
                st.pending_im = rate
                st.last_proposal_ns = t
            else:
                rule = self._rule(kind, before, rate, st)
                mm_old = st.mm
                st.im = rate
                mm_now = self._schedule_mm(st, t, rate * mm_ratio)
                st.mm = mm_old
                a = self._mk(st, ev, "auto", before, rate, mm_now, rate * mm_ratio, target, sig_now, rule, comp,
                             "rate")
                out.append(a)
                if rate > before:
                    st.last_increase_ns = t
                st.last_change_ns = t
                st.mm = mm_now
                st.pending_im = math.nan  # an open proposal was computed from the old rate: it is now stale
                before = rate
        return out

    def _decrease(self, st: _Inst, ev: BarEvent, t: int, cur: float, new: float, target: float, mm_ratio: float,
                  sig_now: float, comp: Any) -> list[Adjustment]:
        """Decreases are evaluated once per batch window and filed together (one proposal for all instruments)."""
        group = None
        if self._batch_ns > 0:
            idx = (t - _MONDAY_NS) // self._batch_ns
            if idx == st.batch_idx:
                return _EMPTY
            st.batch_idx = idx
            if target >= cur * (1.0 - self._dec_band):
                return _EMPTY  # within the decrease hysteresis: wait for the next window
            group = "decreases:" + pd.Timestamp(_MONDAY_NS + idx * self._batch_ns, tz="UTC").isoformat()
        if self._dec_needs_officer:
            pend = st.pending_im
            if pend == pend and pend < cur and (abs(new / pend - 1.0) <= self._band
                                                or (group is None and t - st.last_proposal_ns < self._prop_cool_ns)):
                return _EMPTY
            rule = self._rule("proposal", cur, new, st)
            a = self._mk(st, ev, "proposal", cur, new, min(st.mm, new), new * mm_ratio, target, sig_now, rule, comp,
                         "decrease_batch" if group else "rate", group)
            st.pending_im = new
            st.last_proposal_ns = t
        else:
            rule = self._rule("auto", cur, new, st)
            mm_old = st.mm
            st.im = new
            mm_now = self._schedule_mm(st, t, new * mm_ratio)
            st.mm = mm_old
            a = self._mk(st, ev, "auto", cur, new, mm_now, new * mm_ratio, target, sig_now, rule, comp,
                         "decrease_batch" if group else "rate", group)
            st.last_change_ns = t
            st.mm = mm_now
            st.pending_im = math.nan
        if group is None:
            return [a]
        self._batch.append(a)
        self._batch_due = t + 1
        return _EMPTY

    def _escalate(self, st: _Inst, ev: BarEvent, t: int, target: float, mm_ratio: float, sig_now: float,
                  comp: Any) -> list[Adjustment]:
        """A breach cluster: propose (to an officer, no speed limit) the largest of the target and the breaching move."""
        bc = st.breach
        assert bc is not None, "an escalation follows a breach cluster, counted from the first bar"
        cushion = self._mv["breach"]["cushion"]
        want = max(target, bc.last_move * (1.0 + cushion))
        rnd = self._bounds.rounding
        if rnd > 0:
            want = math.ceil(want / rnd - 1e-9) * rnd
        want = min(want, self._cap)
        cur = st.im
        pend = st.pending_im
        if want <= cur * (1.0 + self._band) or (pend == pend and pend >= want):
            return _EMPTY
        rule = (f"escalation: breach cluster ({bc.counts.count} breaches); proposed IM covers the latest "
                f"{self._br['horizon_hours']:g}h move {100 * bc.last_move:.1f}% + {100 * cushion:g}% cushion: "
                f"escalation target {100 * want:.2f}%; needs a risk officer")
        comp = self._components(st, comp)
        c2 = {**comp, "moved_by": [*comp.get("moved_by", []), "escalation (breach cluster)"],
              "breach_move": bc.last_move}
        a = self._mk(st, ev, "proposal", cur, want, st.mm, want * mm_ratio, target, sig_now, rule, c2, "escalation")
        # the target this proposal states (and moves towards) is the escalation target, not the volatility target
        # it may exceed; both are in the reason
        a = dataclasses.replace(a, target_im=want)
        st.pending_im = want
        st.last_proposal_ns = t
        return [a]

    def _rule(self, kind: str, before: float, rate: float, st: _Inst) -> str:
        ap = self.policy["approval"]
        au = self.policy["auto"]
        if kind == "auto":
            if rate > before:
                return (f"automatic increase (<= +{100 * ap['increase_above']:g}% needs no officer; "
                        f"speed limit +{100 * au['max_increase']:g}% per step)")
            return f"automatic decrease (speed limit -{100 * au['max_decrease_per_day']:g}%/day)"
        if st.critical() and ap["critical_signals"]:
            return "needs a risk officer: a critical signal is active"
        if rate < before:
            return (f"needs a risk officer: decreases are approved by an officer (speed limit "
                    f"-{100 * au['max_decrease_per_day']:g}%/day)")
        return (f"needs a risk officer: emergency increase beyond the automatic bound "
                f"(+{100 * ap['increase_above']:g}%)")

    def _reason(self, st: _Inst, before: float, rate: float, target: float, sig_now: float, rule: str,
                comp: Mapping[str, Any] | None = None) -> str:
        extra = ""
        if comp:
            parts = []
            if comp.get("horizon_factor", 1.0) > 1.0:
                parts.append(f"close-out horizon x{comp['horizon_factor']:.2f} (liquidity)")
            if comp.get("oi_imf", 1.0) > 1.0:
                parts.append(f"OI-scaled IM x{comp['oi_imf']:.2f} (open interest above its cap)")
            if comp.get("liquidity_addon", 0.0) > 0:
                parts.append(f"liquidity add-on {100 * comp['liquidity_addon']:.2f}%")
            if comp.get("funding_provision", 0.0) > 0:
                parts.append(f"funding provision {100 * comp['funding_provision']:.2f}%")
            if comp.get("tier_scale", 1.0) < 1.0:
                parts.append(f"tier boundaries x{comp['tier_scale']:.2f}")
            if parts:
                extra = "; " + ", ".join(parts)
        return (f"{st.name} IM {100 * before:.2f}% -> {100 * rate:.2f}% ({100 * (rate / before - 1):+.1f}%): "
                f"{self._target_h:g}h EWMA vol {100 * sig_now:.0f}% annualised vs {100 * st.sigma_anchor:.0f}% "
                f"at calibration gives target {100 * target:.2f}% (IM_base {100 * st.im_base:.2f}%{extra}); {rule}")

    def _spacing_hours(self, prev_ns: int, t_ns: int, default: float) -> float:
        h = (t_ns - prev_ns) / _NS_PER_HOUR
        return h if h > 0 else default

    def _on_funding(self, ev: FundingEvent) -> list[Any] | None:
        st = self._inst(ev.instrument)
        x = ev.rate
        st.fund_last = x
        fs = st.fund_stats
        if fs is None:
            # the EWMA decay per observation follows the spacing of the first two funding events
            if st.fund_t == 0:
                st.fund_t = ev.t_ns
                st.fund_first = x
                return None
            fs = st.fund_stats = EWMStats(_halflife_lam(self._stats_h, self._spacing_hours(st.fund_t, ev.t_ns, 8.0)))
            fs.update(st.fund_first)
        z = fs.zscore(x)
        fs.update(x)
        if ev.t_ns < self.live_from_ns or not self._fu["enabled"] or fs.n < 10:
            return None
        a = abs(x)
        za = abs(z) if z == z else 0.0
        w, c, zw = self._fu["warning"], self._fu["critical"], self._fu["z_warning"]
        now = 2 if a >= c else (1 if (a >= w or za >= zw) else 0)
        rf = self._fu["rearm_fraction"]
        lvl = st.trig[6].observe(now, a < w * rf and za < zw * rf)
        if not lvl:
            return None
        out: list[Any] = []
        self._remember(st, sg.funding_extreme(st.name, ev.ts, lvl, x, z, c if lvl == 2 else w), out)
        return out

    def _on_oi(self, ev: OpenInterestEvent) -> list[Any] | None:
        st = self._inst(ev.instrument)
        v = ev.oi_notional
        if v is None:
            if ev.oi_contracts is None or not st.prev_close > 0:
                return None
            v = ev.oi_contracts * st.prev_close
        if not v > 0:
            return None
        st.oi_level = v
        ref = st.oi_ref
        if ref is None and st.oi_t:
            ref = st.oi_ref = EWMStats(_halflife_lam(self._mv["open_interest"]["reference_halflife_hours"],
                                                     self._spacing_hours(st.oi_t, ev.t_ns, 24.0)))
        if ref is not None:
            ref.update(v)
        lv = math.log(v)
        prev = st.oi_prev
        prev_t = st.oi_t
        st.oi_prev = lv
        st.oi_t = ev.t_ns
        if prev != prev:
            return None
        ch = lv - prev
        if st.oi_stats is None:
            st.oi_stats = EWMStats(_halflife_lam(self._stats_h, self._spacing_hours(prev_t, ev.t_ns, 24.0)))
        os_ = st.oi_stats
        z = os_.zscore(ch)
        os_.update(ch)
        if ev.t_ns < self.live_from_ns or not self._oi["enabled"] or os_.n < 10 or z != z:
            return None
        lvl = st.trig[2].check(abs(z), self._oi["warning"], self._oi["critical"], self._oi["rearm"])
        if not lvl:
            return None
        out: list[Any] = []
        self._remember(st, sg.oi_surge(st.name, ev.ts, lvl, v, ch, z,
                                       self._oi["critical"] if lvl == 2 else self._oi["warning"]), out)
        return out

    def _on_depth(self, ev: DepthEvent) -> list[Any] | None:
        st = self._inst(ev.instrument)
        st.depth_seen = True
        d = ev.depth_notional(self._band_bps)
        sp = ev.spread_bps
        st.depth_last, st.spread_last = d, sp
        ds, ss = st.depth_stats, st.spread_stats
        if ds is None or ss is None:  # both are created together
            if st.depth_t == 0:
                st.depth_t = ev.t_ns
                st.depth_first = (d, sp)
                return None
            lam = _halflife_lam(self._stats_h, self._spacing_hours(st.depth_t, ev.t_ns, 1.0))
            ds = st.depth_stats = EWMStats(lam)
            ss = st.spread_stats = EWMStats(lam)
            ds.update(st.depth_first[0])
            ss.update(st.depth_first[1])
        typical_d, typical_s = ds.mean, ss.mean
        n = ds.n
        ds.update(d)
        ss.update(sp)
        if ev.t_ns < self.live_from_ns or not self._lq["enabled"] or n < 10:
            return None
        out: list[Any] = []
        rf = self._lq["rearm_fraction"]
        if typical_d > 0:
            drop = 1.0 - d / typical_d
            w, c = self._lq["depth_drop_warning"], self._lq["depth_drop_critical"]
            lvl = st.trig[3].check(drop, w, c, w * rf)
            if lvl:
                self._remember(st, sg.depth_drop(st.name, ev.ts, lvl, d, typical_d, c if lvl == 2 else w,
                                                 self._band_bps), out)
        if typical_s > 0:
            ratio = sp / typical_s
            w, c = self._lq["spread_warning"], self._lq["spread_critical"]
            lvl = st.trig[4].check(ratio, w, c, w * rf)
            if lvl:
                self._remember(st, sg.spread_widening(st.name, ev.ts, lvl, sp, typical_s, c if lvl == 2 else w),
                               out)
        return out or None

    # ------------------------------------------------------------------ views
    def snapshot(self, instrument: str) -> dict[str, float]:
        """Current estimator values of one instrument (annualised vols, z inputs, breach count, rates)."""
        st = self._insts[instrument]
        bpy = st.bars_per_year
        nan = math.nan

        def vol(v: EWMAVariance | None) -> float:
            return math.sqrt(v.var * bpy) if v is not None and v.n else nan

        return {
            "close": st.prev_close, "bars": float(st.n_bars), "sigma_short_annual": vol(st.vs),
            "sigma_long_annual": vol(st.vl), "sigma_target_annual": vol(st.vt),
            "vol_ratio": (math.sqrt(st.vs.var / st.vl.var)
                          if st.vs is not None and st.vl is not None and st.vl.n and st.vl.var > 0
                          else nan),
            "bar_spread_bps": 1e4 * st.cs_s.mean if st.cs_s is not None and st.cs_s.n else nan,
            "breaches": float(st.breach.count) if st.breach is not None else nan,
            "funding_rate_ewma": st.fund_stats.mean if st.fund_stats is not None and st.fund_stats.n else nan,
            "im_rate": st.im, "mm_rate": st.mm, "im_base": st.im_base, "sigma_anchor_annual": st.sigma_anchor,
            "pending_im": st.pending_im,
        }

    def instruments(self) -> list[str]:
        return sorted(self._insts)

    def target(self, instrument: str) -> tuple[float, float, dict[str, Any]] | None:
        """(IM target, MM target, components) of one instrument now: which signal moves which parameter.

        None before the instrument has rates and a volatility. Does not change any state (the APC
        recursion, when enabled, is evaluated on a copy).
        """
        st = self._insts[instrument]
        if not (st.im == st.im and st.vt is not None and st.vt.var > 0.0):
            return None
        sig_now = math.sqrt(st.vt.var * st.bars_per_year)
        anchor = st.sigma_anchor
        if anchor != anchor:
            st.sigma_anchor = sig_now
        keep = (st.apc_out, st.apc_base, st.apc_beta)
        self._apc_peek = True
        try:
            im, mm, comp = self._target(st, sig_now)
        finally:
            self._apc_peek = False
            st.apc_out, st.apc_base, st.apc_beta = keep
            st.sigma_anchor = anchor
        return im, mm, self._components(st, comp)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything needed to resume exactly (JSON-able; floats round-trip exactly through JSON)."""

        def f(x: float) -> float | None:
            return None if x != x else x

        def est(o: Any) -> Any:
            return None if o is None else o.state()

        insts = {}
        for name, st in self._insts.items():
            insts[name] = {
                "tf": st.tf, "n_bars": st.n_bars, "prev_close": f(st.prev_close), "prev_high": f(st.prev_high),
                "prev_low": f(st.prev_low), "prev_open_ns": st.prev_open_ns,
                "vs": est(st.vs), "vl": est(st.vl), "vt": est(st.vt), "volu": est(st.volu), "cs_s": est(st.cs_s),
                "cs_l": est(st.cs_l), "breach": est(st.breach), "oi_prev": f(st.oi_prev), "oi_t": st.oi_t,
                "fund_t": st.fund_t, "fund_first": f(st.fund_first), "depth_t": st.depth_t,
                "depth_first": [f(st.depth_first[0]), f(st.depth_first[1])],
                "oi_stats": est(st.oi_stats), "fund_stats": est(st.fund_stats), "depth_stats": est(st.depth_stats),
                "spread_stats": est(st.spread_stats), "depth_seen": st.depth_seen,
                "trig": [t.level for t in st.trig], "listing_done": st.listing_done,
                "recent": [s.as_dict() for s in st.recent],
                "im": f(st.im), "mm": f(st.mm), "im_base": f(st.im_base), "mm_base": f(st.mm_base),
                "sigma_anchor": f(st.sigma_anchor), "last_change_ns": st.last_change_ns,
                "last_increase_ns": st.last_increase_ns, "last_proposal_ns": st.last_proposal_ns,
                "pending_im": f(st.pending_im),
                "volu_s": est(st.volu_s), "oi_ref": est(st.oi_ref), "oi_level": f(st.oi_level),
                "fund_last": f(st.fund_last), "depth_last": f(st.depth_last), "spread_last": f(st.spread_last),
                "mm_sched": f(st.mm_sched), "mm_sched_ns": st.mm_sched_ns, "batch_idx": st.batch_idx,
                "mm_queue": [[q[0], int(q[1])] for q in st.mm_queue],
                "apc_out": f(st.apc_out), "apc_base": f(st.apc_base), "apc_beta": f(st.apc_beta),
                "apc_beta0": f(st.apc_beta0),
            }
        return {
            "format": 1, "policy_sha256": self.policy.sha256, "live_from_ns": self.live_from_ns,
            "events_processed": self.events_processed,
            "last_key": None if self.last_key is None else list(self.last_key), "instruments": insts,
            "batch": [a.as_dict() for a in self._batch], "batch_due": self._batch_due,
        }

    @classmethod
    def from_state(cls, policy: Policy, state: Mapping[str, Any], params: ParameterSet | None = None
                   ) -> MonitorEngine:
        """Rebuild an engine saved with :meth:`state` (the policy must be the same one)."""
        if state.get("policy_sha256") != policy.sha256:
            raise ConfigError("the saved monitor state was produced with a different policy "
                              f"(sha256 {str(state.get('policy_sha256'))[:12]}..., now {policy.sha256[:12]}...); "
                              "start a fresh run (--fresh) or use the same policy file")
        eng = cls(policy, None)
        eng.live_from_ns = int(state["live_from_ns"])
        eng.events_processed = int(state["events_processed"])
        lk = state.get("last_key")
        eng.last_key = None if lk is None else (int(lk[0]), int(lk[1]), str(lk[2]))

        def nf(x: Any) -> float:
            return math.nan if x is None else float(x)

        for name, s in state["instruments"].items():
            st = _Inst(name)
            if s["tf"] is not None:
                st.tf = s["tf"]
                st.tf_ns = timeframe_ns(st.tf)
                st.bar_hours = st.tf_ns / _NS_PER_HOUR
                st.bars_per_year = HOURS_PER_YEAR / st.bar_hours
            st.n_bars = int(s["n_bars"])
            st.prev_close, st.prev_high, st.prev_low = nf(s["prev_close"]), nf(s["prev_high"]), nf(s["prev_low"])
            st.prev_open_ns = int(s["prev_open_ns"])
            for key in ("vs", "vl", "vt"):
                if s[key] is not None:
                    setattr(st, key, EWMAVariance.from_state(s[key]))
            for key in ("volu", "cs_s", "cs_l", "oi_stats", "fund_stats", "depth_stats", "spread_stats"):
                if s[key] is not None:
                    setattr(st, key, EWMStats.from_state(s[key]))
            if s["breach"] is not None:
                st.breach = BreachCounter.from_state(s["breach"])
            st.oi_prev = nf(s["oi_prev"])
            st.oi_t, st.fund_t, st.depth_t = int(s["oi_t"]), int(s["fund_t"]), int(s["depth_t"])
            st.fund_first = nf(s["fund_first"])
            st.depth_first = (nf(s["depth_first"][0]), nf(s["depth_first"][1]))
            st.depth_seen = bool(s["depth_seen"])
            st.trig = [sg.Trigger(int(v)) for v in s["trig"]]
            st.listing_done = bool(s["listing_done"])
            st.recent = [sg.Signal(r["instrument"], pd.Timestamp(r["ts"]), r["kind"], r["severity"],
                                   {k: nf(v) for k, v in r["values"].items()}, nf(r["threshold"]), r["reason"])
                         for r in s["recent"]]
            st.im, st.mm, st.im_base, st.mm_base = nf(s["im"]), nf(s["mm"]), nf(s["im_base"]), nf(s["mm_base"])
            st.sigma_anchor = nf(s["sigma_anchor"])
            st.last_change_ns, st.last_increase_ns = int(s["last_change_ns"]), int(s["last_increase_ns"])
            st.last_proposal_ns = int(s["last_proposal_ns"])
            st.pending_im = nf(s["pending_im"])
            if len(st.trig) < 9:
                st.trig += [sg.Trigger() for _ in range(9 - len(st.trig))]
            if s.get("volu_s") is not None:
                st.volu_s = EWMStats.from_state(s["volu_s"])
            if s.get("oi_ref") is not None:
                st.oi_ref = EWMStats.from_state(s["oi_ref"])
            for key in ("oi_level", "fund_last", "depth_last", "spread_last", "mm_sched", "apc_out", "apc_base",
                        "apc_beta", "apc_beta0"):
                setattr(st, key, nf(s.get(key)))
            st.mm_sched_ns = int(s.get("mm_sched_ns", 0))
            st.mm_queue = [[float(q[0]), float(q[1])] for q in s.get("mm_queue", [])]
            st.batch_idx = int(s.get("batch_idx", -1))
            eng._insts[name] = st
        eng._batch = [_adjustment_from_dict(a) for a in state.get("batch", [])]
        eng._batch_due = int(state.get("batch_due", 0))
        if params is not None:
            eng.params = params
        return eng
