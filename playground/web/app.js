// svidgate policy playground: plain JS over the wasm-bindgen build of svidgate-core.
import init, { check, evaluate, lint, diff, importIstio, Engine } from "./pkg/svidgate_playground.js";
import { EXAMPLES } from "./examples.js";

const $ = (sel) => document.querySelector(sel);
const policyEl = $("#policy");
const gutter = $("#gutter");
const form = $("#request-form");
const networkEl = $("#network");

let engine = null;
let checkTimer = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---------- share links: #policy=<percent-encoded>&request=<percent-encoded JSON> ----------
function readFragment() {
  const out = {};
  const h = location.hash.replace(/^#/, "");
  if (!h) return out;
  for (const part of h.split("&")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    try {
      out[part.slice(0, i)] = decodeURIComponent(part.slice(i + 1));
    } catch (_) {
      // A malformed escape: ignore that parameter.
    }
  }
  return out;
}

function shareLink() {
  const frag = "policy=" + encodeURIComponent(policyEl.value) + "&request=" + encodeURIComponent(requestLine());
  return location.href.split("#")[0] + "#" + frag;
}

// ---------- the request form <-> an `svidgate policy eval` JSON line ----------
function requestObject() {
  const f = new FormData(form);
  const req = {};
  const peer = (f.get("peer") || "").trim();
  if (peer) req.peer = peer;
  if (!form.elements.mtls.checked) req.mtls = false;
  for (const k of ["method", "path", "host", "sni"]) {
    const v = (f.get(k) || "").trim();
    if (v) req[k] = v;
  }
  const port = (f.get("port") || "").trim();
  if (port) req.port = Number(port);
  const headers = {};
  for (const line of (f.get("headers") || "").split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  if (Object.keys(headers).length) req.headers = headers;
  return req;
}

function requestLine() {
  return JSON.stringify(requestObject());
}

function fillForm(req) {
  form.elements.peer.value = req.peer || "";
  form.elements.mtls.checked = req.mtls !== false;
  for (const k of ["method", "path", "host", "sni"]) form.elements[k].value = req[k] || "";
  form.elements.port.value = req.port != null ? String(req.port) : "";
  form.elements.headers.value = Object.entries(req.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
}

// ---------- decisions ----------
function decisionNode(d, label) {
  const word = d.decision === "allow" ? "ALLOW" : "DENY";
  const by = d.policy != null ? `policy ${d.policy}, rule ${d.rule}` : "no deciding policy";
  const node = el("div", { class: "decision", "data-decision": d.decision });
  node.append(`${label ? label + ": " : ""}${word}`);
  node.append(el("small", { text: `${by} — ${d.reason}` }));
  return node;
}

function showDecision() {
  const line = requestLine();
  $("#request-json").textContent = line;
  const box = $("#decision");
  box.replaceChildren();
  box.removeAttribute("data-decision");
  if (!engine) {
    box.append(el("div", { class: "hint", text: "the policy is not valid: fix the problems shown under the editor" }));
    $("#trace").textContent = "";
    return;
  }
  const r = JSON.parse(engine.explain(line, networkEl.checked));
  if (!r.ok) {
    box.append(el("div", { class: "hint", text: r.error }));
    $("#trace").textContent = "";
    return;
  }
  box.setAttribute("data-decision", r.decision.decision);
  box.append(decisionNode(r.decision, "Decision"));
  if (r.decision.dryRun) box.append(decisionNode(r.decision.dryRun, "Dry-run"));
  $("#trace").textContent = r.trace.join("\n");
}

// ---------- the editor: check as you type ----------
function renderGutter(bad) {
  const n = policyEl.value.split("\n").length;
  const frag = document.createDocumentFragment();
  const limit = Math.min(n, 5000);
  for (let i = 1; i <= limit; i++) {
    const s = el("span", { text: String(i) });
    if (bad.has(i)) s.className = "bad";
    frag.append(s, "\n");
  }
  gutter.replaceChildren(frag);
  gutter.scrollTop = policyEl.scrollTop;
}

function goTo(line, column) {
  const lines = policyEl.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(0, (column || 1) - 1);
  policyEl.focus();
  policyEl.setSelectionRange(offset, offset + 1);
}

// One parse and compile per edit: the Engine is kept for explain and timing; only an invalid
// document is parsed again, by `check`, for its located problems.
function runCheck() {
  const status = $("#check-status");
  const list = $("#problems");
  list.replaceChildren();
  const bad = new Set();
  const text = policyEl.value;
  const t0 = performance.now();
  try {
    engine = new Engine(text);
  } catch (_) {
    engine = null;
  }
  const compileMs = performance.now() - t0;
  if (engine) {
    const s = JSON.parse(engine.summary());
    status.className = "status ok";
    status.textContent = `valid: ${s.policies} policies (${s.deny} DENY, ${s.allow} ALLOW), trust domain ${s.trustDomain}`;
    measure(s, compileMs);
  } else {
    const r = JSON.parse(check(text));
    status.className = "status bad";
    status.textContent = `${r.problems.length} problem(s)`;
    for (const p of r.problems) {
      const where = p.line ? `${p.line}:${p.column}` : "?";
      if (p.line) bad.add(p.line);
      const li = el("li", { class: "error", "data-line": String(p.line || ""), "data-column": String(p.column || ""), "data-path": p.path });
      li.textContent = `${where}  ${p.message}`;
      li.addEventListener("click", () => p.line && goTo(p.line, p.column));
      list.append(li);
    }
    $("#stats").textContent = "";
  }
  renderGutter(bad);
  showDecision();
  if (!$("#tab-lint").classList.contains("hidden")) runLint();
  // For tools and tests: how many times the document was checked.
  document.body.dataset.checks = String(Number(document.body.dataset.checks || 0) + 1);
}

// Parse + compile time, index size and time per decision, measured here in the browser.
function measure(s, compileMs) {
  const line = requestLine();
  let perDecision = "";
  try {
    let n = 1000;
    let ms = 0;
    for (;;) {
      const t = performance.now();
      engine.bench(line, networkEl.checked, n);
      ms = performance.now() - t;
      if (ms > 20 || n >= 1 << 22) break;
      n *= 4;
    }
    perDecision = ` · ${((ms * 1e6) / n).toFixed(0)} ns per decision (${n} decisions)`;
  } catch (_) {
    perDecision = "";
  }
  const stats = $("#stats");
  stats.textContent = `parse + compile ${compileMs.toFixed(1)} ms · ${s.rules} rules, ${s.indexEntries} index entries${perDecision}`;
  stats.dataset.compileMs = compileMs.toFixed(3);
  stats.dataset.indexEntries = String(s.indexEntries);
}

function scheduleCheck() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(runCheck, 120);
}

// ---------- tabs ----------
function openTab(name) {
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("hidden", t.id !== "tab-" + name);
  if (name === "lint") runLint();
}

function runBatch() {
  const r = JSON.parse(evaluate(policyEl.value, $("#batch").value, networkEl.checked));
  const body = $("#batch-results tbody");
  body.replaceChildren();
  if (!r.ok) {
    body.append(el("tr", {}, el("td", { colspan: "5", text: r.error })));
    return;
  }
  for (const x of r.results) {
    if (x.error) {
      body.append(el("tr", { class: "malformed" }, el("td", { text: String(x.line) }), el("td", { colspan: "4", text: x.error })));
      continue;
    }
    const d = x.decision;
    const tr = el("tr", { "data-output": x.output },
      el("td", { text: String(x.line) }),
      el("td", { "data-decision": d.decision, text: d.decision.toUpperCase() }),
      el("td", { text: d.policy ?? "—" }),
      el("td", { text: d.rule ?? "—" }),
      el("td", { text: d.reason + (d.dryRun ? ` (dry-run: ${d.dryRun.decision})` : "") }));
    body.append(tr);
  }
}

function runLint() {
  const r = JSON.parse(lint(policyEl.value, networkEl.checked));
  const list = $("#findings");
  list.replaceChildren();
  if (!r.ok) {
    list.append(el("li", { text: r.error }));
    return;
  }
  if (!r.findings.length) list.append(el("li", { class: "info", text: "no findings" }));
  for (const f of r.findings) {
    const li = el("li", { class: f.severity, "data-code": f.code });
    li.textContent = `${f.line ? f.line + ":" + f.column + "  " : ""}${f.severity} [${f.code}] ${f.path}: ${f.message}`;
    li.addEventListener("click", () => f.line && goTo(f.line, f.column));
    list.append(li);
  }
}

function runDiff() {
  const r = JSON.parse(diff($("#old-policy").value, policyEl.value, networkEl.checked));
  const sum = $("#diff-summary");
  const body = $("#diff-results tbody");
  body.replaceChildren();
  if (!r.ok) {
    sum.textContent = r.error;
    return;
  }
  const classes = Object.entries(r.classes).map(([k, v]) => `${k} ${v}`).join(", ");
  if (r.equivalent) sum.textContent = `equivalent: no request decides differently (${r.searched} class combinations: ${classes})`;
  else if (r.inconclusive && !r.totalDifferences) sum.textContent = `inconclusive: ${r.inconclusive}`;
  else sum.textContent = `${r.totalDifferences} class combination(s) decide differently; showing ${r.differences.length}` + (r.inconclusive ? ` (inconclusive: ${r.inconclusive})` : "");
  for (const d of r.differences) {
    body.append(el("tr", {},
      el("td", {}, el("code", { text: JSON.stringify(d.request) })),
      el("td", { "data-decision": d.old.decision, text: `${d.old.decision.toUpperCase()} — ${d.old.reason}` }),
      el("td", { "data-decision": d.new.decision, text: `${d.new.decision.toUpperCase()} — ${d.new.reason}` })));
  }
}

let imported = null;
function runImport() {
  const opts = {
    trustDomain: $("#import-td").value.trim() || "cluster.local",
    trustDomainAliases: $("#import-aliases").value.split(",").map((s) => s.trim()).filter(Boolean),
    namespace: $("#import-ns").value.trim() || null,
    skipUnsupported: $("#import-skip").checked,
  };
  const r = JSON.parse(importIstio($("#istio").value, JSON.stringify(opts)));
  const list = $("#import-diags");
  list.replaceChildren();
  for (const d of r.diagnostics || []) list.append(el("li", { class: d.label, text: d.text }));
  if (r.failure || r.error) list.append(el("li", { class: "error", text: r.failure || r.error }));
  imported = r.ok ? r.yaml : null;
  $("#import-out").textContent = imported || "";
  $("#use-import").disabled = !imported;
}

// ---------- the 100,000-principal generator ----------
function generate(n) {
  const lines = ["# Generated: one ALLOW with " + n.toLocaleString("en") + " principals.", "trustDomain: cluster.local", "policies:",
    "  - name: deny-legacy", "    action: DENY", "    rules:", "      - from:", "          - source:", "              namespaces: [legacy]",
    "  - name: big-allowlist", "    rules:", "      - from:", "          - source:", "              principals:"];
  for (let i = 0; i < n; i++) lines.push(`                - cluster.local/ns/team-${i % 1000}/sa/svc-${i}`);
  lines.push("        to:", "          - operation:", "              methods: [GET, POST]");
  return lines.join("\n") + "\n";
}

// ---------- wiring ----------
function loadExample(name) {
  policyEl.value = EXAMPLES[name];
  runCheck();
}

async function main() {
  await init();
  const nav = $("#examples");
  for (const name of Object.keys(EXAMPLES)) {
    const b = el("button", { "data-example": name, text: name.replace(/\.yaml$/, "") });
    b.addEventListener("click", () => loadExample(name));
    nav.append(b);
  }
  policyEl.addEventListener("input", scheduleCheck);
  policyEl.addEventListener("scroll", () => (gutter.scrollTop = policyEl.scrollTop));
  policyEl.addEventListener("keydown", (e) => {
    if (e.key === "Tab") {
      e.preventDefault();
      policyEl.setRangeText("  ", policyEl.selectionStart, policyEl.selectionEnd, "end");
      scheduleCheck();
    }
  });
  form.addEventListener("input", showDecision);
  networkEl.addEventListener("change", runCheck);
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => openTab(b.dataset.tab));
  $("#run-batch").addEventListener("click", runBatch);
  $("#run-lint").addEventListener("click", runLint);
  $("#run-diff").addEventListener("click", runDiff);
  $("#old-from-current").addEventListener("click", () => ($("#old-policy").value = policyEl.value));
  $("#run-import").addEventListener("click", runImport);
  $("#use-import").addEventListener("click", () => {
    if (imported) {
      policyEl.value = imported;
      runCheck();
    }
  });
  $("#share").addEventListener("click", async () => {
    const link = shareLink();
    history.replaceState(null, "", link);
    try {
      await navigator.clipboard.writeText(link);
      $("#share").textContent = "Link copied";
    } catch (_) {
      $("#share").textContent = "Link in the address bar";
    }
    setTimeout(() => ($("#share").textContent = "Copy share link"), 2000);
  });
  $("#gen100k").addEventListener("click", () => {
    policyEl.value = generate(100000);
    fillForm({ peer: "spiffe://cluster.local/ns/team-999/sa/svc-99999", method: "GET", path: "/" });
    runCheck();
  });

  $("#batch").value = [
    '{"peer": "spiffe://demo.local/ns/web/sa/frontend", "method": "GET", "path": "/api/items"}',
    '{"peer": "spiffe://demo.local/ns/legacy/sa/old", "method": "GET", "path": "/api/items"}',
    '{"peer": null, "method": "GET", "path": "/api/items"}',
    '{"mtls": false, "method": "DELETE", "path": "/api/admin/x"}',
  ].join("\n");
  $("#istio").value = EXAMPLES["__istio__"] || "";
  delete EXAMPLES["__istio__"];
  nav.querySelector('[data-example="__istio__"]')?.remove();

  const frag = readFragment();
  if (frag.request) {
    try {
      fillForm(JSON.parse(frag.request));
    } catch (_) {
      // Not JSON: keep the default request.
    }
  }
  if (frag.policy != null) {
    policyEl.value = frag.policy;
    runCheck();
  } else {
    const first = Object.keys(EXAMPLES).find((n) => n.startsWith("demo")) || Object.keys(EXAMPLES)[0];
    if (!frag.request) fillForm({ peer: "spiffe://demo.local/ns/web/sa/frontend", method: "GET", path: "/api/items" });
    loadExample(first);
  }
  document.body.dataset.ready = "true";
}

main();
