// margincal dashboard: plain JS over the service's JSON API.
// The API key is entered once, kept in sessionStorage (gone when the tab closes) and sent as the
// X-API-Key header on every fetch; it never goes into a URL.
"use strict";

const KEY_STORE = "margincal.apiKey";
const state = {who: null, instrument: null, timeframe: null, instruments: [], lastEventId: null,
               streamAbort: null, refreshTimer: null};

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
  await Promise.all([loadInstruments(), loadVersions(), loadProposals()]);
  if (state.instrument) await loadChart();
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
  const body = $("versions").tBodies[0];
  body.replaceChildren(...rows.slice().reverse().map((r) => el("tr", {"data-version": r.version},
    el("td", {}, "v" + r.version), el("td", {class: "text"}, (r.created_at || "").slice(0, 19).replace("T", " ")),
    el("td", {class: "text"}, r.created_by), el("td", {class: "text"}, r.source), el("td", {}, r.instruments),
    el("td", {class: "text"}, r.note || ""))));
  const dbody = $("diff").tBodies[0];
  dbody.replaceChildren();
  if (rows.length) {
    const d = await api(`/api/parameter-sets/${rows[rows.length - 1].version}/diff`);
    for (const c of d.changes.slice(0, 50)) {
      dbody.append(el("tr", {}, el("td", {}, c.instrument), el("td", {class: "text"}, c.change),
        el("td", {}, pct(c.im_before)), el("td", {}, pct(c.im_after)), el("td", {}, pct(c.mm_before)),
        el("td", {}, pct(c.mm_after))));
    }
    if (!d.changes.length) dbody.append(el("tr", {}, el("td", {colspan: 6, class: "text"}, "no changes")));
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

async function loadProposals() {
  const rows = await api("/api/proposals");
  const canDecide = state.who && state.who.permissions.includes("decide");
  $("proposals-note").textContent = canDecide ? "You may approve or reject proposals by others (four-eyes)."
    : `Your role (${state.who ? state.who.role : "-"}) may view proposals; risk officers decide them.`;
  const body = $("proposals").tBodies[0];
  body.replaceChildren();
  for (const p of rows) {
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
    body.append(el("tr", {"data-proposal": p.proposal_id, "data-status": p.status},
      el("td", {class: "text"}, (p.created_at || "").slice(0, 19).replace("T", " ")),
      el("td", {class: "text"}, p.author), el("td", {class: "text"}, p.reason),
      el("td", {class: "text"}, changesText(p)), el("td", {class: "text"}, p.status), actions));
  }
  if (!rows.length) body.append(el("tr", {}, el("td", {colspan: 6, class: "text"}, "no proposals")));
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
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) signIn(saved);
});
