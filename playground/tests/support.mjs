// Shared by the playground tests: paths, the CLI as the reference, temporary files.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SITE = join(ROOT, "target", "playground");
export const NPM = join(ROOT, "target", "npm", "svidgate-policy");
export const SVIDGATE = process.env.SVIDGATE_BIN || join(ROOT, "target", "debug", "svidgate");

export function requireBuilt(path, what) {
  if (!existsSync(path)) throw new Error(`${path} is missing: ${what}`);
}

/** `svidgate policy eval --policy <file> [--network]` on `lines`: { code, out: [lines], err }. */
export function cliEval(policyText, lines, network = false) {
  requireBuilt(SVIDGATE, "run `cargo build -p sidecar-host` (make test-playground does)");
  const dir = mkdtempSync(join(tmpdir(), "svidgate-playground-"));
  const file = join(dir, "policy.yaml");
  writeFileSync(file, policyText);
  const args = ["policy", "eval", "--policy", file];
  if (network) args.push("--network");
  const r = spawnSync(SVIDGATE, args, { input: lines.join("\n") + "\n", encoding: "utf8", timeout: 30_000 });
  return { code: r.status, out: r.stdout.split("\n").filter(Boolean), err: r.stderr };
}

export const POLICY = `trustDomain: cluster.local
policies:
  - name: deny-legacy
    action: DENY
    rules:
      - from:
          - source:
              namespaces: ["legacy"]
  - name: api
    rules:
      - from:
          - source:
              principals: ["cluster.local/ns/web/sa/frontend"]
        to:
          - operation:
              methods: ["GET", "HEAD"]
              paths: ["/api/*"]
  - name: audit-admin
    action: DENY
    dryRun: true
    rules:
      - to:
          - operation:
              paths: ["/api/admin/*"]
`;

export const REQUESTS = [
  '{"peer": "spiffe://cluster.local/ns/web/sa/frontend", "method": "GET", "path": "/api/items"}',
  '{"peer": "spiffe://cluster.local/ns/web/sa/frontend", "method": "DELETE", "path": "/api/items"}',
  '{"peer": "spiffe://cluster.local/ns/legacy/sa/old", "method": "GET", "path": "/api/items"}',
  '{"peer": "spiffe://cluster.local/ns/web/sa/frontend", "method": "GET", "path": "/api/admin/x"}',
  '{"peer": null, "method": "GET", "path": "/api/items"}',
  '{"mtls": false, "method": "GET", "path": "/api/items"}',
  '{"peer": "SPIFFE://bad", "method": "GET", "path": "/api/items"}',
  '{"peer": "spiffe://cluster.local/ns/web/sa/frontend", "method": "GET", "path": "/api/items?x=1", "headers": {"X-A": "b"}, "port": 8080, "sni": "api.example", "host": "API.example"}',
];
