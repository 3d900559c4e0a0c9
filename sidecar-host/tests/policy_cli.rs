//! `svidgate policy ...` run as a real process on files in a temporary directory: exit codes
//! and exact output lines.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn out_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
    fn err_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
    /// Asserts the exit code and the whole stdout (stderr in the message).
    fn assert_out(&self, code: i32, stdout: &str) {
        assert_eq!(
            (self.code, self.stdout.as_str()),
            (code, stdout),
            "{}",
            self.stderr
        );
    }
}

/// Runs `svidgate <args>` in `dir` with `stdin`.
fn svidgate(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_svidgate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn svidgate");
    let mut pipe = child.stdin.take().expect("stdin");
    // A command that fails before reading stdin closes it: a broken pipe is not an error here.
    if let Err(e) = pipe.write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    drop(pipe);
    let out = child.wait_with_output().expect("wait svidgate");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf8 stderr"),
    }
}

fn tempdir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write fixture");
    }
    dir
}

const ISTIO_UNSUPPORTED: &str = r#"# Istio policies svidgate cannot express fully.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext-authz
  namespace: shop
spec:
  action: CUSTOM
  provider:
    name: opa
  rules:
  - to:
    - operation:
        paths: ["/admin/*"]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: office-only
  namespace: shop
spec:
  selector:
    matchLabels:
      app: api
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/8"]
  - from:
    - source:
        principals: ["cluster.local/ns/web/sa/frontend"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://issuer.example"]
  - to:
    - operation:
        methods: ["GET"]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: unrelated
"#;

#[test]
fn unreadable_files_exit_2() {
    let dir = tempdir_with(&[]);
    let cases: [&[&str]; 4] = [
        &["policy", "check", "missing.yaml"],
        &["policy", "eval", "--policy", "missing.yaml"],
        &[
            "policy",
            "explain",
            "--policy",
            "missing.yaml",
            "--peer",
            "spiffe://td/x",
        ],
        &["policy", "import", "missing.yaml"],
    ];
    for args in cases {
        let run = svidgate(dir.path(), args, "");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(
            run.err_lines(),
            ["svidgate: cannot read missing.yaml: No such file or directory (os error 2)"],
            "{args:?}"
        );
        assert_eq!(run.stdout, "", "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempdir_with(&[("p.yaml", "trustDomain: td\npolicies: []\n")]);
    let run = svidgate(
        dir.path(),
        &[
            "policy", "explain", "--policy", "p.yaml", "--header", "novalue",
        ],
        "",
    );
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (2, "svidgate: --header \"novalue\": expected NAME=VALUE\n")
    );

    let run = svidgate(
        dir.path(),
        &["policy", "import", "--trust-domain", "Bad.Example", "-"],
        "",
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with(
            "svidgate: --trust-domain \"Bad.Example\": trust domain has an invalid character 'B'"
        ),
        "{}",
        run.stderr
    );

    let run = svidgate(dir.path(), &["policy", "eval", "--policy", "-"], "{}\n");
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            2,
            "svidgate: --policy -: stdin carries the requests for `eval`; give the policy as a file\n"
        )
    );

    let run = svidgate(dir.path(), &["policy", "check"], "");
    assert_eq!(run.code, 2, "clap usage error");
    let run = svidgate(
        dir.path(),
        &["policy", "explain", "--policy", "p.yaml", "--port", "70000"],
        "",
    );
    assert_eq!(run.code, 2, "clap value error");
}

#[test]
fn import_reports_unsupported_features_and_exits_3() {
    let dir = tempdir_with(&[("istio.yaml", ISTIO_UNSUPPORTED)]);
    let custom = r#"istio.yaml: error: AuthorizationPolicy shop/ext-authz (document 1): spec.action: CUSTOM action (provider "opa") is not supported: svidgate has no external authorizer ("CUSTOM"); cannot be skipped: dropping the policy would let through what the external authorizer denies"#;
    let selector = r#"istio.yaml: warning: AuthorizationPolicy shop/office-only (document 2): spec.selector: dropped: a svidgate policy applies to every workload whose filter loads it ({"matchLabels":{"app":"api"}}); load policy shop.office-only only in the filters of the workloads it selected"#;
    let ip = r#"AuthorizationPolicy shop/office-only (document 2): spec.rules[0].from[0].source.ipBlocks: IP blocks are not supported: svidgate authorizes by SPIFFE identity, not address (["10.0.0.0/8"])"#;
    let jwt = r#"AuthorizationPolicy shop/office-only (document 2): spec.rules[1].when[0].key: JWT claims (request.auth.*) are not supported: svidgate authorizes the mTLS peer identity ("request.auth.claims[iss]")"#;
    let note =
        "istio.yaml: note: document 3: skipped ConfigMap (v1): not an Istio AuthorizationPolicy";
    let summary = "istio.yaml: 1 feature(s) that cannot be dropped without widening the policy; nothing written";
    let dropped = "dropped: an ALLOW rule svidgate cannot fully check allows nothing";
    // Nothing is written when features are unsupported; --skip-unsupported drops the ALLOW
    // rules (stricter) but never the CUSTOM policy.
    let cases = [
        (None, format!("error: {ip}"), format!("error: {jwt}")),
        (
            Some("--skip-unsupported"),
            format!("warning: {ip}; rule 0 {dropped}"),
            format!("warning: {jwt}; rule 1 {dropped}"),
        ),
    ];
    for (skip, ip_line, jwt_line) in cases {
        let args: Vec<&str> = ["policy", "import"]
            .into_iter()
            .chain(skip)
            .chain(["istio.yaml"])
            .collect();
        let run = svidgate(dir.path(), &args, "");
        run.assert_out(3, "");
        let (ip_line, jwt_line) = (
            format!("istio.yaml: {ip_line}"),
            format!("istio.yaml: {jwt_line}"),
        );
        assert_eq!(
            run.err_lines(),
            [custom, selector, &ip_line, &jwt_line, note, summary],
            "{skip:?}"
        );
    }
}

#[test]
fn import_rejects_invalid_resources_with_exit_1() {
    let cases = [
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: PERMIT}\n",
            vec![
                r#"in.yaml: error: AuthorizationPolicy a (document 1): spec.action: unknown action: expected ALLOW, DENY, AUDIT or CUSTOM ("PERMIT")"#,
                "in.yaml: 1 error(s) in the input; nothing written",
            ],
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules: [\n",
            vec!["in.yaml: error: document 1: did not find expected node content at line 6 column 1, while parsing a flow node"],
        ),
    ];
    for (text, want) in cases {
        let dir = tempdir_with(&[("in.yaml", text)]);
        let run = svidgate(dir.path(), &["policy", "import", "in.yaml"], "");
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(run.stdout, "");
        assert_eq!(run.err_lines(), want);
    }
}

// ---- Tests that run the real policy engine. ----

const POLICY: &str = include_str!("fixtures/policy.yaml");

/// The same without the dry-run policy.
fn policy_without_dry_run() -> String {
    let cut = POLICY.find("  - name: lock-admin").expect("lock-admin");
    POLICY[..cut].to_owned()
}

const FRONTEND: &str = "spiffe://cluster.local/ns/web/sa/frontend";
const LEGACY: &str = "spiffe://cluster.local/ns/legacy/sa/old";

#[test]
fn check_valid_policies() {
    let json = r#"{"trustDomain": "example.org", "trustDomainAliases": ["old.example"], "policies": [{"name": "a", "action": "DENY", "rules": [{}]}]}"#;
    let dir = tempdir_with(&[
        ("policy.yaml", POLICY),
        ("policy.json", json),
        ("no-dry-run.yaml", &policy_without_dry_run()),
    ]);
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["policy.yaml"],
            "",
            "policy.yaml: ok: 3 policies (2 DENY, 1 ALLOW, 1 dry-run), trust domain cluster.local",
        ),
        (
            &["no-dry-run.yaml"],
            "",
            "no-dry-run.yaml: ok: 2 policies (1 DENY, 1 ALLOW), trust domain cluster.local",
        ),
        (
            &["policy.json"],
            "",
            "policy.json: ok: 1 policy (1 DENY, 0 ALLOW), trust domain example.org (aliases: old.example)",
        ),
        (
            &["-"],
            "{\"trustDomain\": \"td\", \"mode\": \"dryRun\", \"policies\": []}",
            "<stdin>: ok: 0 policies, trust domain td, mode dryRun",
        ),
    ];
    for (files, stdin, want) in cases {
        let args: Vec<&str> = ["policy", "check"].iter().chain(files).copied().collect();
        let run = svidgate(dir.path(), &args, stdin);
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (0, &*format!("{want}\n"), ""),
            "{files:?}"
        );
    }
}

#[test]
fn check_reports_each_problem_on_its_own_line() {
    // (what to break, the document, the exact line)
    let cases = [
        (
            "unknown field",
            "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from:\n    - source:\n        principal: [x]\n",
            "p.yaml: policies[0].rules[0].from[0].source.principal: unknown field, expected one of: principals, notPrincipals, namespaces, notNamespaces, trustDomains, notTrustDomains (principal)",
        ),
        (
            "invalid SPIFFE ID",
            "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from:\n    - source:\n        principals: [\"spiffe://td/ns/a/../b\"]\n",
            "p.yaml: policies[0].rules[0].from[0].source.principals[0]: invalid SPIFFE ID: path has a '.' or '..' segment (spiffe://td/ns/a/../b)",
        ),
        (
            "invalid trust domain",
            "trustDomain: Cluster.Local\npolicies: []\n",
            "p.yaml: trustDomain: invalid trust domain: trust domain has an invalid character 'C' (upper case is not allowed): only a-z, 0-9, '.', '-' and '_' are allowed (Cluster.Local)",
        ),
        (
            "wildcard in the middle",
            "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - from:\n    - source:\n        principals: [\"td/ns/*/sa/x\"]\n",
            "p.yaml: policies[0].rules[0].from[0].source.principals[0]: wildcard '*' is only allowed at the start or the end of a value (td/ns/*/sa/x)",
        ),
        (
            "empty name",
            "trustDomain: td\npolicies:\n- name: \"\"\n",
            "p.yaml: policies[0].name: empty policy name ()",
        ),
        (
            "duplicate names",
            "trustDomain: td\npolicies:\n- name: a\n- name: b\n- name: a\n",
            "p.yaml: policies[2].name: duplicate policy name, first used at policies[0] (a)",
        ),
        (
            "unknown when key",
            "trustDomain: td\npolicies:\n- name: a\n  rules:\n  - when:\n    - key: source.ip\n      values: [\"10.0.0.1\"]\n",
            "p.yaml: policies[0].rules[0].when[0].key: unknown when key: IP conditions are not supported by svidgate (source.ip)",
        ),
        (
            "unknown action",
            "trustDomain: td\npolicies:\n- name: a\n  action: PERMIT\n",
            "p.yaml: policies[0].action: unknown action: expected ALLOW or DENY (PERMIT)",
        ),
    ];
    for (what, doc, want) in cases {
        let dir = tempdir_with(&[("p.yaml", doc)]);
        let run = svidgate(dir.path(), &["policy", "check", "p.yaml"], "");
        assert_eq!(run.code, 1, "{what}");
        assert_eq!(run.stdout, format!("{want}\n"), "{what}");
        assert_eq!(run.stderr, "", "{what}");
    }

    // Several problems: one line each, in document order; several files: the worst exit code.
    let several = "trustDomain: td\npolicies:\n- name: \"\"\n  action: PERMIT\n- name: b\n  rules:\n  - from:\n    - source:\n        principals: [\"td/ns/*/sa/x\"]\n";
    let dir = tempdir_with(&[("bad.yaml", several), ("good.yaml", POLICY)]);
    let run = svidgate(
        dir.path(),
        &["policy", "check", "good.yaml", "bad.yaml"],
        "",
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        [
            "good.yaml: ok: 3 policies (2 DENY, 1 ALLOW, 1 dry-run), trust domain cluster.local",
            "bad.yaml: policies[0].action: unknown action: expected ALLOW or DENY (PERMIT)",
            "bad.yaml: policies[0].name: empty policy name ()",
            "bad.yaml: policies[1].rules[0].from[0].source.principals[0]: wildcard '*' is only allowed at the start or the end of a value (td/ns/*/sa/x)",
        ]
    );
}

/// `check` reads a whole WasmPlugin `pluginConfig` the way the filter does: the `filter`
/// settings are checked too, and a bad one is named by its field.
#[test]
fn check_accepts_a_plugin_config_with_filter_settings() {
    const FILTER: &str = "filter:\n  identityHeader: x-spiffe-peer-id\n  denyStatus: 403\n  strict: true\n  mode: http\n  repeatedHeaders: deny\n  limits: {maxPolicies: 10, maxHeaderNames: 4}\n";
    let json =
        r#"{"trustDomain": "td", "policies": [], "filter": {"mode": "network", "denyBody": "no"}}"#;
    let cases = [
        (
            "plugin.yaml",
            format!("{POLICY}{FILTER}"),
            0,
            "plugin.yaml: ok: 3 policies (2 DENY, 1 ALLOW, 1 dry-run), trust domain cluster.local"
                .to_owned(),
        ),
        (
            "plugin.json",
            json.to_owned(),
            0,
            "plugin.json: ok: 0 policies, trust domain td".to_owned(),
        ),
        (
            "status.yaml",
            format!("{POLICY}filter:\n  denyStatus: 200\n"),
            1,
            "status.yaml: filter.denyStatus: must be an HTTP status code from 400 to 599 (200)"
                .to_owned(),
        ),
        (
            "mode.json",
            r#"{"trustDomain": "td", "policies": [], "filter": {"mode": "grpc"}}"#.to_owned(),
            1,
            r#"mode.json: filter.mode: must be "auto", "http" or "network" ("grpc")"#.to_owned(),
        ),
        (
            "limit.yaml",
            format!("{POLICY}filter:\n  limits: {{maxPolicies: 2}}\n"),
            1,
            "limit.yaml: the document has 3 policies, more than the limit of 2 (filter.limits.maxPolicies)"
                .to_owned(),
        ),
    ];
    for (name, text, code, want) in cases {
        let dir = tempdir_with(&[(name, &text)]);
        let run = svidgate(dir.path(), &["policy", "check", name], "");
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (code, &*format!("{want}\n"), ""),
            "{name}"
        );
    }
}

/// `eval` (like `check`) takes the whole `pluginConfig`: the `filter` settings do not change
/// a decision, and a bad one makes the policy unusable, named by its field.
#[test]
fn eval_accepts_a_plugin_config_with_filter_settings() {
    use serde_json::json;
    let line = json!({"peer": FRONTEND, "method": "GET", "path": "/api/orders"}).to_string();
    let plain = eval(POLICY, &[], &line);
    let plugin = eval(
        &format!("{POLICY}filter:\n  mode: http\n  denyStatus: 403\n"),
        &[],
        &line,
    );
    assert_eq!(plain.0, 0, "{}", plain.2);
    assert_eq!(plugin, plain);
    let (code, out, stderr) = eval(&format!("{POLICY}filter:\n  denyStatus: 200\n"), &[], &line);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out:?}");
    assert!(stderr.contains("filter.denyStatus"), "{stderr}");
}

#[test]
fn check_syntax_errors_name_line_and_column() {
    let cases = [
        (
            "p.yaml",
            "trustDomain: td\npolicies:\n  - name: a\n    rules: [\n",
            "p.yaml: while parsing a node, did not find expected node content at line 5 column 1",
        ),
        (
            "p.json",
            "{\"trustDomain\": \"td\",}",
            "p.json: trailing comma at line 1 column 22",
        ),
        (
            // Content detection: a `.txt` file that starts with `{` is JSON.
            "p.txt",
            "{\"trustDomain\": \"td\", \"policies\": [}",
            "p.txt: expected value at line 1 column 36",
        ),
    ];
    for (name, text, want) in cases {
        let dir = tempdir_with(&[(name, text)]);
        let run = svidgate(dir.path(), &["policy", "check", name], "");
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (1, &*format!("{want}\n")),
            "{name}"
        );
    }
}

/// Runs `eval` on `lines` against `policy`; returns (exit code, stdout lines as JSON, stderr).
fn eval(policy: &str, extra: &[&str], lines: &str) -> (i32, Vec<serde_json::Value>, String) {
    let dir = tempdir_with(&[("p.yaml", policy)]);
    let mut args = vec!["policy", "eval", "--policy", "p.yaml"];
    args.extend(extra);
    let run = svidgate(dir.path(), &args, lines);
    let out = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (run.code, out, run.stderr)
}

#[test]
fn eval_decides_each_line() {
    use serde_json::json;
    let bad_id = "SPIFFE://cluster.local/ns/web/sa/frontend";
    let why = svidgate_core::SpiffeId::parse(bad_id).unwrap_err();
    let input = [
        json!({"peer": FRONTEND, "method": "GET", "path": "/api/orders"}).to_string(),
        json!({"peer": LEGACY, "method": "GET", "path": "/api/orders"}).to_string(),
        json!({"peer": FRONTEND, "method": "POST", "path": "/api/orders"}).to_string(),
        json!({"peer": FRONTEND, "method": "GET", "path": "/api/admin/users"}).to_string(),
        json!({"peer": bad_id, "method": "GET", "path": "/api/orders"}).to_string(),
        json!({"peer": FRONTEND, "mtls": false, "method": "GET", "path": "/api/orders"})
            .to_string(),
        json!({"peer": null, "path": "/tenant/x", "headers": {"X-Tenant": "acme"}}).to_string(),
    ]
    .join("\n");
    let (code, out, stderr) = eval(POLICY, &[], &input);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let allow_readers = json!({"decision": "allow", "policy": "api-readers", "rule": 0, "reason": "matched ALLOW policy"});
    let deny_legacy = json!({"decision": "deny", "policy": "deny-legacy", "rule": 0, "reason": "matched DENY policy"});
    let no_allow = json!({"decision": "deny", "policy": null, "rule": null, "reason": "no ALLOW policy matched"});
    let invalid_reason = format!(
        "no valid peer identity: invalid SPIFFE ID \"{bad_id}\": {why}; no ALLOW policy matched"
    );
    let invalid =
        json!({"decision": "deny", "policy": null, "rule": null, "reason": invalid_reason});
    let not_mtls = json!({"decision": "deny", "policy": null, "rule": null, "reason": "no valid peer identity: connection is not mTLS; no ALLOW policy matched"});
    let tenant = json!({"decision": "allow", "policy": "api-readers", "rule": 1, "reason": "no valid peer identity: peer certificate has no URI SAN; matched ALLOW policy"});
    let with_dry = |enforced: &serde_json::Value, dry: &serde_json::Value| {
        let mut v = enforced.clone();
        v["dryRun"] = dry.clone();
        v
    };
    let lock_admin = json!({"decision": "deny", "policy": "lock-admin", "rule": 0, "reason": "matched DENY policy"});
    assert_eq!(
        out,
        [
            with_dry(&allow_readers, &allow_readers),
            with_dry(&deny_legacy, &deny_legacy),
            with_dry(&no_allow, &no_allow),
            with_dry(&allow_readers, &lock_admin),
            with_dry(&invalid, &invalid),
            with_dry(&not_mtls, &not_mtls),
            with_dry(&tenant, &tenant),
        ]
    );

    // Without dry-run policies there is no `dryRun` key; the exact line as written.
    let dir = tempdir_with(&[("p.yaml", &policy_without_dry_run())]);
    let run = svidgate(
        dir.path(),
        &["policy", "eval", "--policy", "p.yaml"],
        &format!(
            "{}\n",
            json!({"peer": FRONTEND, "method": "GET", "path": "/api/x"})
        ),
    );
    run.assert_out(0, "{\"decision\":\"allow\",\"policy\":\"api-readers\",\"rule\":0,\"reason\":\"matched ALLOW policy\"}\n");
}

#[test]
fn eval_network_mode_sees_no_http() {
    use serde_json::json;
    let line =
        json!({"peer": FRONTEND, "method": "GET", "path": "/api/orders", "port": 8080}).to_string();
    let (code, out, _) = eval(&policy_without_dry_run(), &["--network"], &line);
    assert_eq!(code, 0);
    // The ALLOW rule needs HTTP fields, so it never matches in network mode.
    assert_eq!(
        out,
        [
            json!({"decision": "deny", "policy": null, "rule": null, "reason": "no ALLOW policy matched"})
        ]
    );
}

#[test]
fn eval_reports_malformed_lines_and_answers_the_rest() {
    let input = format!(
        "{{\"peer\": \"{FRONTEND}\", \"method\": \"GET\", \"path\": \"/api/a\"}}\n\
         {{\"peer\": \"{FRONTEND}\", \"verb\": \"GET\"}}\n\
         \n\
         not json\n\
         {{\"port\": \"80\"}}\n\
         [\"{FRONTEND}\"]\n\
         {{\"peer\": \"{LEGACY}\"}}\n"
    );
    let (code, out, stderr) = eval(&policy_without_dry_run(), &[], &input);
    assert_eq!(code, 1);
    assert_eq!(out.len(), 2, "lines 1 and 7 are answered");
    assert_eq!(out[0]["decision"], "allow");
    assert_eq!(out[1]["policy"], "deny-legacy");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "line 2: unknown field `verb`, expected one of `peer`, `mtls`, `method`, `path`, `host`, `port`, `headers`, `sni` (column 60)",
            "line 4: expected ident (column 2)",
            "line 5: invalid type: string \"80\", expected u16 (column 13)",
            "line 6: expected a JSON object, found an array",
        ]
    );
}

#[test]
fn eval_and_explain_refuse_an_invalid_policy() {
    let dir = tempdir_with(&[(
        "p.yaml",
        "trustDomain: td\npolicies:\n- name: a\n  action: PERMIT\n",
    )]);
    for args in [
        &["policy", "eval", "--policy", "p.yaml"][..],
        &[
            "policy", "explain", "--policy", "p.yaml", "--peer", FRONTEND,
        ],
    ] {
        let run = svidgate(dir.path(), args, "{}\n");
        assert_eq!(run.code, 2, "{args:?}");
        assert_eq!(run.stdout, "", "{args:?}");
        assert_eq!(
            run.err_lines(),
            [
                "p.yaml: policies[0].action: unknown action: expected ALLOW or DENY (PERMIT)",
                "svidgate: p.yaml: policy is not valid (1 problem(s) above); run `svidgate policy check p.yaml`",
            ],
            "{args:?}"
        );
    }
}

#[test]
fn explain_traces_allowed_and_denied_requests() {
    let dir = tempdir_with(&[("p.yaml", POLICY)]);
    let explain = |args: &[&str]| {
        let mut all = vec!["policy", "explain", "--policy", "p.yaml"];
        all.extend_from_slice(args);
        let run = svidgate(dir.path(), &all, "");
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        run
    };
    // (the request, the whole trace)
    let cases: [(&[&str], &[&str]); 2] = [
        (
            &["--peer", FRONTEND, "--method", "GET", "--path", "/api/orders", "--host", "api", "--port", "8080"],
            &[
                "input: peer spiffe://cluster.local/ns/web/sa/frontend, GET /api/orders, host api, port 8080 (http)",
                "request (HTTP): peer \"cluster.local/ns/web/sa/frontend\"",
                "policy \"deny-legacy\" (DENY):",
                "  rule 0: no match: from[0].source.namespaces: namespace \"web\" matches none",
                "policy \"lock-admin\" (DENY, dry-run):",
                "  rule 0: no match: to[0].operation.paths: path \"/api/orders\" matches none",
                "policy \"api-readers\" (ALLOW):",
                "  rule 0: MATCH",
                "  rule 1: no match: to[0].operation.paths: path \"/api/orders\" matches none",
                "decision: ALLOW by policy \"api-readers\" rule 0: matched ALLOW policy",
                "dry-run decision: ALLOW by policy \"api-readers\" rule 0: matched ALLOW policy",
            ],
        ),
        (
            &["--peer", LEGACY, "--method", "GET", "--path", "/api/admin/x", "--header", "X-Tenant=acme"],
            &[
                "input: peer spiffe://cluster.local/ns/legacy/sa/old, GET /api/admin/x, header x-tenant=acme (http)",
                "request (HTTP): peer \"cluster.local/ns/legacy/sa/old\"",
                "policy \"deny-legacy\" (DENY):",
                "  rule 0: MATCH",
                "policy \"lock-admin\" (DENY, dry-run):",
                "  rule 0: MATCH",
                "policy \"api-readers\" (ALLOW):",
                "  rule 0: no match: from[0].source.principals: peer \"cluster.local/ns/legacy/sa/old\" matches none",
                "  rule 1: no match: to[0].operation.paths: path \"/api/admin/x\" matches none",
                "decision: DENY by policy \"deny-legacy\" rule 0: matched DENY policy",
                "dry-run decision: DENY by policy \"deny-legacy\" rule 0: matched DENY policy",
            ],
        ),
    ];
    for (args, want) in cases {
        assert_eq!(explain(args).out_lines(), want, "{args:?}");
    }

    // No mTLS: the input line says why there is no identity; the decision is still last.
    let run = explain(&["--no-mtls", "--network"]);
    let lines = run.out_lines();
    assert_eq!(
        lines[0],
        "input: peer none (connection is not mTLS) (network)"
    );
    assert_eq!(
        lines[lines.len() - 2],
        "decision: DENY: no ALLOW policy matched (no peer identity: connection is not mTLS)"
    );
}

#[test]
fn import_round_trips_through_check() {
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/istio-authorization-policies.yaml"),
    )
    .expect("fixture");
    let dir = tempdir_with(&[("istio.yaml", &fixture)]);

    // Unsupported features: exit 3, nothing on stdout; the CUSTOM policy is refused even
    // with --skip-unsupported.
    for extra in [None, Some("--skip-unsupported")] {
        let mut args = vec!["policy", "import", "istio.yaml"];
        args.extend(extra);
        let run = svidgate(dir.path(), &args, "");
        run.assert_out(3, "");
    }
    let without_custom = &fixture[..fixture.rfind("---").expect("documents")];
    std::fs::write(dir.path().join("istio-ok.yaml"), without_custom).expect("write");
    let run = svidgate(
        dir.path(),
        &[
            "policy",
            "import",
            "--skip-unsupported",
            "--trust-domain",
            "example.org",
            "--trust-domain-alias",
            "old.example",
            "istio-ok.yaml",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.err_lines(),
        [
            r#"istio-ok.yaml: warning: AuthorizationPolicy shop/api-readers (document 2): spec.selector: dropped: a svidgate policy applies to every workload whose filter loads it ({"matchLabels":{"app":"api"}}); load policy shop.api-readers only in the filters of the workloads it selected"#,
            r#"istio-ok.yaml: warning: AuthorizationPolicy shop/api-readers (document 2): spec.rules[1].from[0].source.ipBlocks: IP blocks are not supported: svidgate authorizes by SPIFFE identity, not address (["10.0.0.0/8"]); rule 1 dropped: an ALLOW rule svidgate cannot fully check allows nothing"#,
        ]
    );
    assert_eq!(run.stdout, include_str!("fixtures/istio-ok-imported.yaml"));

    std::fs::write(dir.path().join("imported.yaml"), &run.stdout).expect("write");
    let run = svidgate(dir.path(), &["policy", "check", "imported.yaml"], "");
    run.assert_out(0, "imported.yaml: ok: 3 policies (2 DENY, 1 ALLOW, 1 dry-run), trust domain example.org (aliases: old.example)\n");

    // The imported policy decides like Istio would: the frontend may GET the API, under the
    // alias too.
    let run = svidgate(
        dir.path(),
        &["policy", "eval", "--policy", "imported.yaml"],
        "{\"peer\": \"spiffe://example.org/ns/web/sa/frontend\", \"method\": \"GET\", \"path\": \"/api/x\", \"port\": 8080, \"headers\": {\"x-tenant\": \"acme\"}}\n{\"peer\": \"spiffe://old.example/ns/web/sa/frontend\", \"method\": \"GET\", \"path\": \"/api/x\", \"port\": 8080, \"headers\": {\"x-tenant\": \"acme\"}}\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for line in run.out_lines() {
        let out: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(out["decision"], "allow", "{out}");
    }
}

#[test]
fn import_stdin_and_output_the_engine_rejects() {
    let dir = tempdir_with(&[]);
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: n}\nspec:\n  rules:\n  - from:\n    - source: {principals: [\"cluster.local/ns/*/sa/x\"]}\n";
    let run = svidgate(dir.path(), &["policy", "import", "-"], text);
    run.assert_out(1, "");
    assert_eq!(
        run.err_lines(),
        [
            "<stdin>: error: imported policy: policies[0].rules[0].from[0].source.principals[0]: wildcard '*' is only allowed at the start or the end of a value (cluster.local/ns/*/sa/x)",
            "<stdin>: the imported policy is not valid for svidgate; nothing written",
        ]
    );

    let run = svidgate(
        dir.path(),
        &["policy", "import", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
    );
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout, "# svidgate policy imported from Istio AuthorizationPolicy resources (<stdin>).\ntrustDomain: cluster.local\nmode: enforce\npolicies: []\n");
    assert_eq!(
        run.err_lines(),
        [
            "<stdin>: note: document 1: skipped Service (v1): not an Istio AuthorizationPolicy",
            "<stdin>: note: no AuthorizationPolicy imported",
        ]
    );
}

const LINT_ME: &str = "trustDomain: cluster.local
policies:
  - name: deny-admin
    action: DENY
    rules:
      - to: [{operation: {paths: [\"/admin/*\", \"/public/../admin/*\"]}}]
  - name: api
    rules:
      - from: [{source: {principals: [\"cluster.local/ns/web/sa/frontend\", \"spiffe://cluster.local/ns/web/sa/frontend\"]}}]
        to: [{operation: {paths: [\"/api/*\"]}}]
      - from: [{source: {principals: [\"cluster.local/ns/web/sa/frontend\"]}}]
        to: [{operation: {methods: [GET], paths: [\"/api/items\"]}}]
";

#[test]
fn lint_human_json_fail_on_and_network() {
    let dir = tempdir_with(&[("p.yaml", LINT_ME), ("clean.yaml", "trustDomain: td\npolicies:\n  - name: a\n    rules: [{to: [{operation: {ports: [80]}}]}]\n"), ("bad.yaml", "trustDomain: td\npolicies: 3\n")]);
    let run = svidgate(dir.path(), &["policy", "lint", "p.yaml"], "");
    assert_eq!(
        run.code, 1,
        "an error-level finding fails by default: {}",
        run.stderr
    );
    assert_eq!(
        run.out_lines(),
        [
            r#"p.yaml: error: policies[0].rules[0].to[0].operation.paths[1]: "/public/../admin/*" has a '.' or '..' segment, which no request in normal form has; this DENY never matches it: the request arrives normalized (e.g. /admin/x) and is not denied by this value [unreachable-path]"#,
            r#"p.yaml: warning: policies[1].rules[0].from[0].source.principals[1]: "spiffe://cluster.local/ns/web/sa/frontend" is listed twice (first at policies[1].rules[0].from[0].source.principals[0]) [duplicate-value]"#,
            "p.yaml: warning: policies[1].rules[1]: every request this rule matches is matched first by policies[1].rules[0], an earlier ALLOW rule: it never decides a request [shadowed-rule]",
            "p.yaml: 1 error(s), 2 warning(s), 0 info",
        ]
    );
    let run = svidgate(
        dir.path(),
        &[
            "policy",
            "lint",
            "--format",
            "json",
            "--fail-on",
            "never",
            "-",
        ],
        LINT_ME,
    );
    assert_eq!(run.code, 0);
    let findings: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).expect("one JSON array");
    let codes: Vec<&str> = findings
        .as_array()
        .expect("array")
        .iter()
        .map(|f| f["code"].as_str().expect("code"))
        .collect();
    assert_eq!(
        codes,
        ["unreachable-path", "duplicate-value", "shadowed-rule"]
    );
    assert_eq!(findings[0]["severity"], "error");
    assert_eq!(
        findings[0]["path"],
        "policies[0].rules[0].to[0].operation.paths[1]"
    );

    let run = svidgate(dir.path(), &["policy", "lint", "clean.yaml"], "");
    run.assert_out(0, "clean.yaml: no findings\n");
    // Warnings fail only when asked to; network mode sees HTTP-only rules.
    let run = svidgate(
        dir.path(),
        &[
            "policy",
            "lint",
            "--fail-on",
            "warning",
            "--network",
            "--format",
            "json",
            "p.yaml",
        ],
        "",
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("\"code\":\"deny-all\""),
        "{}",
        run.stdout
    );
    // An invalid policy cannot be linted: its problems, exit 2.
    let run = svidgate(dir.path(), &["policy", "lint", "bad.yaml"], "");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("bad.yaml: policies: "),
        "{}",
        run.stderr
    );
}

#[test]
fn diff_prints_requests_that_decide_differently() {
    let old = "trustDomain: td\npolicies:\n  - name: api\n    rules:\n      - from: [{source: {principals: [td/ns/web/sa/frontend]}}]\n        to: [{operation: {methods: [GET, HEAD], paths: [\"/api/*\"]}}]\n";
    let new = old.replace(
        "paths: [\"/api/*\"]",
        "paths: [\"/api/*\"], notPaths: [\"/api/internal/*\"]",
    );
    let same = "trustDomain: td\npolicies:\n  - name: get\n    rules: [{from: [{source: {principals: [\"spiffe://td/ns/web/sa/frontend\"]}}], to: [{operation: {methods: [GET], paths: [\"/api/*\"]}}]}]\n  - name: head\n    rules: [{from: [{source: {principals: [td/ns/web/sa/frontend]}}], to: [{operation: {methods: [HEAD], paths: [\"/api/*\"]}}]}]\n";
    let dir = tempdir_with(&[("old.yaml", old), ("new.yaml", &new), ("same.yaml", same)]);
    let run = svidgate(dir.path(), &["policy", "diff", "old.yaml", "new.yaml"], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.out_lines(),
        [
            r#"{"request":{"peer":"spiffe://td/ns/web/sa/frontend","method":"GET","path":"/api/internal/x"},"old":{"decision":"allow","policy":"api","rule":0,"reason":"matched ALLOW policy"},"new":{"decision":"deny","policy":null,"rule":null,"reason":"no ALLOW policy matched"}}"#
        ]
    );
    // The printed request, fed to `eval`, really decides differently.
    let line: serde_json::Value = serde_json::from_str(run.out_lines()[0]).expect("json");
    let request = format!("{}\n", line["request"]);
    let a = svidgate(
        dir.path(),
        &["policy", "eval", "--policy", "old.yaml"],
        &request,
    );
    let b = svidgate(
        dir.path(),
        &["policy", "eval", "--policy", "new.yaml"],
        &request,
    );
    let decision =
        |text: &str| serde_json::from_str::<serde_json::Value>(text.trim()).expect("json");
    assert_eq!(decision(&a.stdout), line["old"]);
    assert_eq!(decision(&b.stdout), line["new"]);

    // Reordered, split and respelled: equivalent, exit 0, nothing on stdout.
    let run = svidgate(dir.path(), &["policy", "diff", "old.yaml", "same.yaml"], "");
    run.assert_out(0, "");
    assert!(
        run.stderr.starts_with("old.yaml same.yaml: equivalent ("),
        "{}",
        run.stderr
    );
    // In network mode no HTTP attribute exists: the two versions are the same (exit 0).
    // Errors: exit 2.
    let exits: [(&[&str], i32); 3] = [
        (&["policy", "diff", "--network", "old.yaml", "new.yaml"], 0),
        (&["policy", "diff", "old.yaml", "missing.yaml"], 2),
        (&["policy", "diff", "-", "-"], 2),
    ];
    for (args, code) in exits {
        let run = svidgate(dir.path(), args, "");
        assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
    }
}

#[test]
fn import_one_namespace_and_warn_about_several() {
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: shop}\nspec: {}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: b, namespace: web}\nspec:\n  rules: [{from: [{source: {serviceAccounts: [web/frontend]}}]}]\n";
    let dir = tempdir_with(&[("istio.yaml", text)]);
    let run = svidgate(dir.path(), &["policy", "import", "istio.yaml"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.starts_with("istio.yaml: warning: input: policies of 2 namespaces (shop, web) imported into one document"), "{}", run.stderr);
    let run = svidgate(
        dir.path(),
        &["policy", "import", "--namespace", "web", "istio.yaml"],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (part, present) in [
        ("- name: web.b\n", true),
        ("shop.a", false),
        ("- cluster.local/ns/web/sa/frontend\n", true),
    ] {
        assert_eq!(run.stdout.contains(part), present, "{part}: {}", run.stdout);
    }
    let run = svidgate(
        dir.path(),
        &[
            "policy",
            "import",
            "--trust-domain-alias",
            "Bad",
            "istio.yaml",
        ],
        "",
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("svidgate: --trust-domain-alias \"Bad\": "),
        "{}",
        run.stderr
    );
}
