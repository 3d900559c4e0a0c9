// The npm package (wasm-bindgen nodejs target) built by `make playground`: every export, and
// its decisions byte for byte equal to `svidgate policy eval`'s.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { NPM, POLICY, REQUESTS, cliEval, requireBuilt } from "./support.mjs";

requireBuilt(NPM, "run `make playground`");
const svidgate = createRequire(import.meta.url)(NPM);

test("exports check, evaluate, explain, lint, diff and import", () => {
  for (const name of ["check", "evaluate", "explain", "lint", "diff", "import"]) {
    assert.equal(typeof svidgate[name], "function", name);
  }
});

test("check: valid summary; problems with path, line and column", () => {
  const ok = svidgate.check(POLICY);
  assert.equal(ok.ok, true);
  assert.deepEqual([ok.summary.policies, ok.summary.deny, ok.summary.allow], [3, 2, 1]);
  const bad = svidgate.check(POLICY.replace('"GET", "HEAD"', '"GET", "G T"'));
  assert.equal(bad.ok, false);
  assert.equal(bad.problems.length, 1);
  const p = bad.problems[0];
  assert.equal(p.path, "policies[1].rules[0].to[0].operation.methods[1]");
  assert.equal(p.line, 16);
  assert.equal(p.column, 32);
  assert.match(p.message, /^policies\[1\]\.rules\[0\]\.to\[0\]\.operation\.methods\[1\]: invalid method/);
  const syntax = svidgate.check("trustDomain: td\npolicies:\n  - name: [\n");
  assert.equal(syntax.ok, false);
  assert.ok(syntax.problems[0].line >= 3, JSON.stringify(syntax));
});

test("evaluate: the same output lines as svidgate policy eval", () => {
  for (const network of [false, true]) {
    const r = svidgate.evaluate(POLICY, REQUESTS, { network });
    assert.equal(r.ok, true);
    const cli = cliEval(POLICY, REQUESTS, network);
    assert.equal(cli.code, 0, cli.err);
    assert.deepEqual(r.results.map((x) => x.output), cli.out);
  }
  const mixed = svidgate.evaluate(POLICY, '{"peer": null}\n\n{"bogus": 1}\n');
  assert.equal(mixed.results[0].decision.decision, "deny");
  assert.match(mixed.results[1].error, /^line 3: unknown field `bogus`/);
});

test("explain: decision and the full trace", () => {
  const r = svidgate.explain(POLICY, { peer: "spiffe://cluster.local/ns/legacy/sa/old", method: "GET", path: "/x" });
  assert.equal(r.decision.decision, "deny");
  assert.equal(r.decision.policy, "deny-legacy");
  assert.ok(r.trace.some((l) => l.includes('policy "api" (ALLOW)')), r.trace.join("\n"));
  assert.equal(r.trace.at(-2), 'decision: DENY by policy "deny-legacy" rule 0: matched DENY policy');
});

test("lint: findings with severity, path, code and message", () => {
  assert.deepEqual(svidgate.lint(POLICY).findings, []);
  const shadow = POLICY.replace('paths: ["/api/*"]', 'paths: ["/api/*", "/api/x"]');
  const f = svidgate.lint(shadow).findings;
  assert.equal(f.length, 1);
  assert.deepEqual([f[0].severity, f[0].code, f[0].path], ["warning", "redundant-value", "policies[1].rules[0].to[0].operation.paths[1]"]);
  const net = svidgate.lint(POLICY, { network: true }).findings.map((x) => x.code);
  assert.deepEqual(net, ["http-in-network-allow", "http-in-network-deny"]);
});

test("diff: a request that tells two versions apart; none for a rewrite", () => {
  const wider = POLICY.replace('"GET", "HEAD"', '"GET", "HEAD", "POST"');
  const d = svidgate.diff(POLICY, wider);
  assert.equal(d.equivalent, false);
  assert.ok(d.differences.length > 0);
  for (const x of d.differences) {
    assert.equal(x.request.method, "POST");
    assert.deepEqual([x.old.decision, x.new.decision], ["deny", "allow"]);
    // Each printed request really differs under the CLI too.
    const line = JSON.stringify(x.request);
    assert.notEqual(cliEval(POLICY, [line]).out[0], cliEval(wider, [line]).out[0]);
  }
  const reordered = POLICY.replace('"GET", "HEAD"', '"HEAD", "GET"');
  assert.equal(svidgate.diff(POLICY, reordered).equivalent, true);
});

test("import: Istio YAML to a policy, refusing what would widen it", () => {
  const istio = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-legacy, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: [legacy]}}]}]
`;
  const r = svidgate.import(istio, { trustDomain: "cluster.local" });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(svidgate.check(r.yaml).ok, true);
  const custom = svidgate.import(istio.replace("action: DENY", "action: CUSTOM\n  provider: {name: x}"), { skipUnsupported: true });
  assert.equal(custom.ok, false);
  assert.match(custom.diagnostics[0].text, /^error: .*CUSTOM action .*cannot be skipped/);
});

test("Engine: compile once, decide many", () => {
  const e = new svidgate.Engine(POLICY);
  assert.equal(JSON.parse(e.decide(REQUESTS[0], false)).decision, "allow");
  assert.equal(e.bench(REQUESTS[0], false, 1000), 1000);
  assert.throws(() => new svidgate.Engine("trustDomain: Bad"));
});
