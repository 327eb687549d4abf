// margincal dashboard: plain JS over the service's JSON API.
// The API key is entered once, kept in sessionStorage (gone when the tab closes) and sent as the
// X-API-Key header on every fetch; it never goes into a URL.
"use strict";

const KEY_STORE = "margincal.apiKey";
const state = {who: null, instrument: null, timeframe: null, instruments: [], lastEventId: null,
               streamAbort: null, refreshTimer: null, tab: "proposals", version: null, latest: null,
               versions: [], loaded: {}, marginInstrument: null, versionPinned: false};
const PLOT_CONFIG = {displaylogo: false, responsive: true};

const $ = (id) => document.getElementById(id);
const pct = (v) => (v === null || v === undefined ? "-" : (100 * v).toFixed(2) + "%");
const num = (v, d = 2) => (v === null || v === undefined ? "-" : Number(v).toLocaleString("en-US",
  {maximumFractionDigits: d}));

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text || "";
  s.classList.toggle("error", isError);
}

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, opts = {}) {
  const headers = Object.assign({"X-API-Key": sessionStorage.getItem(KEY_STORE) || ""}, opts.headers || {});
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {method: opts.method || "GET", headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body), signal: opts.signal});
  if (!res.ok) {
    let detail = res.statusText;
    try { const j = await res.json(); detail = j.detail || j.error || detail; } catch (_) { /* not JSON */ }
    if (res.status === 401) signOut("key rejected: " + detail);
    throw new ApiError(res.status, detail);
  }
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

// ---------------------------------------------------------------- key handling

async function signIn(key) {
  sessionStorage.setItem(KEY_STORE, key.trim());
  try {
    state.who = await api("/api/whoami");
  } catch (e) {
    if (e.status !== 401) setStatus(e.message, true);
    return;
  }
  $("key-form").hidden = true;
  $("who").hidden = false;
  $("who-name").textContent = state.who.name;
  $("who-role").textContent = state.who.role;
  $("main").hidden = false;
  setStatus("");
  await refreshAll();
  startStream();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  state.who = null;
  if (state.streamAbort) state.streamAbort.abort();
  $("main").hidden = true;
  $("who").hidden = true;
  $("key-form").hidden = false;
  $("api-key").value = "";
  setStatus(message || "", Boolean(message));
}

// ---------------------------------------------------------------- data loading

async function refreshAll() {
  await Promise.all([loadInstruments(), loadVersions(), loadProposals(), loadAuditBadge()]);
  state.loaded = {};  // the store changed: views reload when shown
  await loadTab(state.tab);
}

// ---------------------------------------------------------------- tabs: one view at a time, proposals first

function showTab(name) {
  state.tab = name;
  for (const b of document.querySelectorAll("#tabs button[role=tab]")) {
    b.setAttribute("aria-selected", String(b.dataset.tab === name));
  }
  for (const p of document.querySelectorAll(".tab-panel")) p.hidden = p.dataset.tab !== name;
  loadTab(name).then(() => {
    for (const d of document.querySelectorAll(`.tab-panel[data-tab='${name}'] .js-plotly-plot`)) Plotly.Plots.resize(d);
  }).catch((e) => setStatus(e.message, true));
}

const TAB_LOADERS = {
  versions: () => loadTimeline(), margin: () => loadMarginView(), brackets: () => loadBrackets(),
  smiles: () => loadSmiles(), stress: () => loadStress(), cascade: () => loadCascade(), audit: () => loadAudit(),
  instruments: () => (state.instrument ? loadChart() : null),
};

async function loadTab(name) {
  const fn = TAB_LOADERS[name];
  if (!fn) return;
  const key = `${name}@${state.version}`;
  if (state.loaded[name] === key) return;
  state.loaded[name] = key;
  try {
    await fn();
  } catch (e) {
    delete state.loaded[name];
    throw e;
  }
}

async function loadInstruments() {
  const rows = await api("/api/instruments");
  state.instruments = rows;
  const body = $("instruments").tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const tr = el("tr", {"data-instrument": r.instrument, onclick: () => selectInstrument(r.instrument)},
      el("td", {}, r.instrument), el("td", {class: "text"}, r.kind || "-"), el("td", {}, pct(r.im_rate)),
      el("td", {}, pct(r.mm_rate)), el("td", {}, num(r.max_leverage)), el("td", {}, num(r.last_price, 4)),
      el("td", {}, r.version ?? "-"));
    if (r.instrument === state.instrument) tr.classList.add("selected");
    body.append(tr);
  }
  const withBars = rows.filter((r) => (r.timeframes || []).length);
  const sel = $("instrument-select");
  const priced = rows.filter((r) => r.im_rate !== null);
  sel.replaceChildren(...withBars.map((r) => el("option", {value: r.instrument}, r.instrument)));
  $("whatif-instruments").replaceChildren(...priced.map((r) => el("option", {value: r.instrument})));
  const msel = $("margin-instrument");
  msel.replaceChildren(...withBars.filter((r) => r.im_rate !== null).map((r) => el("option", {value: r.instrument},
    r.instrument)));
  if (!state.marginInstrument && msel.options.length) {
    const perp = [...msel.options].find((o) => o.value.includes("BTC"));
    state.marginInstrument = (perp || msel.options[0]).value;
  }
  if (state.marginInstrument) msel.value = state.marginInstrument;
  if (!$("whatif-instrument").value && priced.length) $("whatif-instrument").value = priced[0].instrument;
  if (!state.instrument && withBars.length) {
    const first = withBars.find((r) => r.im_rate !== null) || withBars[0];
    await selectInstrument(first.instrument);
  } else if (state.instrument) {
    sel.value = state.instrument;
  }
}

async function selectInstrument(name) {
  state.instrument = name;
  const info = state.instruments.find((r) => r.instrument === name) || {};
  state.timeframe = info.timeframe || ((info.timeframes || []).includes("1d") ? "1d" : (info.timeframes || [])[0]);
  $("instrument-select").value = name;
  $("timeframe-select").replaceChildren(...(info.timeframes || []).map((t) => el("option", {value: t}, t)));
  if (state.timeframe) $("timeframe-select").value = state.timeframe;
  for (const tr of $("instruments").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.instrument === name);
  await loadChart();
}

async function loadChart() {
  const name = state.instrument;
  $("chart-title").textContent = name;
  $("chart-note").textContent = "loading...";
  let h;
  try {
    h = await api(`/api/instruments/${encodeURIComponent(name)}/history?timeframe=${encodeURIComponent(state.timeframe)}`);
  } catch (e) {
    $("chart-note").textContent = e.message;
    return;
  }
  if (name !== state.instrument) return;  // a newer selection won
  const s = h.settings;
  $("chart-note").textContent = `${h.timeframe} bars, causal FHS: ES ${s.level} over ${s.horizon_hours} h, ` +
    `EWMA lambda ${s.ewma_lambda_per_day}/day, MM = ${s.mm_fraction} x IM`;
  const pub = h.published.length ? h.published[h.published.length - 1] : null;
  const traces = [
    {x: h.ts, y: h.close, name: "close", type: "scatter", mode: "lines", line: {width: 1}, xaxis: "x", yaxis: "y"},
    {x: h.ts, y: h.sigma_ann, name: "forecast vol (ann.)", type: "scatter", mode: "lines", line: {width: 1},
     xaxis: "x", yaxis: "y2"},
    {x: h.ts, y: h.im_rate, name: "IM rate", type: "scatter", mode: "lines", line: {width: 1}, xaxis: "x", yaxis: "y3"},
    {x: h.ts, y: h.mm_rate, name: "MM rate", type: "scatter", mode: "lines", line: {width: 1, dash: "dot"},
     xaxis: "x", yaxis: "y3"},
  ];
  const shapes = [];
  if (pub && h.ts.length) {
    for (const [v, color] of [[pub.im_rate, "#d62728"], [pub.mm_rate, "#9467bd"]]) {
      shapes.push({type: "line", xref: "x", yref: "y3", x0: h.ts[0], x1: h.ts[h.ts.length - 1], y0: v, y1: v,
                   line: {color, width: 1, dash: "dash"}});
    }
  }
  const layout = {
    height: 620, margin: {l: 60, r: 20, t: 30, b: 30}, showlegend: true, legend: {orientation: "h", y: 1.06},
    grid: {rows: 3, columns: 1, subplots: [["xy"], ["xy2"], ["xy3"]], roworder: "top to bottom"},
    yaxis: {title: {text: "price"}, type: "log"}, yaxis2: {title: {text: "volatility"}, tickformat: ".0%"},
    yaxis3: {title: {text: "margin rate"}, tickformat: ".1%"}, shapes,
    annotations: pub ? [{xref: "paper", yref: "y3", x: 1, y: pub.im_rate, xanchor: "right", yanchor: "bottom",
      text: `published v${pub.version}: IM ${pct(pub.im_rate)}, MM ${pct(pub.mm_rate)}`, showarrow: false,
      font: {size: 10, color: "#d62728"}}] : [],
  };
  await Plotly.react("chart", traces, layout, {displaylogo: false, responsive: true});
  const vx = h.published.map((p) => "v" + p.version);
  await Plotly.react("version-chart", [
    {x: vx, y: h.published.map((p) => p.im_rate), name: "IM", type: "scatter", mode: "lines+markers", line: {shape: "hv"}},
    {x: vx, y: h.published.map((p) => p.mm_rate), name: "MM", type: "scatter", mode: "lines+markers",
     line: {shape: "hv", dash: "dot"}},
  ], {height: 240, margin: {l: 60, r: 20, t: 10, b: 30}, yaxis: {tickformat: ".2%", rangemode: "tozero"},
      xaxis: {type: "category"}, legend: {orientation: "h"}}, {displaylogo: false, responsive: true});
}

async function loadVersions() {
  const rows = await api("/api/parameter-sets");
  state.versions = rows;
  state.latest = rows.length ? rows[rows.length - 1].version : null;
  // the views follow the live version unless the user picked an older one
  if (!state.versionPinned || !rows.some((r) => r.version === state.version)) state.version = state.latest;
  $("view-version").replaceChildren(...rows.slice().reverse().map((r) => el("option", {value: r.version},
    `v${r.version}${r.version === state.latest ? " (live)" : ""}`)));
  if (state.version !== null) $("view-version").value = String(state.version);
  const body = $("versions").tBodies[0];
  body.replaceChildren(...rows.slice().reverse().map((r) => el("tr", {"data-version": r.version},
    el("td", {}, "v" + r.version), el("td", {class: "text"}, (r.created_at || "").slice(0, 19).replace("T", " ")),
    el("td", {class: "text"}, r.created_by), el("td", {class: "text"}, r.source), el("td", {}, r.instruments),
    el("td", {class: "text"}, r.note || "", " ", el("button", {class: "link", "data-diff": r.version,
      onclick: () => loadDiff(r.version)}, "diff")))));
  if (rows.length) await loadDiff(rows[rows.length - 1].version);
}

async function loadDiff(version) {
  const dbody = $("diff").tBodies[0];
  const d = await api(`/api/parameter-sets/${version}/diff`);
  $("diff-title").textContent = d.against ? `Changes in v${version} from v${d.against}` : `Contents of v${version}`;
  $("diff-title").dataset.version = version;
  dbody.replaceChildren();
  for (const c of d.changes.slice(0, 50)) {
    dbody.append(el("tr", {}, el("td", {}, c.instrument), el("td", {class: "text"}, c.change),
      el("td", {}, pct(c.im_before)), el("td", {}, pct(c.im_after)), el("td", {}, pct(c.mm_before)),
      el("td", {}, pct(c.mm_after))));
  }
  if (!d.changes.length) dbody.append(el("tr", {}, el("td", {colspan: 6, class: "text"}, "no changes")));
}

async function loadTimeline() {
  const tl = await api("/api/views/timeline");
  const sel = (t) => t.version === state.version;
  await Plotly.react("timeline-chart", [{
    x: tl.map((t) => t.created_at), y: tl.map((t) => t.version), type: "scatter", mode: "lines+markers",
    line: {shape: "hv", width: 1}, marker: {size: tl.map((t) => (sel(t) ? 12 : 7)),
      color: tl.map((t) => (sel(t) ? "#d62728" : "#1f77b4"))},
    text: tl.map((t) => `v${t.version} by ${t.created_by} (${t.source}): +${t.added} -${t.removed} ~${t.changed}`),
    hoverinfo: "text+x", name: "versions"}],
  {height: 240, margin: {l: 50, r: 20, t: 10, b: 40}, xaxis: {type: "date", title: {text: "UTC"}},
   yaxis: {title: {text: "version"}}, showlegend: false}, PLOT_CONFIG);
  const div = $("timeline-chart");
  if (!div.dataset.wired) {
    div.dataset.wired = "1";
    div.on("plotly_click", (ev) => { if (ev.points && ev.points.length) loadDiff(ev.points[0].y); });
  }
}

function changesText(p) {
  const list = p.changes_normalized || [];
  if (!list.length) return JSON.stringify(p.changes);
  const from = (b, cur) => (b === null || b === undefined ? cur : b);
  return list.map((c) => `${c.instrument}: IM ${pct(from(c.im_before, c.im_current))} -> ${pct(c.im_rate)}` +
    (c.mm_rate !== null && c.mm_rate !== undefined ? `, MM ${pct(from(c.mm_before, c.mm_current))} -> ` +
      `${pct(c.mm_rate)}` : "")).join("; ");
}

// A proposal's kind: "remove" when it drops an instrument, else the direction of its IM changes (raise, cut,
// mixed); "replay" is a flag (written by a replay) that the kind filter can also select.
function proposalKind(p) {
  const ch = p.changes || [];
  if (ch.some((c) => c.im_after === null || c.im_after === undefined)) return "remove";
  const up = ch.some((c) => c.im_before !== null && c.im_before !== undefined && c.im_after > c.im_before);
  const down = ch.some((c) => c.im_before !== null && c.im_before !== undefined && c.im_after < c.im_before);
  return up && down ? "mixed" : (down ? "cut" : "raise");
}

const STATUS_ORDER = {pending: 0, stale: 1, superseded: 2};

async function loadProposals() {
  const all = await api("/api/proposals");
  state.allProposals = all;
  const insts = [...new Set(all.flatMap((p) => (p.changes || []).map((c) => c.instrument)))].sort();
  const fi = $("filter-instrument");
  const keep = fi.value;
  fi.replaceChildren(el("option", {value: ""}, "all"), ...insts.map((i) => el("option", {value: i}, i)));
  fi.value = insts.includes(keep) ? keep : "";
  const pending = all.filter((p) => p.status === "pending").length;
  $("pending-count").textContent = String(pending);
  renderProposals();
}

function renderProposals() {
  const all = state.allProposals || [];
  const fInst = $("filter-instrument").value, fStatus = $("filter-status").value, fKind = $("filter-kind").value;
  const rows = all.filter((p) => {
    if (fInst && !(p.changes || []).some((c) => c.instrument === fInst)) return false;
    if (fStatus === "open" && !(p.status in STATUS_ORDER)) return false;
    if (fStatus && fStatus !== "open" && p.status !== fStatus) return false;
    if (fKind === "replay") return Boolean((p.evidence || {}).replay);
    if (fKind && proposalKind(p) !== fKind) return false;
    return true;
  }).sort((a, b) => ((STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9)) ||
    String(b.created_at).localeCompare(String(a.created_at)));
  $("proposals-count").textContent = `${rows.length} of ${all.length} shown`;
  const canDecide = state.who && state.who.permissions.includes("decide");
  $("proposals-note").textContent = canDecide ? "You may approve or reject proposals by others (four-eyes)."
    : `Your role (${state.who ? state.who.role : "-"}) may view proposals; risk officers decide them.`;
  const body = $("proposals").tBodies[0];
  body.replaceChildren();
  for (const p of rows.slice(0, 200)) {
    state.proposals[p.proposal_id] = p;
    const actions = el("td", {class: "text"});
    const open = ["pending", "stale", "superseded"].includes(p.status);
    if (canDecide && open) {
      const norm = (n) => String(n || "").trim().replace(/\s+/g, " ").toLowerCase();
      const own = norm(p.author) === norm(state.who.name);
      const title = own ? "four-eyes: you authored this proposal" : null;
      if (p.status === "pending") {
        actions.append(el("button", {class: "approve", "data-action": "approve", "data-proposal": p.proposal_id,
          disabled: own, title, onclick: () => decide(p.proposal_id, "approve")}, "Approve"), " ");
      }
      actions.append(el("button", {class: "reject", "data-action": "reject", "data-proposal": p.proposal_id,
        disabled: own, title, onclick: () => decide(p.proposal_id, "reject")}, "Reject"));
    } else if (!open) {
      actions.append(`${p.decided_by || ""}` + (p.published_version ? ` -> v${p.published_version}` : ""));
    }
    const kind = proposalKind(p) + ((p.evidence || {}).replay ? " (replay)" : "");
    body.append(el("tr", {"data-proposal": p.proposal_id, "data-status": p.status, "data-kind": proposalKind(p)},
      el("td", {class: "text"}, (p.created_at || "").slice(0, 19).replace("T", " ")),
      el("td", {class: "text"}, p.author), el("td", {class: "text"}, kind), el("td", {class: "text"}, p.reason),
      el("td", {class: "text"}, changesText(p)), el("td", {class: "text"}, p.status), actions));
  }
  if (!rows.length) body.append(el("tr", {}, el("td", {colspan: 7, class: "text"}, "no proposals")));
}

// ---------------------------------------------------------------- risk-officer views (/api/views/...)

function vq() { return state.version ? `?version=${encodeURIComponent(state.version)}` : ""; }

async function loadMarginView() {
  const name = $("margin-instrument").value || state.marginInstrument;
  if (!name) return;
  state.marginInstrument = name;
  $("margin-title").textContent = `${name} (v${state.version})`;
  $("margin-note").textContent = "loading...";
  const v = await api(`/api/views/margin/${encodeURIComponent(name)}${vq()}`);
  const br = v.breaches || {};
  $("margin-note").textContent = `${v.timeframe} bars, causal history of the published rule of v${v.version}; ` +
    (v.backtest_run ? `breaches from backtest run ${v.backtest_run}: IM ${num(br.im_count, 0)} of ` +
      `${num((br.n_obs || {}).im, 0)}, MM ${num(br.mm_count, 0)} of ${num((br.n_obs || {}).mm, 0)} bars` +
      (v.timeframe !== "1d" ? " (one marker per day)" : "")
      : `no backtest of v${v.version} stored: no breaches marked (run margincal run or margincal backtest)`);
  const traces = [
    {x: v.ts, y: v.close, name: "close", type: "scatter", mode: "lines", line: {width: 1}, xaxis: "x", yaxis: "y"},
    {x: v.ts, y: v.im_rate, name: "IM rate", type: "scatter", mode: "lines", line: {width: 1}, xaxis: "x", yaxis: "y2"},
    {x: v.ts, y: v.mm_rate, name: "MM rate", type: "scatter", mode: "lines", line: {width: 1, dash: "dot"},
     xaxis: "x", yaxis: "y2"},
  ];
  for (const [k, label, color] of [["im", "IM breach", "#d62728"], ["mm", "MM breach", "#ff7f0e"]]) {
    const pts = br[k] || [];
    if (pts.length) {
      traces.push({x: pts.map((b) => b.ts), y: pts.map((b) => b.margin), type: "scatter", mode: "markers",
        name: `${label} (${num(br[k + "_count"], 0)})`, marker: {color, size: 6, symbol: "x"}, xaxis: "x", yaxis: "y2",
        text: pts.map((b) => `loss ${pct(b.loss)} > margin ${pct(b.margin)}` + (b.n ? ` (${b.n} bars)` : "")),
        hoverinfo: "text+x"});
    }
  }
  await Plotly.react("margin-chart", traces, {
    height: 620, margin: {l: 60, r: 20, t: 30, b: 30}, legend: {orientation: "h", y: 1.06},
    grid: {rows: 2, columns: 1, subplots: [["xy"], ["xy2"]], roworder: "top to bottom"},
    yaxis: {title: {text: "price"}, type: "log"}, yaxis2: {title: {text: "margin rate"}, tickformat: ".1%"},
  }, PLOT_CONFIG);
}

async function loadBrackets() {
  const r = await api(`/api/views/brackets${vq()}`);
  const box = $("brackets-charts");
  box.replaceChildren();
  $("brackets-note").textContent = r.instruments.length ? `Effective IM(N)/N and MM(N)/N of the brackets of ` +
    `v${r.version} (details.tiers), the calibrated curve (details.curve) and the venue presets at the same price.`
    : `v${r.version} has no bracket schedules.`;
  for (const b of r.instruments) {
    const div = el("div", {class: "bracket-chart", id: `bracket-${b.instrument}`, "data-instrument": b.instrument});
    box.append(div);
    const traces = [
      {x: b.notional, y: b.im_rate, name: "published IM (brackets)", type: "scatter", mode: "lines", line: {width: 2}},
      {x: b.notional, y: b.mm_rate, name: "published MM (brackets)", type: "scatter", mode: "lines",
       line: {width: 2, dash: "dot"}},
    ];
    if (b.curve.length) {
      traces.push({x: b.curve.map((c) => c.notional), y: b.curve.map((c) => c.im_rate), name: "calibrated curve (IM)",
        type: "scatter", mode: "markers", marker: {size: 7}});
    }
    for (const [k, ys] of Object.entries(b.venues)) {
      traces.push({x: b.notional, y: ys, name: `${k} IM`, type: "scatter", mode: "lines", line: {width: 1}});
    }
    await Plotly.react(div, traces, {title: {text: `${b.instrument}: IM rate vs position size (v${b.version})`},
      height: 420, margin: {l: 60, r: 20, t: 40, b: 40}, legend: {orientation: "h"},
      xaxis: {type: "log", title: {text: "notional (USD)"}}, yaxis: {type: "log", title: {text: "IM / notional"},
        tickformat: ".1%"}}, PLOT_CONFIG);
  }
}

async function loadSmiles() {
  const sel = $("smile-snapshot");
  const q = sel.value ? `?snapshot=${encodeURIComponent(sel.value)}` : "";
  const s = await api(`/api/views/smiles${q}`);
  if (!sel.options.length) {
    sel.replaceChildren(...s.snapshots.map((n) => el("option", {value: n}, n)));
    sel.value = s.snapshot;
  }
  $("smiles-note").textContent = `${s.snapshot}: raw SVI per expiry, RMSE ${(100 * s.rmse_iv).toFixed(2)} vol points`;
  const traces = [];
  s.slices.forEach((sl, i) => {
    const color = `hsl(${Math.round(300 * i / Math.max(s.slices.length - 1, 1))},65%,45%)`;
    const label = sl.expiry || `T=${sl.T}`;
    traces.push({x: sl.k, y: sl.iv, type: "scatter", mode: "markers", marker: {size: 4, color}, name: label,
      legendgroup: label, showlegend: false});
    traces.push({x: sl.k_fit, y: sl.iv_fit, type: "scatter", mode: "lines", line: {width: 1, color}, name: label,
      legendgroup: label});
  });
  await Plotly.react("smile-chart", traces, {height: 420, margin: {l: 60, r: 20, t: 10, b: 40},
    xaxis: {title: {text: "k = ln(K/F)"}}, yaxis: {title: {text: "implied vol"}, tickformat: ".0%"}}, PLOT_CONFIG);
  const sf = s.surface;
  await Plotly.react("surface-chart", [{type: "heatmap", x: sf.k, y: sf.T.map((t) => t.toFixed(3)), z: sf.iv,
    colorscale: "Viridis", colorbar: {title: {text: "iv"}, tickformat: ".0%"}}],
  {height: 420, margin: {l: 70, r: 20, t: 10, b: 40}, xaxis: {title: {text: "k = ln(K/F)"}},
   yaxis: {title: {text: "T (years)"}, type: "category"}}, PLOT_CONFIG);
}

async function loadStress() {
  const v = await api(`/api/views/stress${vq()}`);
  $("stress-note").textContent = `Scenario library (most adverse spot leg per underlying) against the IM rates of ` +
    `v${v.version}: loss of the losing side / IM rate; above 1 the scenario costs more than the IM.`;
  const zmax = Math.max(2, Math.min(10, Math.max(...v.z.flat().filter((x) => x !== null))));
  await Plotly.react("stress-chart", [{type: "heatmap", x: v.instruments, y: v.scenarios, z: v.z,
    colorscale: "RdYlGn", reversescale: true, zmin: 0, zmax, colorbar: {title: {text: "loss / IM"}},
    hovertemplate: "%{y} / %{x}: %{z:.2f} x IM<extra></extra>"}],
  {height: Math.max(380, 22 * v.scenarios.length + 140), margin: {l: 230, r: 20, t: 10, b: 80},
   xaxis: {type: "category"}, yaxis: {type: "category", autorange: "reversed"}}, PLOT_CONFIG);
  const body = $("stress-table").tBodies[0];
  body.replaceChildren();
  const st = v.stored;
  if (!st) {
    body.append(el("tr", {}, el("td", {colspan: 6, class: "text"}, `no stored book stress of v${v.version} ` +
      "(margincal stress --margin published)")));
    return;
  }
  for (const r of st.summary.slice(0, 100)) {
    body.append(el("tr", {}, el("td", {}, r.scenario), el("td", {}, num(r.total_loss, 0)),
      el("td", {}, num(r.accounts_short, 0)), el("td", {}, num(r.total_shortfall, 0)), el("td", {}, num(r.cover1, 0)),
      el("td", {}, num(r.cover2, 0))));
  }
}

async function loadCascade() {
  const c = await api("/api/views/cascade");
  if (!c.available) {
    $("cascade-note").textContent = "No cascade result in the store: produce one with margincal cascade.";
    Plotly.purge("cascade-chart");
    $("cascade-table").tBodies[0].replaceChildren();
    return;
  }
  $("cascade-note").textContent = `run ${c.run_id}, stored ${c.created_at.slice(0, 19).replace("T", " ")} UTC ` +
    "(cascades compare margin policies; they are not a run of a parameter version)";
  const evLabel = (e) => (e === "mc" ? "Monte Carlo (mean)" : e);
  const traces = c.policies.map((pol) => ({type: "bar", name: pol, x: c.events.map(evLabel),
    y: c.events.map((ev) => { const r = c.rows.find((x) => String(x.event) === ev && String(x.policy) === pol);
      return r ? r.bad_debt : null; })}));
  // categories such as "2025-10-10" must stay categories (a date axis would drop the other bars)
  await Plotly.react("cascade-chart", traces, {barmode: "group", height: 420, margin: {l: 70, r: 20, t: 30, b: 40},
    title: {text: "Bad debt per event and margin policy (USDT)"}, xaxis: {type: "category"},
    yaxis: {title: {text: "USDT"}}}, PLOT_CONFIG);
  $("cascade-table").tBodies[0].replaceChildren(...c.rows.slice(0, 100).map((r) => el("tr", {},
    el("td", {}, String(r.event)), el("td", {class: "text"}, String(r.policy)), el("td", {}, num(r.liquidations, 0)),
    el("td", {}, num(r.liquidated_notional, 0)), el("td", {}, num(r.bad_debt, 0)), el("td", {}, num(r.min_price, 2)))));
}

async function loadAuditBadge() {
  const a = await api("/api/views/audit");
  const b = $("audit-badge");
  b.textContent = a.ok ? "ok" : "BROKEN";
  b.classList.toggle("ok", a.ok);
  b.classList.toggle("bad", !a.ok);
  state.audit = a;
}

async function loadAudit() {
  const a = state.audit || await api("/api/views/audit");
  const dl = $("audit-status");
  dl.dataset.ok = String(a.ok);
  const rows = [["chain", a.ok ? "intact" : `BROKEN at entry ${a.first_bad_seq}`], ["check", a.reason],
    ["entries", num(a.entries, 0)], ["last entry", a.last_seq ? `#${a.last_seq} ${String(a.last_ts).slice(0, 19)} ` +
      `${a.last_actor}: ${a.last_action}` : "-"], ["last hash", a.last_hash || "-"]];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// Deciding opens a confirmation dialog: the diff (before, after, target, change) with the evidence that
// supports it (reason, signals, sigma, policy rule), and a comment that is required before the decision
// is sent. Nothing is published by a single click.
state.proposals = {};

function evidenceRows(p) {
  const ev = p.evidence || {};
  const adj = ev.adjustment || {};
  const out = [];
  if (p.reason) out.push(["reason", p.reason]);
  if (ev.event_ts) out.push(["market time", String(ev.event_ts).slice(0, 19).replace("T", " ")]);
  if (adj.target_im !== undefined && adj.target_im !== null) out.push(["target IM", pct(adj.target_im)]);
  if (adj.sigma_now !== undefined && adj.sigma_now !== null) out.push(["volatility now (annual)", pct(adj.sigma_now)]);
  if (adj.sigma_anchor !== undefined && adj.sigma_anchor !== null) {
    out.push(["volatility at calibration (annual)", pct(adj.sigma_anchor)]);
  }
  if (adj.rule) out.push(["policy rule", adj.rule]);
  const sigs = adj.signals || ev.signals || [];
  if (Array.isArray(sigs) && sigs.length) {
    out.push(["signals", sigs.map((s) => (typeof s === "string" ? s : `${s.kind || ""} [${s.severity || ""}] ` +
      `${s.reason || ""}`)).join("; ")]);
  }
  if (ev.backtest_run_id) out.push(["backtest", ev.backtest_run_id]);
  if (ev.monitor) out.push(["monitor", ev.monitor]);
  if (ev.replay) out.push(["replay", "written by a replay"]);
  return out;
}

function decisionDialog(p, action) {
  return new Promise((resolve) => {
    const adj = (p.evidence || {}).adjustment || {};
    const diff = el("table", {class: "diff", id: "decide-diff"},
      el("thead", {}, el("tr", {}, ...["instrument", "IM before", "IM after", "change", "target IM", "MM before",
        "MM after"].map((h) => el("th", {}, h)))));
    const tb = el("tbody");
    for (const c of p.changes || []) {
      const b = c.im_before, a = c.im_after;
      const ch = a === null || a === undefined ? "remove" : (b ? ((100 * (a / b - 1)).toFixed(2) + "%") : "-");
      tb.append(el("tr", {}, el("td", {class: "text"}, c.instrument), el("td", {}, pct(b)), el("td", {}, pct(a)),
        el("td", {}, ch), el("td", {}, adj.instrument === c.instrument ? pct(adj.target_im) : "-"),
        el("td", {}, pct(c.mm_before)), el("td", {}, pct(c.mm_after))));
    }
    diff.append(tb);
    const evid = el("dl", {id: "decide-evidence"});
    for (const [k, v] of evidenceRows(p)) evid.append(el("dt", {}, k), el("dd", {}, v));
    const comment = el("textarea", {id: "decide-comment", rows: 3, cols: 60, maxlength: 2000,
      placeholder: action === "approve" ? "Why you approve (required, kept in the audit log)"
        : "Why you reject (required, kept in the audit log)"});
    const confirm = el("button", {id: "decide-confirm", class: action, disabled: true},
      action === "approve" ? "Confirm approval and publish" : "Confirm rejection");
    const cancel = el("button", {id: "decide-cancel"}, "Cancel");
    const dlg = el("dialog", {id: "decide-dialog", "data-action": action, "data-proposal": p.proposal_id},
      el("h3", {}, `${action === "approve" ? "Approve" : "Reject"} proposal ${p.proposal_id} by ${p.author}`),
      diff, el("h4", {}, "Evidence"), evid, el("label", {for: "decide-comment"}, "Comment"), comment,
      el("div", {class: "dialog-actions"}, confirm, " ", cancel));
    comment.addEventListener("input", () => { confirm.disabled = comment.value.trim().length < 3; });
    const done = (value) => { dlg.close(); dlg.remove(); resolve(value); };
    confirm.addEventListener("click", () => done(comment.value.trim()));
    cancel.addEventListener("click", () => done(null));
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); done(null); });
    document.body.append(dlg);
    dlg.showModal();
    comment.focus();
  });
}

async function decide(id, action) {
  const p = state.proposals[id] || {proposal_id: id, changes: []};
  const comment = await decisionDialog(p, action);
  if (comment === null) { setStatus(`${action} cancelled`); return; }
  try {
    const r = await api(`/api/proposals/${encodeURIComponent(id)}/${action}`, {method: "POST", body: {comment}});
    setStatus(r.published_version ? `approved: published v${r.published_version}` : `${r.decision || action}`);
  } catch (e) {
    setStatus(`${action} failed: ${e.message}`, true);
  }
  await refreshAll();
}

// ---------------------------------------------------------------- live events (SSE over fetch, so the key
// travels in a header; EventSource cannot send headers)

function addEvent(type, ev) {
  const list = $("events");
  let text;
  let cls = "";
  if (type === "signal") {
    cls = ev.severity || "";
    text = `${(ev.ts || "").slice(0, 19)} ${ev.instrument || ""} ${ev.kind || ""} [${ev.severity || ""}] ${ev.reason || ""}`;
  } else {
    text = `${(ev.ts || "").slice(0, 19)} ${ev.actor}: ${ev.action} ${ev.subject || ""}`;
  }
  list.prepend(el("li", {class: cls, "data-type": type}, text));
  while (list.children.length > 100) list.lastChild.remove();
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => refreshAll().catch((e) => setStatus(e.message, true)), 300);
}

async function startStream() {
  if (state.streamAbort) state.streamAbort.abort();
  const ctrl = new AbortController();
  state.streamAbort = ctrl;
  const badge = $("stream-state");
  while (!ctrl.signal.aborted && state.who) {
    try {
      const headers = {"X-API-Key": sessionStorage.getItem(KEY_STORE) || ""};
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const res = await fetch("/api/signals/stream?backlog=20&max_seconds=300", {headers, signal: ctrl.signal});
      if (!res.ok) throw new Error(`stream: HTTP ${res.status}`);
      badge.textContent = "live";
      badge.classList.add("live");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let type = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
            else if (line.startsWith("id:")) id = line.slice(3).trim();
          }
          if (!data) continue;
          if (id) state.lastEventId = id;
          const ev = JSON.parse(data);
          addEvent(type, ev);
          if (type === "signal" || ["publish", "approve", "reject", "propose"].includes(ev.action)) scheduleRefresh();
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) break;
    }
    badge.textContent = "reconnecting";
    badge.classList.remove("live");
    await new Promise((r) => setTimeout(r, 3000));
  }
  badge.textContent = "offline";
  badge.classList.remove("live");
}

// ---------------------------------------------------------------- what-if

async function whatIf(ev) {
  ev.preventDefault();
  const out = $("whatif-result");
  const positions = [];
  for (const line of $("whatif-positions").value.split("\n")) {
    const parts = line.trim().split(/\s+/);
    if (parts.length >= 2 && parts[0]) positions.push({instrument: parts[0], quantity: Number(parts[1])});
  }
  const order = {instrument: $("whatif-instrument").value.trim(), side: $("whatif-side").value,
                 quantity: Number($("whatif-qty").value)};
  const body = {positions, order, method: $("whatif-method").value};
  const vol = $("whatif-vol").value.trim();
  if (body.method === "risk_matrix" && vol) body.flat_vol = Number(vol);
  const pairs = (text) => {
    const o = {};
    for (const item of text.split(",")) {
      const [k, v] = item.trim().split(/\s+/);
      if (k && v !== undefined) o[k.toUpperCase()] = Number(v);
    }
    return o;
  };
  const coll = $("whatif-collateral").value.trim();
  if (coll) { body.collateral = pairs(coll); body.haircuts = pairs($("whatif-haircuts").value); }
  const lim = $("whatif-limit").value.trim();
  if (lim) body.limits = {position_limits: {[order.instrument]: Number(lim)}};
  const acct = (a) => a ? `equity ${num(a.equity)}  collateral after haircuts ${num(a.collateral_after_haircuts)}  ` +
    `IM ${num(a.im)}  MM ${num(a.mm)}  margin ratio ${a.margin_ratio == null ? "-" : (100 * a.margin_ratio).toFixed(2) + "%"}\n` +
    `    liquidation prices: ${Object.entries(a.liquidation_prices || {}).map(([u, p]) => `${u} ${p == null ? "none" : num(p)}`).join(", ") || "-"}` : "-";
  try {
    const r = await api("/api/margin/what-if", {method: "POST", body});
    out.textContent = (r.accepted === false ? `REFUSED: ${r.refusal}\n` : "") +
      `IM before ${num(r.before.im)}  after ${num(r.after.im)}  marginal ${num(r.marginal_im)}\n` +
      `MM before ${num(r.before.mm)}  after ${num(r.after.mm)}\n` +
      `driving scenario: ${typeof r.driving_scenario === "string" ? r.driving_scenario
        : (r.driving_scenario ? JSON.stringify(r.driving_scenario) : "-")}` +
      `\nmethod: ${r.method || "-"} (parameter set v${r.version ?? "-"})` +
      (r.account ? `\naccount before: ${acct(r.account.before)}\naccount after:  ${acct(r.account.after)}` : "");
    out.classList.remove("error");
    renderAccount(r.account || null);
  } catch (e) {
    let msg = e.message;
    if (e.status === 403) msg = "your role may not run margin queries (trader, risk officer, admin)";
    else if (e.status === 422 && Array.isArray(e.detail)) msg = e.detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("\n");
    out.textContent = msg;
    out.classList.add("error");
    renderAccount(null);
  }
}

// The account view as a table (after the what-if text): one row per figure, a column before / after
// the order. Each cell keeps the API's number in data-value (full precision) beside the rounded text.
const ACCOUNT_ROWS = [
  ["equity", "equity (USD)"], ["collateral_value", "collateral at market"],
  ["collateral_after_haircuts", "collateral after haircuts"], ["im", "IM"], ["mm", "MM"],
  ["margin_ratio", "margin ratio (MM / equity)"], ["available", "available (equity - IM)"],
];

function renderAccount(account) {
  let table = document.getElementById("whatif-account");
  if (!table) {
    table = el("table", {id: "whatif-account", class: "account"});
    $("whatif-result").after(table);
  }
  if (!account) { table.replaceChildren(); table.hidden = true; return; }
  table.hidden = false;
  const sides = ["before", "after"];
  const cell = (side, field, value, text) => el("td", {"data-side": side, "data-field": field,
    "data-value": value === null || value === undefined ? "" : String(value)}, text);
  const fmt = (field, v) => v === null || v === undefined ? "-"
    : field === "margin_ratio" ? (Number.isFinite(v) ? (100 * v).toFixed(2) + "%" : "inf") : num(v);
  const rows = ACCOUNT_ROWS.map(([field, label]) => el("tr", {"data-field": field}, el("th", {}, label),
    ...sides.map((s) => cell(s, field, account[s] ? account[s][field] : null, fmt(field, account[s] && account[s][field])))));
  const unders = [...new Set(sides.flatMap((s) => Object.keys((account[s] || {}).liquidation_prices || {})))].sort();
  for (const u of unders) {
    const field = `liquidation_prices.${u}`;
    rows.push(el("tr", {"data-field": field}, el("th", {}, `liquidation price ${u}`),
      ...sides.map((s) => { const v = ((account[s] || {}).liquidation_prices || {})[u];
        return cell(s, field, v, v === null || v === undefined ? "none" : num(v)); })));
  }
  rows.push(el("tr", {"data-field": "driving_scenario"}, el("th", {}, "driving scenario"),
    ...sides.map((s) => { const v = (account[s] || {}).driving_scenario; return cell(s, "driving_scenario", v, v || "-"); })));
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", {}, "account"), el("th", {}, "before"),
    el("th", {}, "after"))), el("tbody", {}, ...rows));
}

// ---------------------------------------------------------------- wiring

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("api-key").value); });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("instrument-select").addEventListener("change", (e) => selectInstrument(e.target.value));
  $("timeframe-select").addEventListener("change", (e) => { state.timeframe = e.target.value; loadChart(); });
  $("whatif-form").addEventListener("submit", whatIf);
  for (const b of document.querySelectorAll("#tabs button[role=tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  for (const id of ["filter-instrument", "filter-status", "filter-kind"]) $(id).addEventListener("change", renderProposals);
  $("view-version").addEventListener("change", (e) => {
    state.version = Number(e.target.value);
    state.versionPinned = state.version !== state.latest;
    loadTab(state.tab).catch((err) => setStatus(err.message, true));
  });
  $("margin-instrument").addEventListener("change", () => { delete state.loaded.margin; loadTab("margin"); });
  $("smile-snapshot").addEventListener("change", () => { delete state.loaded.smiles; loadTab("smiles"); });
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) signIn(saved);
});
