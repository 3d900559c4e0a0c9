// The playground in a real browser: Debian's chromium driven headless by playwright-core.
// Types a policy and sees the error at its line, decides requests through the form, the
// batch box and a share link, and compares every decision with `svidgate policy eval`.
// Screenshots are kept in target/playground-test/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { serve } from "../tools/serve.mjs";
import { POLICY, REQUESTS, ROOT, SITE, cliEval, requireBuilt } from "./support.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = join(ROOT, "target", "playground-test");
let server, url, context, profile;

before(async () => {
  requireBuilt(join(SITE, "index.html"), "run `make playground`");
  requireBuilt(CHROMIUM, "install Debian's chromium (make setup)");
  mkdirSync(SHOTS, { recursive: true });
  ({ server, url } = await serve(SITE));
  profile = mkdtempSync(join(tmpdir(), "svidgate-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1400, height: 950 },
  });
});

after(async () => {
  await context?.close();
  await new Promise((ok) => (server ? server.close(ok) : ok()));
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function open(fragment = "") {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url + fragment);
  await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
  page.errors = errors;
  return page;
}

async function setPolicy(page, text) {
  const before = await page.evaluate(() => Number(document.body.dataset.checks || 0));
  await page.fill("#policy", text);
  await page.waitForFunction((n) => Number(document.body.dataset.checks || 0) > n, before);
}

function cliDecision(policy, line) {
  const r = cliEval(policy, [line]);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out[0]);
}

test("typing a policy shows each problem at its line and column", async () => {
  const page = await open();
  await setPolicy(page, POLICY);
  await page.waitForSelector("#check-status.ok");
  // Type a broken policy entry at the end, key by key.
  await page.focus("#policy");
  await page.keyboard.press("Control+End");
  await page.keyboard.type("  - name: broken\n    action: PERMIT\n", { delay: 5 });
  const li = await page.waitForSelector("#problems li[data-path='policies[3].action']");
  assert.equal(await li.getAttribute("data-line"), "26");
  assert.equal(await li.getAttribute("data-column"), "5");
  assert.match(await li.textContent(), /^26:5 {2}policies\[3\]\.action: unknown action: expected ALLOW or DENY \(PERMIT\)/);
  assert.equal(await page.textContent("#gutter .bad"), "26");
  assert.equal(await page.getAttribute("#decision", "data-decision"), null);
  await page.screenshot({ path: join(SHOTS, "editor-error.png"), fullPage: true });
  // Fix it: the error goes away and a decision is shown again.
  await page.keyboard.press("Backspace");
  for (let i = 0; i < "PERMIT".length; i++) await page.keyboard.press("Backspace");
  await page.keyboard.type("DENY\n");
  await page.waitForSelector("#check-status.ok");
  assert.equal(await page.$$eval("#problems li", (l) => l.length), 0);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("batch decisions equal svidgate policy eval's, in HTTP and network mode", async () => {
  const page = await open();
  await setPolicy(page, POLICY);
  await page.click("button[data-tab=batch]");
  for (const network of [false, true]) {
    await page.setChecked("#network", network);
    await page.fill("#batch", REQUESTS.join("\n"));
    await page.click("#run-batch");
    await page.waitForSelector("#batch-results tbody tr");
    const rows = await page.$$eval("#batch-results tbody tr", (trs) =>
      trs.map((tr) => ({ output: tr.dataset.output, decision: tr.querySelector("[data-decision]")?.dataset.decision })));
    const cli = cliEval(POLICY, REQUESTS, network);
    assert.equal(cli.code, 0, cli.err);
    assert.deepEqual(rows.map((r) => r.output), cli.out);
    assert.deepEqual(rows.map((r) => r.decision), cli.out.map((l) => JSON.parse(l).decision));
    if (!network) await page.screenshot({ path: join(SHOTS, "batch.png"), fullPage: true });
  }
  await page.close();
});

test("the request form decides like the CLI and shows the explain trace", async () => {
  const page = await open();
  await setPolicy(page, POLICY);
  const cases = [
    { peer: "spiffe://cluster.local/ns/web/sa/frontend", method: "GET", path: "/api/items", want: "allow" },
    { peer: "spiffe://cluster.local/ns/web/sa/frontend", method: "POST", path: "/api/items", want: "deny" },
    { peer: "spiffe://cluster.local/ns/legacy/sa/x", method: "GET", path: "/api/items", want: "deny" },
    { peer: "", method: "GET", path: "/api/items", want: "deny" },
  ];
  for (const c of cases) {
    await page.fill("input[name=peer]", c.peer);
    await page.fill("input[name=method]", c.method);
    await page.fill("input[name=path]", c.path);
    const line = await page.textContent("#request-json");
    const shown = await page.getAttribute("#decision", "data-decision");
    assert.equal(shown, c.want, line);
    assert.equal(cliDecision(POLICY, line).decision, shown, line);
    const trace = await page.textContent("#trace");
    assert.match(trace, /^request \(HTTP\): /);
    assert.match(trace, /\ndecision: (ALLOW|DENY)/);
  }
  await page.screenshot({ path: join(SHOTS, "request-form.png"), fullPage: true });
  await page.close();
});

test("a share link opens with its policy and request and shows the decision", async () => {
  const requests = [
    '{"peer":"spiffe://cluster.local/ns/web/sa/frontend","method":"GET","path":"/api/items"}',
    '{"peer":"spiffe://cluster.local/ns/legacy/sa/old","method":"GET","path":"/api/items"}',
  ];
  for (const [i, req] of requests.entries()) {
    const page = await open("#policy=" + encodeURIComponent(POLICY) + "&request=" + encodeURIComponent(req));
    assert.equal(await page.inputValue("#policy"), POLICY);
    const shown = await page.getAttribute("#decision", "data-decision");
    assert.equal(shown, cliDecision(POLICY, req).decision);
    assert.equal(shown, i === 0 ? "allow" : "deny");
    if (i === 1) await page.screenshot({ path: join(SHOTS, "share-link.png"), fullPage: true });
    // The page's own share link reproduces the state.
    await page.click("#share");
    const link = await page.evaluate(() => location.href);
    const again = await open(link.slice(link.indexOf("#")));
    assert.equal(await again.getAttribute("#decision", "data-decision"), shown);
    await again.close();
    await page.close();
  }
});

test("lint, diff and import tabs", async () => {
  const page = await open();
  const shadowed = POLICY.replace('paths: ["/api/*"]', 'paths: ["/api/*", "/api/x"]');
  await setPolicy(page, shadowed);
  await page.click("button[data-tab=lint]");
  const code = await page.getAttribute("#findings li[data-code]", "data-code");
  assert.equal(code, "redundant-value");

  await page.click("button[data-tab=diff]");
  await page.fill("#old-policy", POLICY);
  await setPolicy(page, POLICY.replace('"GET", "HEAD"', '"GET", "HEAD", "DELETE"'));
  await page.click("#run-diff");
  await page.waitForSelector("#diff-results tbody tr");
  const rows = await page.$$eval("#diff-results tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("[data-decision]")].map((td) => td.dataset.decision)));
  assert.ok(rows.length > 0);
  for (const r of rows) assert.deepEqual(r, ["deny", "allow"]);
  await page.screenshot({ path: join(SHOTS, "diff.png"), fullPage: true });

  await page.click("button[data-tab=import]");
  await page.setChecked("#import-skip", true);
  await page.click("#run-import");
  // The bundled sample has a CUSTOM policy: refused even when skipping.
  await page.waitForSelector("#import-diags li.error");
  assert.equal(await page.isDisabled("#use-import"), true);
  const sample = await page.inputValue("#istio");
  await page.fill("#istio", sample.slice(0, sample.lastIndexOf("---")));
  await page.click("#run-import");
  await page.waitForFunction(() => !document.querySelector("#use-import").disabled);
  await page.click("#use-import");
  await page.waitForSelector("#check-status.ok");
  assert.match(await page.inputValue("#policy"), /^# svidgate policy imported from Istio/);
  await page.screenshot({ path: join(SHOTS, "import.png"), fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test("the deploy examples are one click away and 100,000 principals load", async () => {
  const page = await open();
  const names = await page.$$eval("#examples button", (b) => b.map((x) => x.dataset.example));
  assert.ok(names.includes("demo-backend.yaml"), names.join(","));
  for (const n of names) {
    await page.click(`#examples button[data-example="${n}"]`);
    await page.waitForSelector("#check-status.ok");
  }
  await page.click("#gen100k");
  await page.waitForFunction(() => Number(document.querySelector("#stats").dataset.indexEntries || 0) >= 100000, null, { timeout: 90_000 });
  assert.equal(await page.getAttribute("#decision", "data-decision"), "allow");
  assert.match(await page.textContent("#stats"), /ns per decision/);
  await page.screenshot({ path: join(SHOTS, "100k-principals.png") });
  await page.close();
});
