// svidgate-policy: svidgate's policy engine for Node.js (wasm-bindgen, nodejs target).
// Every function returns a plain object; decisions are in `svidgate policy eval`'s format.
"use strict";
const raw = require("./svidgate_playground.js");

/** A request (object) or a JSON line (string) → the JSON line. */
function line(req) {
  return typeof req === "string" ? req : JSON.stringify(req);
}

module.exports = {
  /** Validates a policy (YAML or JSON text): { ok, summary, problems: [{path, problem, value, message, line, column}] }. */
  check: (policy) => JSON.parse(raw.check(policy)),
  /** Decides requests: an array of requests/lines, or JSON Lines text. { ok, results: [{line, decision, output} | {line, error}] } */
  evaluate: (policy, requests, opts = {}) =>
    JSON.parse(raw.evaluate(policy, Array.isArray(requests) ? requests.map(line).join("\n") : line(requests), !!opts.network)),
  /** The decision and the engine's trace for one request: { ok, decision, trace: [...] }. */
  explain: (policy, request, opts = {}) => JSON.parse(raw.explain(policy, line(request), !!opts.network)),
  /** Lint findings: { ok, findings: [{severity, path, code, message, line, column}] }. */
  lint: (policy, opts = {}) => JSON.parse(raw.lint(policy, !!opts.network)),
  /** Requests the two documents decide differently: { ok, equivalent, differences, inconclusive, ... }. */
  diff: (oldPolicy, newPolicy, opts = {}) => JSON.parse(raw.diff(oldPolicy, newPolicy, !!opts.network)),
  /** Istio AuthorizationPolicy YAML → { ok, yaml, diagnostics, failure }. Options: trustDomain, trustDomainAliases, namespace, skipUnsupported. */
  import: (yaml, opts = {}) => JSON.parse(raw.importIstio(yaml, JSON.stringify(opts))),
  /** A compiled policy for repeated decisions: new Engine(text).decide(line). */
  Engine: raw.Engine,
};
