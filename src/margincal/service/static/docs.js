// Offline API reference: renders /openapi.json as a table of endpoints with their parameters and bodies.
"use strict";

const KEY_STORE = "margincal.apiKey";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function schemaText(spec, s, depth = 0) {
  if (!s) return "";
  if (s.$ref) {
    const name = s.$ref.split("/").pop();
    return depth > 1 ? name : `${name} ${schemaText(spec, spec.components.schemas[name], depth + 1)}`;
  }
  if (s.anyOf) return s.anyOf.map((x) => schemaText(spec, x, depth)).join(" | ");
  if (s.type === "array") return `[${schemaText(spec, s.items, depth)}]` + (s.maxItems ? ` (max ${s.maxItems})` : "");
  if (s.type === "object" || s.properties) {
    const req = new Set(s.required || []);
    return "{" + Object.entries(s.properties || {}).map(([k, v]) =>
      `${k}${req.has(k) ? "" : "?"}: ${schemaText(spec, v, depth + 1)}`).join(", ") + "}";
  }
  if (s.enum) return s.enum.map((x) => JSON.stringify(x)).join(" | ");
  return s.type || "";
}

async function load() {
  const key = sessionStorage.getItem(KEY_STORE);
  const res = await fetch("/openapi.json", {headers: key ? {"X-API-Key": key} : {}});
  if (res.status === 401 || res.status === 403) { document.getElementById("docs-key").hidden = false; return; }
  const spec = await res.json();
  document.getElementById("docs-meta").textContent = `${spec.info.title} ${spec.info.version}`;
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "method"), el("th", {class: "text"}, "path"),
    el("th", {class: "text"}, "needs"), el("th", {class: "text"}, "summary"), el("th", {class: "text"}, "parameters"),
    el("th", {class: "text"}, "body"))));
  const body = el("tbody");
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters || []).filter((p) => p.name !== "X-API-Key")
        .map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""}): ${schemaText(spec, p.schema)}`).join("; ");
      const rb = op.requestBody ? schemaText(spec, op.requestBody.content["application/json"].schema) : "";
      body.append(el("tr", {}, el("td", {}, method.toUpperCase()), el("td", {class: "text"}, path),
        el("td", {class: "text"}, op["x-permission"] || ""), el("td", {class: "text"}, op.summary || ""), el("td", {class: "text"}, params), el("td", {class: "text"}, rb)));
    }
  }
  table.append(body);
  document.getElementById("endpoints").replaceChildren(table);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("docs-key-go").addEventListener("click", () => {
    sessionStorage.setItem(KEY_STORE, document.getElementById("docs-key-input").value.trim());
    document.getElementById("docs-key").hidden = true;
    load();
  });
  load();
});
